#!/usr/bin/env python3
"""Drives an interactive program (here `ssh -tt`) through a real pseudo-terminal, as a person at
a terminal would. Usage: pty_drive.py STEPS_JSON -- PROGRAM ARGS...

Steps: {"expect": TEXT, "timeout": S} waits for TEXT in the output; {"send": TEXT, "pause": S}
types TEXT; {"resize": [COLS, ROWS]} changes the window size (SIGWINCH); {"eof": S} waits up to
S seconds for the program to exit. Prints one JSON object: transcript, status, failed step."""
import fcntl, json, os, pty, select, struct, sys, termios, time

steps = json.loads(sys.argv[1])
argv = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    os.execvp(argv[0], argv)

buf = b""
closed = False


def pump(timeout):
    global buf, closed
    if closed:
        return
    r, _, _ = select.select([fd], [], [], timeout)
    if r:
        try:
            d = os.read(fd, 65536)
        except OSError:
            d = b""
        if not d:
            closed = True
        buf += d


def until(pred, timeout):
    end = time.time() + timeout
    while time.time() < end and not pred():
        if closed:
            break
        pump(0.05)
    return pred()


failed = None
status = None
for i, st in enumerate(steps):
    if "expect" in st:
        want = st["expect"].encode()
        if not until(lambda: want in buf, st.get("timeout", 20)):
            failed = {"step": i, "expect": st["expect"]}
            break
    elif "send" in st:
        os.write(fd, st["send"].encode())
        time.sleep(st.get("pause", 0.1))
    elif "resize" in st:
        c, r = st["resize"]
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))
        time.sleep(0.3)
    elif "eof" in st:
        until(lambda: closed, st["eof"])
        end = time.time() + st["eof"]
        while time.time() < end:
            p, s = os.waitpid(pid, os.WNOHANG)
            if p:
                status = os.waitstatus_to_exitcode(s)
                break
            pump(0.05)
        if status is None:
            failed = {"step": i, "eof": st["eof"]}
if status is None:
    try:
        os.kill(pid, 9)
        _, s = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(s)
    except OSError:
        pass
print(json.dumps({"transcript": buf.decode("utf-8", "replace"), "status": status, "failed": failed}))
