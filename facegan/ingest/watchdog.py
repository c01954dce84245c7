"""The processes a Beam run starts die with `facegan ingest`, even when it is killed outright.

Beam's local runners start their own worker processes (DirectRunner with
`--direct_running_mode=multi_processing`: one `sh -c python -m ...sdk_worker_main` per worker),
which facegan does not create and cannot ask to die with their parent (`PR_SET_PDEATHSIG`, as the
local runner's workers do). When the driver is killed with SIGKILL (`kill -9`, the OOM killer)
those workers lose their runner and wind down on their own, finishing the work in hand first:
measured, up to about 6 s later, writing into a staging folder nobody will swap in.

`watch_descendants()` starts this module as a small process (`python -m facegan.ingest.watchdog
DRIVER_PID [PID...]`) that holds the read end of a pipe whose write end only the driver holds.
It notes the driver's descendant processes (with their start times, so a reused pid is never
hit) every `SCAN_S` seconds (about 1% of a core for a driver with 120 threads), except those already there when the run started (the PID
arguments). At end-of-file on the pipe without the driver's "done" (the kernel closed the
pipe: the driver is gone), it SIGKILLs the noted processes that are still the same processes,
and their descendants. A driver that ends normally, or on Ctrl-C / SIGTERM (it stops its
workers itself), writes "done" first and the watchdog exits without touching anything.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Dict, Iterator, List, Optional, Set

SCAN_S = 0.25
DONE = b"done\n"


def _start_time(pid: int) -> Optional[int]:
    """The process's start time (clock ticks since boot), None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def children(pid: int) -> List[int]:
    """Child process ids of `pid`, from every one of its threads (Linux /proc)."""
    out: List[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def descendants(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def watch(driver: int, ignore: Set[int], pipe, scan_s: float = SCAN_S) -> bool:
    """Note the driver's new descendants until `pipe` ends; if it ends without DONE, SIGKILL
    them. Returns whether anything was killed."""
    seen: Dict[int, int] = {}
    ended = threading.Event()
    said: List[bytes] = []

    def read():
        try:
            said.append(pipe.read())
        except OSError:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    me = os.getpid()
    while True:
        for p in descendants(driver):
            if p != me and p not in ignore and p not in seen:
                t = _start_time(p)
                if t is not None:
                    seen[p] = t
        if ended.wait(scan_s):
            break
    if DONE in b"".join(said):
        return False
    # The driver is gone. Its descendants were re-parented, but theirs are still theirs.
    doomed = [p for p, t in seen.items() if _start_time(p) == t]
    for p in list(doomed):
        doomed.extend(c for c in descendants(p) if c not in doomed)
    for p in doomed:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return bool(doomed)


@contextlib.contextmanager
def watch_descendants() -> Iterator[None]:
    """Run the body with a watchdog process (module docstring); Linux only (elsewhere a no-op)."""
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        yield
        return
    before = descendants(os.getpid())
    try:
        proc = subprocess.Popen([sys.executable, "-m", "facegan.ingest.watchdog", str(os.getpid()),
                                 *map(str, before)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    except OSError:   # no watchdog: the run still works, it only loses this guarantee
        yield
        return
    try:
        yield
    finally:
        try:
            proc.stdin.write(DONE)
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: List[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's to handle
    driver, ignore = int(argv[0]), {int(a) for a in argv[1:]}
    watch(driver, ignore, sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
