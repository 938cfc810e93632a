#!/usr/bin/env python3
"""wordcount as a `process` function in shared mode: the process stays alive and serves
one job per line, request {"id", "args"} in, answer {"id", "result"} or {"id", "error"} out.
The answer echoes the request's id, which lets the worker check that answers and requests
pair up. Nothing else may go to stdout: logs belong on stderr."""

import json
import sys

from wordcount import wordcount

if __name__ == "__main__":
    for line in sys.stdin:
        request = json.loads(line)
        args = request.get("args")
        if isinstance(args, dict) and isinstance(args.get("text"), str):
            answer = {"result": wordcount(args["text"])}
        else:
            answer = {"error": "args must be {\"text\": string}"}
        answer["id"] = request.get("id")
        print(json.dumps(answer), flush=True)
