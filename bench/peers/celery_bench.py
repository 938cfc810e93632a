"""Celery in its no-loss configuration, over the same jobs as the jobfleet benchmark.

Run by `jobfleet-bench run --peers` (through `scripts/bench --peers`, which installs Celery
in a private virtualenv). Celery's own advice for not losing tasks: `acks_late` (a task is
acknowledged after it ran, so a worker that dies mid-task gives it back),
`task_reject_on_worker_lost`, publisher confirms (`confirm_publish`), persistent messages,
and a result backend (Redis) where every outcome is stored. One worker process with the
prefork pool, one child per CPU (Celery's default), prefetch `concurrency` like jobfleet's.

    python celery_bench.py --amqp-url URL --redis-url URL --jobs N --concurrency C

prints one JSON line: {"jobs": N, "seconds": S, "jobs_per_s": R}.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

from celery import Celery


def make_app(amqp_url, redis_url, queue):
    app = Celery("celery_bench", broker=amqp_url, backend=redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=queue,
        task_default_delivery_mode="persistent",
        broker_transport_options={"confirm_publish": True},
        result_expires=3600,
        worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "64")),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


QUEUE = os.environ.get("BENCH_QUEUE", "celery-bench")
app = make_app(
    os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    QUEUE,
)


@app.task(name="echo")
def echo(args):
    return args


def start_worker(env):
    here = os.path.dirname(os.path.abspath(__file__))
    command = [
        sys.executable, "-m", "celery", "-A", "celery_bench", "worker",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-Q", env["BENCH_QUEUE"], "-n", "bench-%s@%%h" % env["BENCH_QUEUE"],
    ]
    return subprocess.Popen(command, cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(producer, queue, timeout=60):
    """Waits until the worker answers a task."""
    deadline = time.time() + timeout
    while True:
        try:
            producer.send_task("echo", args=[{"warm": True}], queue=queue).get(timeout=5)
            return
        except Exception as error:  # the worker is still starting
            if time.time() > deadline:
                raise SystemExit("the Celery worker did not start: %r" % error)


def send(producer, queue, count):
    return [producer.send_task("echo", args=[{"i": i}], queue=queue) for i in range(count)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=200)
    options = parser.parse_args()

    queue = "celery-bench-" + uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        BENCH_QUEUE=queue,
        BENCH_AMQP_URL=options.amqp_url,
        BENCH_REDIS_URL=options.redis_url,
        BENCH_PREFETCH=str(options.concurrency),
    )
    producer = make_app(options.amqp_url, options.redis_url, queue)
    worker = start_worker(env)
    try:
        wait_ready(producer, queue)
        warm = send(producer, queue, options.warmup)
        for result in warm:
            result.get(timeout=120)
        started = time.monotonic()
        pending = send(producer, queue, options.jobs)
        for result in pending:
            result.get(timeout=600)
        seconds = time.monotonic() - started
        for result in warm + pending:
            result.forget()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        with producer.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    print(json.dumps({"jobs": options.jobs, "seconds": seconds, "jobs_per_s": options.jobs / seconds}))


if __name__ == "__main__":
    main()
