"""A process function that reports progress and logs, for tests/tests/progress.rs.

args: {"steps": N, "logs": M}. Reports progress 100*i/N for each step and logs M stderr
lines, then answers {"steps": N}. With --shared it serves requests line by line.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
from jobfleet_job import log, progress  # noqa: E402


def run(args):
    steps = int(args.get("steps", 1))
    for i in range(int(args.get("logs", 0))):
        log("line", i)
    for step in range(1, steps + 1):
        progress(100 * step / steps, f"step {step} of {steps}")
    return {"steps": steps}


if "--shared" in sys.argv:
    for request in sys.stdin:
        request = json.loads(request)
        result = run(request["args"])
        sys.stdout.write(json.dumps({"id": request["id"], "result": result}) + "\n")
        sys.stdout.flush()
else:
    print(json.dumps(run(json.load(sys.stdin))))
