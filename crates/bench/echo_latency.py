#!/usr/bin/env python3
"""Keystroke echo latency through `ssh -tt` (a real pseudo-terminal, as a person types):
starts PROGRAM under a pty, waits for the shell, runs `cat`, then types N single characters,
each after the previous one came back, and prints the round-trip times (ms) as JSON."""
import json, os, pty, select, sys, time

n = int(sys.argv[1])
argv = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
buf = b""


def until(want, timeout=20):
    global buf
    end = time.time() + timeout
    while want not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            buf += os.read(fd, 65536)
    if want not in buf:
        raise SystemExit(json.dumps({"error": f"no {want!r}", "got": buf[-300:].decode("utf-8", "replace")}))


os.write(fd, b"echo READY-$((1+1)); exec cat\r")
until(b"READY-2")
time.sleep(0.3)
lat = []
for i in range(n):
    c = bytes([ord("a") + i % 26])
    buf = b""
    t = time.perf_counter()
    os.write(fd, c)
    until(c)
    lat.append((time.perf_counter() - t) * 1000)
os.write(fd, b"\x04")
time.sleep(0.2)
try:
    os.kill(pid, 9)
except OSError:
    pass
print(json.dumps(lat))
