#!/usr/bin/env python3
"""A `shared`-mode process function that breaks the line protocol on request.

Each request {"id", "args"} is answered with {"id": id, "result": {"n": args["n"], "pid": pid}}
(without "id" when run with --no-id). args may also hold:
  "before": raw lines printed before the answer (noise, progress lines);
  "after":  raw lines printed right after the answer;
  "late":   {"line": ..., "marker": path}: a line printed 100 ms after the answer, while no
            request is outstanding, then the marker file is written;
  "answer_id": the id put in the answer instead of the request's;
  "exit":   exit right after answering.
With --banner LINE the process prints LINE once at start-up, before reading anything.
"""

import json
import os
import sys
import threading
import time


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def late(line, marker):
    time.sleep(0.1)
    say(line)
    with open(marker, "w") as f:
        f.write("printed")


def main():
    argv = sys.argv[1:]
    if "--banner" in argv:
        say(argv[argv.index("--banner") + 1])
    with_id = "--no-id" not in argv
    for request_line in sys.stdin:
        request = json.loads(request_line)
        args = request.get("args") or {}
        for line in args.get("before", []):
            say(line)
        answer = {"result": {"n": args.get("n"), "pid": os.getpid()}}
        if with_id:
            answer["id"] = args.get("answer_id", request.get("id"))
        say(json.dumps(answer))
        for line in args.get("after", []):
            say(line)
        if args.get("exit"):
            return
        if "late" in args:
            threading.Thread(target=late, args=(args["late"]["line"], args["late"]["marker"])).start()


if __name__ == "__main__":
    main()
