"""Progress and log lines from a jobfleet process function (SPEC §10).

A process function reports progress with single-line JSON objects on stdout before its
answer, and logs with lines on stderr. These helpers write them correctly (one line,
flushed at once, so the worker sees them while the job runs):

    from jobfleet_job import progress, log

    log("fetching", url)
    progress(50, "half way")

Both work in `exclusive` mode (stdout after the progress lines is the answer) and in
`shared` mode (any number of progress lines before each answer line).
"""

import json
import sys


def progress(percent, message=None):
    """Reports how far the job is: `percent` from 0 to 100, and optionally what it does."""
    line = {"progress": percent}
    if message is not None:
        line["message"] = str(message)
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(*parts):
    """Logs one line (the parts joined by spaces) to the job's log."""
    sys.stderr.write(" ".join(str(p) for p in parts).replace("\n", " ") + "\n")
    sys.stderr.flush()
