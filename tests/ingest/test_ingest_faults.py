"""Faults `facegan ingest` must survive (issue 21 items 1, 2, 3, 6): its driver killed with -9,
a full disk, an `--output` that is a mount point, and a progress display that tells the truth
from the first second.

Unit tests inject the faults (OSError(ENOSPC) from the TFRecord writer, a mount point seen by
`diskspace.is_mount_point` plus the EBUSY a rename of it gives); the e2e tests make them real:
a `kill -9` of the command, and, where this machine lets an unprivileged user namespace mount a
tmpfs (`unshare -rm`), a 256 KB tmpfs as the output's parent and a tmpfs mounted at `--output`.
"""
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
from tests.testlib.ingest_faults import _faces, _hidden, _run


def _digest(root):
    out = {}
    for dp, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dp, n), "rb") as f:
                out[os.path.relpath(os.path.join(dp, n), root)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------ 2. disk full

def _no_space(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("pool", [False, True], ids=["one_process", "fork_pool"])
def test_disk_full_is_one_line_naming_device_and_output(tmp_path, capsys, monkeypatch, pool):
    out = str(tmp_path / "out")
    assert _run(["--input", _faces(tmp_path / "a", 6), "--output", out, "--resolution", "16"]) == 0
    before = _digest(out)
    if pool:      # the workers are forked after the patch, so they write through it too
        monkeypatch.setattr(PR, "POOL_MIN_FILES", 2)
        monkeypatch.setattr(PR, "_default_workers", lambda: 2)
    monkeypatch.setattr(examples_io.TFRecordGzipWriter, "close", _no_space)
    capsys.readouterr()
    assert _run(["--input", _faces(tmp_path / "b", 8, seed=1), "--output", out,
                 "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"facegan ingest: error: --output {out}: no space left on ")
    assert f"mounted at {diskspace.mount_of(out)[0]}" in err and "free of" in err
    assert "previous output" in err and "unchanged" in err
    assert "Traceback" not in err and ".ingest-" not in err
    assert _digest(out) == before and _hidden(out) == []


def test_disk_full_at_the_swap_and_in_the_reports(tmp_path, capsys, monkeypatch):
    """ENOSPC from the driver's own writes (summary, rejection report) is the same one line."""
    out = str(tmp_path / "out")
    assert _run(["--input", _faces(tmp_path / "a", 4), "--output", out, "--resolution", "16"]) == 0
    before = _digest(out)
    real = S.write_bytes

    def full_after_marker(path, data):
        if os.path.basename(path) == schema.SUMMARY_FILE:
            _no_space()
        return real(path, data)
    monkeypatch.setattr(S, "write_bytes", full_after_marker)
    capsys.readouterr()
    assert _run(["--input", _faces(tmp_path / "b", 5, seed=2), "--output", out, "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on " in err and f"--output {out}" in err
    assert _digest(out) == before and _hidden(out) == []


def test_disk_full_is_recognised_in_every_form():
    assert diskspace.is_disk_full(OSError(errno.ENOSPC, "x"))
    assert diskspace.is_disk_full(OSError(errno.EDQUOT, "x"))
    # a Beam worker's failure re-raised by the runner carries only the text
    assert diskspace.is_disk_full(RuntimeError("Traceback ...\nOSError: [Errno 28] No space left on device"))
    try:
        try:
            raise OSError(errno.ENOSPC, "x")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert diskspace.is_disk_full(e)
    assert not diskspace.is_disk_full(OSError(errno.EACCES, "x"))
    assert not diskspace.is_disk_full(ValueError("no space here"))


# ------------------------------------------------------------------ 3. mount points and messages

def _as_mount_point(monkeypatch, mounted):
    """`mounted` behaves as a mount point: seen as one, and renaming it fails with EBUSY."""
    monkeypatch.setattr(diskspace, "is_mount_point",
                        lambda p: os.path.realpath(p) == os.path.realpath(mounted))
    real_rename = os.rename

    def rename(src, dst, *a, **k):
        if os.path.realpath(src) == os.path.realpath(mounted):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), src)
        return real_rename(src, dst, *a, **k)
    monkeypatch.setattr(os, "rename", rename)


def test_output_that_is_a_mount_point_is_staged_inside_and_swapped(tmp_path, monkeypatch):
    out = tmp_path / "volume"
    out.mkdir()
    (out / "lost+found").mkdir()            # an ext4 volume's own folder: not ours, kept
    _as_mount_point(monkeypatch, str(out))
    for seed, n in ((0, 5), (3, 7)):
        assert _run(["--input", _faces(tmp_path / f"in{seed}", n, seed=seed), "--output", str(out),
                     "--resolution", "16"]) == 0
        names = sorted(os.listdir(out))
        assert names == sorted(["lost+found", "Split-train", "Split-eval", schema.SUMMARY_FILE,
                                schema.REJECTIONS_FILE, schema.GRID_FILE]), names
        with open(out / schema.SUMMARY_FILE) as f:
            assert '"files_seen": %d' % n in f.read()
        assert _hidden(str(out)) == []      # nothing staged beside it (another filesystem)
    with open(out / schema.SUMMARY_FILE) as f:
        files = json.load(f)["tfrecord_files"]
    assert files["train"]["records"] + files["eval"]["records"] == 7
    assert len(examples_io.open_checked(examples_io.split_files(str(out), "train"))) == 1


def test_failed_run_into_a_mount_point_keeps_it_unchanged(tmp_path, capsys, monkeypatch):
    out = tmp_path / "volume"
    out.mkdir()
    _as_mount_point(monkeypatch, str(out))
    assert _run(["--input", _faces(tmp_path / "a", 4), "--output", str(out), "--resolution", "16"]) == 0
    before = _digest(str(out))
    monkeypatch.setattr(examples_io.TFRecordGzipWriter, "close", _no_space)
    capsys.readouterr()
    assert _run(["--input", _faces(tmp_path / "b", 4, seed=1), "--output", str(out), "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--output {out}: no space left" in err and ".ingest-" not in err
    assert _digest(str(out)) == before


def test_output_messages_name_the_output_not_the_staging_folder(tmp_path, capsys, monkeypatch):
    src = _faces(tmp_path / "in", 3)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _run(["--input", src, "--output", str(afile / "out"), "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "File exists" not in err, err
    assert f"--output {afile / 'out'}: {afile} is a file, not a folder" in err
    assert _run(["--input", src, "--output", str(afile / "deeper" / "out"), "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{afile} is a file, not a folder" in err

    def refuse(path, data):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
    monkeypatch.setattr(S, "write_bytes", refuse)      # the staging folder's marker
    out = str(tmp_path / "new")
    assert _run(["--input", src, "--output", out, "--resolution", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"facegan ingest: error: --output cannot write to {out}: permission denied", err
    assert _hidden(out) == []


def _png_header_only(w, h):
    """A PNG whose header claims w x h (no pixel data): what a decompression bomb looks like."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_pixel_bomb_rejection_quotes_max_pixels_not_pils_limit():
    # above PIL's own refusal (2 x MAX_IMAGE_PIXELS = 178,956,970 by default): PIL raises first
    with pytest.raises(O.Rejected) as e:
        IM.decode(_png_header_only(20000, 20000))
    assert e.value.reason == O.OVERSIZED
    assert e.value.detail == f"400000000 pixels > max_pixels {O.DEFAULT_MAX_PIXELS} (--max-pixels)"
    assert "178956970" not in e.value.detail
    with pytest.raises(O.Rejected) as e:     # below it: our own check
        IM.decode(_png_header_only(300, 300), max_pixels=1000)
    assert e.value.detail == "300x300 = 90000 pixels > max_pixels 1000 (--max-pixels)"


# ------------------------------------------------------------------ 6. progress

def test_rate_and_eta_start_when_work_starts():
    from facegan.progress import format_eta, rate_eta
    # 1170 files/s from t=100: looked at first at t=120 with 23,400 done of 60,000
    rate, eta = rate_eta(23_400, 60_000, 100.0, 120.0)
    assert rate == pytest.approx(1170.0) and eta == pytest.approx((60_000 - 23_400) / 1170.0)
    assert rate_eta(0, 10, 100.0, 101.0) == (0.0, None)         # nothing done: no rate, no ETA
    assert rate_eta(5, 10, None, 101.0) == (0.0, None)          # clock not started
    assert rate_eta(5, None, 100.0, 105.0) == (1.0, None)       # unknown total (archives)
    assert format_eta(29) == "0:29" and format_eta(3725) == "1:02:05"
    line = cli.progress_line("process", 23_400, 60_000, 100.0, 120.0)
    assert line == "ingest  23400/60000 files  1170.0 files/s  ETA 0:31"
    assert cli.progress_line("hash", 10, 60_000, None, 5.0) == "ingest (hashing)  10/60000 files  starting"


def test_display_prints_at_each_phase_then_every_two_seconds():
    now = [0.0]
    stream = io.StringIO()
    d = cli.ProgressDisplay(stream=stream, clock=lambda: now[0], what="faces/")
    calls = [(0.0, 0, None, "list", None), (0.5, 0, 100, "hash", None), (1.0, 50, 100, "hash", 0.5),
             (1.5, 100, 100, "hash", 0.5), (2.0, 5, 100, "process", 1.8), (3.0, 20, 100, "process", 1.8),
             (4.0, 40, 100, "process", 1.8), (4.5, 50, 100, "process", 1.8)]
    for t, done, total, phase, started in calls:
        now[0] = t
        d(done, total, phase=phase, started=started)
    now[0] = 5.0
    d.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["ingest (listing) faces/",
                     "ingest (hashing)  0/100 files  starting",
                     "ingest  5/100 files  25.0 files/s  ETA 0:04",       # 5 / (2.0 - 1.8)
                     "ingest  40/100 files  18.2 files/s  ETA 0:03",      # 2 s later
                     "ingest  50/100 files  15.6 files/s  ETA 0:03"]      # close(): 50 / 3.2


def test_progress_reported_before_the_first_chunk_returns(tmp_path, monkeypatch):
    """The local pool reports while its chunks run (old code: only when a chunk came back)."""
    src = _faces(tmp_path / "in", 40)
    monkeypatch.setattr(PR, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(PR, "CHUNKS_PER_WORKER", 1)
    monkeypatch.setattr(PR._Workers, "POLL_S", 0.1)
    real_process = S.GroupProcessor.process

    def slow(self, *a, **k):                 # runs in the forked workers
        time.sleep(0.05)
        return real_process(self, *a, **k)
    monkeypatch.setattr(S.GroupProcessor, "process", slow)
    first_chunk_back = []
    real_imap = PR._Workers.imap

    def imap(self, fn, items, poll=None):
        for value in real_imap(self, fn, items, poll=poll):
            if fn is PR._process_chunk and not first_chunk_back:
                first_chunk_back.append(time.time())
            yield value
    monkeypatch.setattr(PR._Workers, "imap", imap)
    seen = []

    def on_progress(done, total, phase="process", started=None):
        seen.append((time.time(), phase, done, total, started))
    summary = R.ingest(src, str(tmp_path / "out"), O.IngestConfig(resolution=16),
                       on_progress=on_progress, runner="local", workers=2)
    assert summary["files_seen"] == 40
    phases = [p for _, p, *_ in seen]
    assert phases[0] == "list" and "hash" in phases and phases.index("hash") < phases.index("process")
    early = [(t, done, started) for t, p, done, _, started in seen
             if p == "process" and 0 < done < 40 and t < first_chunk_back[0]]
    assert early, seen
    # the clock is the time the first file started, before anyone looked
    assert all(started is not None and started <= t for t, _, started in early)
    assert seen[-1][1:4] == ("process", 40, 40)


# ------------------------------------------------------------------ 1. kill -9


# ------------------------------------------------------------------ real tmpfs (user namespace)


