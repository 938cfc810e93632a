#!/usr/bin/env python3
"""wordcount as a `process` function in shared mode: the process stays alive and serves
one job per line, request {"id", "args"} in, answer {"result"} or {"error"} out."""

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
        print(json.dumps(answer), flush=True)
