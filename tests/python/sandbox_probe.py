#!/usr/bin/env python3
"""A process-sandbox function for the tests: reports what the sandbox gave it, or
misbehaves on request. args: {"mode": ..., ...}.

Exclusive mode (default): one JSON args document on stdin, one JSON result on stdout.
Shared mode (--shared): one request per line {"id", "args"}, one answer per line
{"result": ...} or {"error": "..."}.
"""

import json
import os
import resource
import subprocess
import sys
import time

jobs_served = 0


def run(args):
    global jobs_served
    jobs_served += 1
    mode = args.get("mode")
    if mode == "echo":
        return args.get("value")
    if mode == "env":
        return dict(os.environ)
    if mode == "cwd":
        with open("scratch.txt", "w") as f:
            f.write("left behind?")
        return os.getcwd()
    if mode == "limits":
        return {
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "as": resource.getrlimit(resource.RLIMIT_AS)[0],
            "pgid_is_own": os.getpgid(0) == os.getpid(),
        }
    if mode == "hog":
        hog = bytearray(args.get("mb", 1024) * 1024 * 1024)
        return len(hog)
    if mode == "fork":
        # A grandchild that outlives its parent unless the sandbox kills the group.
        child = subprocess.Popen(["sleep", "60"])
        return {"grandchild": child.pid}
    if mode == "hang":
        child = subprocess.Popen(["sleep", "60"])
        with open(args["pidfile"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(3600)
    if mode == "fail":
        print("probe failing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "abort":
        os.abort()
    if mode == "die":
        os._exit(1)
    if mode == "flaky":
        # Fails its first attempt, succeeds on the next.
        if os.environ.get("JOBFLEET_ATTEMPT") == "1":
            print("first attempt fails", file=sys.stderr)
            sys.exit(1)
        return {"attempt": int(os.environ["JOBFLEET_ATTEMPT"])}
    if mode == "whoami":
        return {"pid": os.getpid(), "served": jobs_served}
    raise ValueError(f"unknown mode {mode!r}")


def main():
    if "--shared" in sys.argv:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                answer = {"result": run(request.get("args") or {})}
            except Exception as e:  # the job's own error
                answer = {"error": str(e)}
            print(json.dumps(answer), flush=True)
        return
    json.dump(run(json.load(sys.stdin) or {}), sys.stdout)


if __name__ == "__main__":
    main()
