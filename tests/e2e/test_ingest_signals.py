"""Ctrl-C / SIGTERM during `facegan ingest` (issue 9): one line, temporary files gone, exit
130 / 143, the previous output untouched, and the next run starts clean.

The command runs as a subprocess in its own session and the signal goes to the whole process
group, as a terminal's Ctrl-C does (so worker processes get it too).
"""
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("sig") / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    # enough work that the run is still going when the signal lands, also on a fast idle machine
    # (400 files finished between the test seeing the first shard and sending the signal, under load)
    for k in range(1200):
        Image.fromarray(rng.integers(0, 256, size=(192, 192, 3), dtype=np.uint8)).save(d / f"{k}.png")
    return str(d)


def _digest(root):
    out = {}
    for dp, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dp, n), "rb") as f:
                out[os.path.relpath(os.path.join(dp, n), root)] = f.read()
    return out


def _default_signals():
    """The child starts with SIGINT at its default: a test runner started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored (the ingest
    would not see the signal this test sends, as a user's terminal would deliver it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ingest(inp, out, *extra):
    return [sys.executable, "-m", "facegan.cli", "ingest", "--input", inp, "--output", out,
            "--resolution", "16", *extra]


@pytest.mark.parametrize("sig,code,runner", [
    (signal.SIGINT, 130, "local"), (signal.SIGTERM, 143, "local"), (signal.SIGINT, 130, "beam")])
def test_interrupt_cleans_up(tmp_path, big_input, sig, code, runner):
    out = str(tmp_path / "out")
    small = tmp_path / "small"
    small.mkdir()
    for k in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * k, np.uint8)).save(small / f"{k}.png")
    subprocess.run(_ingest(str(small), out, "--quiet"), check=True, capture_output=True)
    before = _digest(out)
    proc = subprocess.Popen(_ingest(big_input, out, "--runner", runner), start_new_session=True,
                            preexec_fn=_default_signals,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    # wait until shards are being written into the staging folder
    while time.time() < deadline and not glob.glob(str(tmp_path / ".out.ingest-*" / ".ingest-tmp" / "*" / "*")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    # progress lines (a line per phase from the start, then every 2 s) aside, one line
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("ingest ")]
    assert proc.returncode == code, stderr
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert len(lines) == 1 and f"interrupted ({name})" in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    assert _digest(out) == before                                      # previous output intact
    assert glob.glob(str(tmp_path / ".out.*")) == []                     # staging + .ingest-tmp gone
    left = glob.glob(os.path.join(tempfile.gettempdir(), f"facegan-ingest-progress-{proc.pid}-*"))
    assert left == []
    # nothing of the run is still alive in its process group (killed workers may take a moment
    # to be reaped on a loaded machine)
    deadline = time.time() + 20
    alive = True
    while alive and time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            alive = False
    assert not alive
