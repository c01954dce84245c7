"""facegan/ingest/watchdog.py: the processes a run started die with its driver when the driver is
killed outright; a driver that ends normally keeps its processes; processes the driver had before
the run are never touched."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from facegan.ingest.watchdog import descendants
from tests.testlib.procs import alive, cmdline, survivors

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc only")

# A stand-in driver: one child before the run, one started during it (like Beam's workers, which
# do not die with their parent by themselves), the watchdog around the run; prints the pids, then
# either waits to be killed or leaves the run normally.
DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from facegan.ingest.watchdog import watch_descendants
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    old = subprocess.Popen(sleeper)
    with watch_descendants():
        new = subprocess.Popen(["sh", "-c", " ".join(sleeper[:1]) + " -c 'import time; time.sleep(120)'"])
        time.sleep(1.0)          # the watchdog notes it (it scans every 0.25 s)
        print(old.pid, new.pid, flush=True)
        if sys.argv[1] == "die":
            time.sleep(120)      # killed here
    print("left", flush=True)
    time.sleep(120)
""")


def _driver(mode):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    old, new = map(int, proc.stdout.readline().split())
    return proc, old, new


def _cleanup(proc, pids):
    for p in pids + [proc.pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


def test_kill_9_of_the_driver_kills_what_the_run_started_and_only_that():
    proc, old, new = _driver("die")
    started = descendants(new) + [new]                     # `sh -c` and the python under it
    everything = descendants(proc.pid)
    dog = [p for p in everything if "facegan.ingest.watchdog" in cmdline(p)]
    try:
        assert len(dog) == 1 and all(alive(p) for p in started + [old])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert survivors(started, 3.0) == []
        assert alive(old)                             # there before the run: not the run's
        assert survivors(dog, 3.0) == []            # and the watchdog is done too
    finally:
        _cleanup(proc, everything + started + [old])


def test_a_driver_that_leaves_the_run_keeps_its_processes():
    proc, old, new = _driver("leave")
    started = descendants(new) + [new]
    try:
        assert proc.stdout.readline().strip() == "left"
        assert [p for p in descendants(proc.pid) if "facegan.ingest.watchdog" in cmdline(p)] == []   # it exited
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        assert all(alive(p) for p in started + [old])   # "done" was said: nothing is killed
    finally:
        _cleanup(proc, started + [old])
