#!/usr/bin/env python3
"""Escape attempts from a process sandbox, for tests/tests/sandbox_escape.rs.
args: {"mode": ..., ...}; answers what it managed to do.

Exclusive mode (default): one JSON args document on stdin, one JSON result on stdout.
Shared mode (--shared): one request per line {"id", "args"}, one answer per line.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time


def attempt(action):
    """What an action gave, or the name and text of the error it raised."""
    try:
        return {"ok": action()}
    except Exception as e:  # every failure is an answer here
        return {"error": f"{type(e).__name__}: {e}"}


def read(path, binary=False):
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    return data if binary else data.decode(errors="replace")


def read_memory(pid):
    """Reads some bytes of another process's memory through /proc/<pid>/mem."""
    maps = read(f"/proc/{pid}/maps")
    start = int(maps.split("-", 1)[0], 16)
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(start)
        return len(f.read(64))


def ptrace_attach(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return "attached"


def secret_leaks(secret):
    """Every /proc file of any process, readable here, that holds the secret."""
    leaks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in ("environ", "cmdline"):
            try:
                if secret.encode() in read(f"/proc/{pid}/{name}", binary=True):
                    leaks.append(f"/proc/{pid}/{name}")
            except OSError:
                pass
    return leaks


def snoop(args):
    worker = args.get("worker") or os.getppid()
    return {
        "uid": os.getuid(),
        "environ": attempt(lambda: read(f"/proc/{worker}/environ")),
        "memory": attempt(lambda: read_memory(worker)),
        "ptrace": attempt(lambda: ptrace_attach(worker)),
        "cmdline_has_secret": attempt(
            lambda: args["secret"] in read(f"/proc/{worker}/cmdline")
        ),
        "leaks": secret_leaks(args["secret"]),
    }


def fork_bomb(count):
    forked = 0
    try:
        for _ in range(count):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            forked += 1
    except OSError as e:
        return {"forked": forked, "error": str(e)}
    return {"forked": forked, "error": None}


def big_file(mb):
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open("big.bin", "wb") as f:
            for _ in range(mb):
                f.write(chunk)
                f.flush()
                written = f.tell()
    except OSError as e:
        return {"written": os.path.getsize("big.bin"), "error": str(e)}
    return {"written": written, "error": None}


def ignore_term():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def descendants_then_hang(marker):
    """A child in the job's session and one in a session of its own that ignores TERM, both
    `sleep <marker>` so that the test can find them; then waits to be stopped."""
    subprocess.Popen(["sleep", marker])
    subprocess.Popen(["sleep", marker], start_new_session=True, preexec_fn=ignore_term)
    time.sleep(3600)


def leave_a_daemon(marker):
    """Starts `sleep <marker>` in a session of its own and returns without waiting."""
    subprocess.Popen(["sleep", marker], start_new_session=True, preexec_fn=ignore_term)
    return "left"


def connect(host, port):
    with socket.create_connection((host, port), timeout=3):
        return "connected"


def write(path):
    with open(path, "w") as f:
        f.write("escaped?")
    os.remove(path)
    return "written"


def run(args):
    mode = args.get("mode")
    if mode == "snoop":
        return snoop(args)
    if mode == "fork_bomb":
        return fork_bomb(args["count"])
    if mode == "big_file":
        return big_file(args["mb"])
    if mode == "descendants":
        return descendants_then_hang(args["marker"])
    if mode == "daemon":
        return leave_a_daemon(args["marker"])
    if mode == "network":
        return attempt(lambda: connect(args["host"], args["port"]))
    if mode == "write":
        return {path: attempt(lambda: write(path)) for path in args["paths"]}
    if mode == "abort":
        os.abort()
    if mode == "whoami":
        return {
            "uid": os.getuid(),
            "hostname": socket.gethostname(),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        }
    raise ValueError(f"unknown mode {mode!r}")


def main():
    if "--shared" in sys.argv:
        for line in sys.stdin:
            request = json.loads(line)
            print(json.dumps({"id": request["id"], "result": run(request["args"])}), flush=True)
        return
    json.dump(run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
