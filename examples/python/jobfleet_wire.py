"""The jobfleet wire protocol (SPEC §3) for Python producers and subscribers, with pika
and msgpack only: what any foreign service needs to publish jobs and read results.

Nothing here comes from the Rust code base; it is written from the protocol alone, so
the tests that use it check that the protocol is enough.
"""

import os
import random
import time
import uuid

import msgpack
import pika

DEFAULT_NAMESPACE = "jobfleet"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


def namespace():
    """The namespace from JOBFLEET_NAMESPACE (default `jobfleet`)."""
    return os.environ.get("JOBFLEET_NAMESPACE") or DEFAULT_NAMESPACE


def amqp_url():
    """The broker URL from JOBFLEET_AMQP_URL."""
    return os.environ.get("JOBFLEET_AMQP_URL") or DEFAULT_AMQP_URL


def now_ms():
    return int(time.time() * 1000)


def connect(url=None):
    """Connects to the broker. A comma-separated list names the nodes of a RabbitMQ
    cluster (SPEC §12): pika tries them in turn, from a random one so clients spread."""
    nodes = [pika.URLParameters(node.strip()) for node in (url or amqp_url()).split(",")]
    start = random.randrange(len(nodes))
    return pika.BlockingConnection(nodes[start:] + nodes[:start])


def declare_exchanges(channel, ns):
    """Declares the fleet's exchanges with the properties the fleet uses (all durable), so a
    producer may start before any worker. Group queues are the workers' to declare."""
    for name, kind in (("jobs", "direct"), ("results", "topic"), ("control", "fanout"), ("dead", "fanout")):
        channel.exchange_declare(exchange=f"{ns}.{name}", exchange_type=kind, durable=True)


def subscribe(channel, ns, pattern="#"):
    """Binds a fresh exclusive, server-named queue to NS.results with `pattern`
    (`<group>.<function>.<status>`, e.g. `etl.#`, `*.*.failed`) and returns its name.
    Subscribe before publishing, or a fast result can be missed."""
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=f"{ns}.results", routing_key=pattern)
    return queue


def new_job(group, function, args=None, job_id=None, timeout_ms=None, id_prefix="py-"):
    """A job message: a map with named fields."""
    job = {
        "id": job_id or id_prefix + uuid.uuid4().hex,
        "group": group,
        "function": function,
        "args": args,
        "submitted_at": now_ms(),
    }
    if timeout_ms is not None:
        job["timeout_ms"] = timeout_ms
    return job


class Unroutable(Exception):
    """No queue is bound for the job's group: no worker of that group has ever started."""


def publish_job(channel, ns, job):
    """Publishes `job` to NS.jobs (routing key = group) persistently. `channel` must be in
    confirm mode (`channel.confirm_delivery()`), so this returns once the broker has the job;
    mandatory=True turns a job that no queue would take into `Unroutable`."""
    properties = pika.BasicProperties(
        content_type="application/msgpack",
        delivery_mode=2,
        message_id=job["id"],
        timestamp=job.get("submitted_at", now_ms()) // 1000,
    )
    body = msgpack.packb(job, use_bin_type=True)
    try:
        channel.basic_publish(
            exchange=f"{ns}.jobs", routing_key=job["group"], body=body, properties=properties, mandatory=True
        )
    except pika.exceptions.UnroutableError as e:
        raise Unroutable(
            f"job {job['id']} is unroutable: no queue {ns}.group.{job['group']} is bound to {ns}.jobs; "
            f"start a worker for group {job['group']!r} (e.g. `JOBFLEET_NAMESPACE={ns} "
            f"target/debug/jobfleet-worker --group {job['group']}`, or scripts/dev)"
        ) from e


def decode_result(body):
    return msgpack.unpackb(body, raw=False)


def wait_for_results(channel, queue, ids, timeout):
    """Yields each result whose id is in `ids`, once per id (results may be duplicated, so
    subscribers dedupe by id), until every id has one or `timeout` seconds pass; the caller
    sees which ids are still missing by what it did not get."""
    missing = set(ids)
    if not missing:
        return
    deadline = time.monotonic() + timeout
    try:
        # The short inactivity timeout yields (None, None, None) ticks to re-check the deadline.
        for method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.5):
            if method is not None:
                try:
                    result = decode_result(body)
                except Exception:  # not a result we can read; keep waiting for ours
                    result = None
                if isinstance(result, dict) and result.get("id") in missing:
                    missing.discard(result["id"])
                    yield result
            if not missing or time.monotonic() >= deadline:
                break
    finally:
        if channel.is_open:
            channel.cancel()  # stop the consumer; the exclusive queue goes with the connection


def wait_for_consumers(connection, ns, groups, timeout):
    """Waits until each group's queue NS.group.<g> exists and has a consumer (a live
    worker), up to `timeout` seconds; returns the groups still without one. Passive
    declares only look: they never create the queue."""
    waiting = list(dict.fromkeys(groups))
    deadline = time.monotonic() + timeout
    while waiting:
        channel = connection.channel()
        try:
            ok = channel.queue_declare(queue=f"{ns}.group.{waiting[0]}", passive=True)
            if ok.method.consumer_count > 0:
                waiting.pop(0)
                continue
        except pika.exceptions.ChannelClosedByBroker:
            pass  # 404: no worker has declared it yet
        finally:
            if channel.is_open:
                channel.close()
        if time.monotonic() >= deadline:
            break
        connection.sleep(0.25)
    return waiting
