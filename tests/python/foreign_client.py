#!/usr/bin/env python3
"""A foreign service, for the end-to-end tests: publishes ONE job straight to RabbitMQ as
any non-Rust producer would (SPEC §3) and prints its result.

usage: foreign_client.py GROUP FUNCTION ARGS_JSON
env:   JOBFLEET_NAMESPACE, JOBFLEET_AMQP_URL
out:   exactly one JSON line, the decoded result message; exit 0.
       exit 1 when no result arrives within 30 s, 2 when the job is unroutable.
"""

import json
import os
import sys

# The wire helpers live with the Python example; both speak only the public protocol.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python"))
import jobfleet_wire as wire  # noqa: E402

TIMEOUT_SECONDS = 30


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 64
    group, function, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    ns = wire.namespace()
    job = wire.new_job(group, function, args, id_prefix="py-")

    connection = wire.connect()
    try:
        consumer = connection.channel()
        wire.declare_exchanges(consumer, ns)
        queue = wire.subscribe(consumer, ns, f"{group}.{function}.*")  # before publishing
        publisher = connection.channel()
        publisher.confirm_delivery()
        try:
            wire.publish_job(publisher, ns, job)
        except wire.Unroutable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        results = list(wire.wait_for_results(consumer, queue, [job["id"]], TIMEOUT_SECONDS))
        if results:
            print(json.dumps(results[0], default=str), flush=True)
            return 0
        print(f"error: no result for {job['id']} within {TIMEOUT_SECONDS}s", file=sys.stderr)
        return 1
    finally:
        if connection.is_open:
            connection.close()


if __name__ == "__main__":
    sys.exit(main())
