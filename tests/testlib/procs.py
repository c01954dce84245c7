"""Process helpers for the kill -9 tests (Linux /proc): is a pid alive, its command line, and which
of a set of pids outlive a deadline. The process tree itself comes from facegan.ingest.watchdog."""
import os
import signal
import time


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie or a dead process is not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def survivors(pids, seconds: float):
    """The pids still alive after waiting up to `seconds` for all of them to end."""
    deadline = time.time() + seconds
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def reap(pids, seconds: float):
    """`survivors(pids, seconds)`, each of them then SIGKILLed so a failing test leaves nothing behind."""
    left = survivors(pids, seconds)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return left
