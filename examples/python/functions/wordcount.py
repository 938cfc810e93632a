#!/usr/bin/env python3
"""wordcount as a `process` function in exclusive mode: args {"text": ...} as JSON on
stdin, the counts as JSON on stdout. A fresh process runs each job."""

import json
import sys


def wordcount(text):
    counts = {}
    for word in text.split():
        word = word.strip(".,;:!?\"'()[]{}-").lower()
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts


if __name__ == "__main__":
    args = json.load(sys.stdin)
    if not isinstance(args, dict) or not isinstance(args.get("text"), str):
        print("args must be {\"text\": string}", file=sys.stderr)
        sys.exit(2)
    json.dump(wordcount(args["text"]), sys.stdout)
