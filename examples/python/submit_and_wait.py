#!/usr/bin/env python3
"""Publish jobfleet jobs straight to RabbitMQ and print their results as they arrive.

A foreign producer and subscriber written from the wire protocol alone (SPEC §3), with
pika and msgpack (`pip install -r requirements.txt`). Without options it publishes a demo:
an echo, a wordcount and a job that fails on purpose, to group `default`.

    python3 submit_and_wait.py                       # the demo
    python3 submit_and_wait.py --function wordcount --args '{"text": "a b a"}'
    python3 submit_and_wait.py --function sleep --args '{"ms": 200}' --count 10 --json

Environment: JOBFLEET_NAMESPACE (default jobfleet), JOBFLEET_AMQP_URL (default
amqp://guest:guest@127.0.0.1:5672/%2f; a cluster's nodes as a comma-separated list, tried
in turn). Output: one line per result, `<id> <status>
<result or error as JSON>` (or the whole result as one JSON line with --json).
Exit status: 0 every result arrived, 1 timeout, 2 a job was unroutable (no worker of its
group has ever run), 3 the broker cannot be reached, 64 bad command line.
"""

import argparse
import json
import sys

import pika

import jobfleet_wire as wire

DEMO = [
    ("echo", {"hello": "jobfleet"}),
    ("wordcount", {"text": "the quick brown fox jumps over the lazy dog and the cat"}),
    ("fail", {"message": "this job fails on purpose"}),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # Exit 64 (usage), keeping 2 for "unroutable".
        self.print_usage(sys.stderr)
        self.exit(64, f"{self.prog}: error: {message}\n")


def parse_args():
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", default="default", help="consumer group (default: default)")
    parser.add_argument("--function", help="publish one job of this function instead of the demo")
    parser.add_argument("--args", default="null", help="the job's args as JSON (default: null)")
    parser.add_argument("--timeout-ms", type=int, help="per-job timeout override, milliseconds")
    parser.add_argument("--count", type=int, default=1, help="publish the job(s) N times (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for all results (default 30)")
    parser.add_argument("--wait-workers", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for a worker to consume each group")
    parser.add_argument("--json", action="store_true", help="print each result as one JSON line")
    options = parser.parse_args()
    if options.function is None and options.args != "null":
        parser.error("--args needs --function")
    try:
        options.args = json.loads(options.args)
    except json.JSONDecodeError as e:
        parser.error(f"--args is not valid JSON: {e}")
    if options.count < 1:
        parser.error("--count must be at least 1")
    return options


def print_result(result, as_json):
    if as_json:
        print(json.dumps(result, default=str), flush=True)
    else:
        outcome = result.get("result") if result.get("status") == "finished" else result.get("error")
        print(f"{result.get('id')} {result.get('status')} {json.dumps(outcome, default=str)}", flush=True)


def main():
    options = parse_args()
    ns = wire.namespace()
    if options.function:
        plan = [(options.function, options.args)]
    else:
        plan = DEMO
    jobs = [
        wire.new_job(options.group, function, args, timeout_ms=options.timeout_ms, id_prefix="example-")
        for _ in range(options.count)
        for function, args in plan
    ]

    try:
        connection = wire.connect()
    except pika.exceptions.AMQPConnectionError as e:
        print(f"error: cannot connect to RabbitMQ ({e!r}); is it running? (scripts/services starts it)", file=sys.stderr)
        return 3
    try:
        if options.wait_workers > 0:
            idle = wire.wait_for_consumers(connection, ns, [options.group], options.wait_workers)
            if idle:
                print(f"warning: no worker is consuming {ns}.group.{idle[0]} yet; publishing anyway", file=sys.stderr)

        # Subscribe before publishing, so no result can slip past.
        consumer = connection.channel()
        wire.declare_exchanges(consumer, ns)
        queue = wire.subscribe(consumer, ns, "#")

        publisher = connection.channel()
        publisher.confirm_delivery()
        for job in jobs:
            try:
                wire.publish_job(publisher, ns, job)
            except wire.Unroutable as e:
                print(f"error: {e}", file=sys.stderr)
                return 2

        ids = [job["id"] for job in jobs]
        seen = set()
        for result in wire.wait_for_results(consumer, queue, ids, options.timeout):
            seen.add(result["id"])
            print_result(result, options.json)
        missing = [i for i in ids if i not in seen]
        if missing:
            print(f"error: timed out after {options.timeout:g}s waiting for {len(missing)} result(s): "
                  f"{' '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}", file=sys.stderr)
            return 1
        return 0
    finally:
        if connection.is_open:
            connection.close()


if __name__ == "__main__":
    sys.exit(main())
