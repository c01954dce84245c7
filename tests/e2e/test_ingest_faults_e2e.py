"""Faults `facegan ingest` must survive, as processes and real mounts: the driver killed with -9, a real full tmpfs, a mount point as --output."""
import argparse
import errno
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from facegan import diskspace, examples_io, schema
from facegan.ingest import cli
from facegan.ingest import runner as R
from facegan.ingest import pool_runner as PR
from facegan.ingest import output
from facegan.ingest import stages as S
from facegan.ingest import options as O
from facegan.ingest import image_ops as IM
from facegan.ingest.watchdog import descendants
from tests.testlib.ingest_faults import _faces, _hidden, _run
from tests.testlib.procs import cmdline, reap



def _children(pid):
    return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()] \
        if os.path.exists(f"/proc/{pid}/task/{pid}/children") else []


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    d = tempfile.mkdtemp()
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {d}"],
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.rmdir(d)


def _in_namespace(script: str, timeout=300):
    """Run a shell script in a private user + mount namespace (mounts vanish with it)."""
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.e2e
def test_kill_9_leaves_no_worker_and_the_next_run_sweeps_its_files(tmp_path):
    src = _faces(tmp_path / "in", 300, side=128)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "facegan.cli", "ingest", "--input", src, "--output", out,
           "--resolution", "64"]
    tmp = tempfile.gettempdir()
    existing = set(glob.glob(os.path.join(tmp, "facegan-ingest-*")))
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(os.path.join(tmp_path, ".out.ingest-*", ".ingest-tmp", "*", "*")):
        assert proc.poll() is None
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 1 and proc.poll() is None
    # its progress folder and its worker log (a concurrent run elsewhere would add its own: only
    # the ones naming this pid, or worker logs, which older versions named without it)
    mine = [p for p in set(glob.glob(os.path.join(tmp, "facegan-ingest-*"))) - existing
            if f"-{proc.pid}-" in p or os.path.basename(p).startswith("facegan-ingest-workers-")]
    assert any(os.path.basename(p).startswith("facegan-ingest-progress-") for p in mine), mine
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reap(workers, 5.0) == [], "ingest workers outlived their driver"
    # a later (quiet) run removes what the killed one left in the temp folder and beside --output
    assert _run(["--input", _faces(tmp_path / "small", 3), "--output", out, "--resolution", "16"]) == 0
    assert [p for p in mine if os.path.exists(p)] == []
    assert _hidden(out) == []


@pytest.mark.e2e
def test_kill_9_of_a_beam_run_leaves_no_beam_worker(tmp_path):
    """`facegan ingest --beam-args` on the multi-processing DirectRunner, killed with -9 while its
    workers process: Beam's own worker processes (and their `sh -c` parents) are gone within a
    second or two, not left to finish their bundles into a staging folder nobody will swap in."""
    src = _faces(tmp_path / "in", 300, side=128)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "facegan.cli", "ingest", "--input", src, "--output", out, "--resolution", "64",
           "--runner", "beam", "--beam-args", "--direct_running_mode=multi_processing --direct_num_workers=2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        workers = []
        while time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            workers = [p for p in descendants(proc.pid) if "sdk_worker_main" in cmdline(p)]
            if len(workers) >= 2 and glob.glob(os.path.join(tmp_path, ".out.ingest-*", "**", "*.gz"),
                                               recursive=True):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the Beam workers never started processing")
        workers = [p for p in descendants(proc.pid) if "watchdog" not in cmdline(p)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert reap(workers, 2.0) == [], "Beam workers outlived the killed `facegan ingest` by more than 2 s"


@pytest.mark.e2e
@pytest.mark.parametrize("runner", ["local", "beam"])
def test_real_full_tmpfs(tmp_path, runner):
    if not _can_mount_tmpfs():
        pytest.skip("no tmpfs mount in a user namespace on this machine")
    small = _faces(tmp_path / "small", 3)
    big = _faces(tmp_path / "big", 30, seed=1, side=64)       # ~370 KB of noise PNGs at 64px
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / "examples"
    ingest = f"{sys.executable} -m facegan.cli ingest --quiet --output {out}"
    failing = ingest + (" --runner beam --beam-args=--runner=DirectRunner" if runner == "beam" else "")
    r = _in_namespace(f"""
mount -t tmpfs -o size=256k tmpfs {mnt}
{ingest} --input {small} --resolution 16 >/dev/null
find {out} -type f | sort | xargs sha256sum > {tmp_path}/before
set +e
{failing} --input {big} --resolution 64 >/dev/null 2>{tmp_path}/err
echo $? > {tmp_path}/rc
set -e
find {out} -type f | sort | xargs sha256sum > {tmp_path}/after
ls -a {mnt} > {tmp_path}/names
""")
    assert r.returncode == 0, r.stderr
    err = (tmp_path / "err").read_text().strip()
    assert (tmp_path / "rc").read_text().strip() == "1", err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"--output {out}: no space left on the tmpfs filesystem mounted at {mnt}" in err
    assert "previous output" in err
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()
    assert sorted((tmp_path / "names").read_text().split()) == [".", "..", "examples"]


@pytest.mark.e2e
def test_real_mount_point_output(tmp_path):
    if not _can_mount_tmpfs():
        pytest.skip("no tmpfs mount in a user namespace on this machine")
    out = tmp_path / "volume"
    out.mkdir()
    ingest = f"{sys.executable} -m facegan.cli ingest --quiet --output {out} --resolution 16"
    r = _in_namespace(f"""
mount -t tmpfs -o size=8m tmpfs {out}
{ingest} --input {_faces(tmp_path / "a", 4)} >/dev/null
{ingest} --input {_faces(tmp_path / "b", 6, seed=1)} >/dev/null
ls -a {out} > {tmp_path}/names
grep -c '"files_seen": 6' {out}/{schema.SUMMARY_FILE} > {tmp_path}/seen
""")
    assert r.returncode == 0, r.stderr
    assert sorted((tmp_path / "names").read_text().split()) == sorted(
        [".", "..", "Split-train", "Split-eval", schema.SUMMARY_FILE, schema.REJECTIONS_FILE,
         schema.GRID_FILE])
    assert (tmp_path / "seen").read_text().strip() == "1"
