"""Ingestion never destroys good data (issue 9), through `facegan ingest`'s own entry points.

Runs the local runner (no Beam import) on inputs synthesized in tmp_path, so every expected
count is known by construction. The Beam runner's equality with it is in test_ingest_beam.py.
"""
import argparse
import errno
import hashlib
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from facegan import examples_io, schema
from facegan.ingest import cli
from facegan.ingest import pool_runner as PR, runner as R
from facegan.ingest import options as O
from facegan.ingest import listing as L
from facegan.ingest import archives as A
from tests.testlib.examples import write_synthetic_examples


def _png(rng, h=40, w=40):
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(b, format="PNG")
    return b.getvalue()


def _faces(d, n, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    for k in range(n):
        with open(os.path.join(d, f"f{k}.png"), "wb") as f:
            f.write(_png(rng))
    return str(d)


def _tree_digest(root):
    """{relative path: sha256} of every file under root (byte-identity of an output)."""
    out = {}
    for dp, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dp, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _run(argv, capsys=None):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv + ["--quiet"]))


def _siblings(out):
    parent = os.path.dirname(out)
    return sorted(n for n in os.listdir(parent) if n.startswith("." + os.path.basename(out)))


# ------------------------------------------------------------------ (a) failed run keeps old output

@pytest.mark.parametrize("failure", ["non_images", "max_rejected_fraction"])
def test_failed_run_leaves_previous_output_byte_identical(tmp_path, capsys, failure):
    out = str(tmp_path / "out")
    assert _run(["--input", _faces(tmp_path / "good", 12), "--output", out, "--resolution", "16"]) == 0
    before = _tree_digest(out)
    assert schema.SUMMARY_FILE in before and any(k.startswith("Split-train") for k in before)
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in range(3):
        (bad / f"notes{k}.txt").write_text("not a face")
    extra = []
    if failure == "max_rejected_fraction":
        _faces(bad, 2, seed=5)                          # 2 good, 3 rejected: 60% > 50%
        extra = ["--max-rejected-fraction", "0.5"]
    capsys.readouterr()
    assert _run(["--input", str(bad), "--output", out, "--resolution", "16"] + extra) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "previous output" in err and "unchanged" in err
    if failure == "max_rejected_fraction":
        assert "--max-rejected-fraction" in err and "max_rejected_fraction" not in err
    assert _tree_digest(out) == before                  # byte-identical, no stale grid
    assert _siblings(out) == []                         # staging folder removed
    assert len(examples_io.open_checked(examples_io.split_files(out, "train"))) == 1


def test_success_replaces_the_output_and_leaves_no_marker(tmp_path):
    out = str(tmp_path / "out")
    assert _run(["--input", _faces(tmp_path / "a", 6), "--output", out, "--resolution", "16"]) == 0
    assert _run(["--input", _faces(tmp_path / "b", 9, seed=3), "--output", out, "--resolution", "16"]) == 0
    with open(os.path.join(out, schema.SUMMARY_FILE)) as f:
        assert json.load(f)["files_seen"] == 9
    assert examples_io.INCOMPLETE_MARKER not in os.listdir(out) and _siblings(out) == []


def test_unfinished_staging_folder_is_refused_and_swept(tmp_path):
    """A run killed with -9 leaves its staging folder, marked: readers refuse it, the next run
    removes it."""
    out = str(tmp_path / "out")
    stale = tmp_path / ".out.ingest-999999999-deadbeef"     # pid that cannot exist
    write_synthetic_examples(str(stale), n_train=2, n_eval=1, resolution=8)
    (stale / examples_io.INCOMPLETE_MARKER).write_text("")
    with pytest.raises(examples_io.ExamplesError, match="unfinished ingestion output"):
        examples_io.open_checked(examples_io.split_files(str(stale), "train"))
    assert _run(["--input", _faces(tmp_path / "a", 3), "--output", out, "--resolution", "16"]) == 0
    assert not stale.exists()


# ------------------------------------------------------------------ (d) output-path problems

def test_output_path_problems_are_one_line(tmp_path, capsys, monkeypatch):
    src = _faces(tmp_path / "in", 3)
    afile = tmp_path / "afile"
    afile.write_text("x")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    cases = [(str(afile), "is an existing file"),
             (str(home), "holds other files"),
             (str(afile / "sub"), "")]
    for out, what in cases:
        capsys.readouterr()
        assert _run(["--input", src, "--output", out, "--resolution", "16"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("facegan ingest: error: --output ")
        assert str(afile) in err or str(home) in err
        assert what in err
    assert (home / "thesis.tex").read_text() == "precious"
    for code, what in ((errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")):
        def refuse(path, *a, _code=code, **k):
            raise OSError(_code, os.strerror(_code), path)
        monkeypatch.setattr(os, "mkdir", refuse)
        capsys.readouterr()
        assert _run(["--input", src, "--output", str(tmp_path / "new"), "--resolution", "16"]) == 1
        err = capsys.readouterr().err.strip()
        monkeypatch.undo()
        assert len(err.splitlines()) == 1 and what in err and str(tmp_path) in err


def test_messages_name_the_users_flags(tmp_path, capsys):
    assert _run(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"),
                 "--resolution", "16"]) == 1
    err = capsys.readouterr().err
    assert "--input " in err and "input_base" not in err
    assert _run(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--resolution", "16",
                 "--eval-fraction", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--eval-fraction must be in [0, 1)" in err and "eval_fraction" not in err


# ------------------------------------------------------------------ (b) symlink loops

def test_symlink_loops_followed_once(tmp_path, capsys):
    src = tmp_path / "in"
    _faces(src / "a", 4)
    _faces(src / "b", 3, seed=9)
    os.symlink(src, src / "a" / "back_to_root")            # loop to an ancestor
    os.symlink(src / "b", src / "b" / "self")              # loop to itself
    os.symlink(src / "b", src / "z_alias_of_b")            # a second path to a counted folder
    listing = L.list_inputs(str(src))
    assert len(listing.units) == 7
    assert sorted(listing.symlink_loops) == sorted([
        f"{src}/a/back_to_root -> {os.path.realpath(src)}",
        f"{src}/b/self -> {os.path.realpath(src / 'b')}"])
    assert listing.aliases == [f"{src}/z_alias_of_b"]
    out = str(tmp_path / "out")
    assert _run(["--input", str(src), "--output", out, "--resolution", "16"]) == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out)
    assert s["files_seen"] == 7 and s["examples_written"] == 7 and s["duplicates"] == 0
    assert s["rejected"] == 0 and len(s["symlink_loops"]) == 2
    assert cap.err.count("symlink loop") == 2


# ------------------------------------------------------------------ (f) archive link members

def test_tar_symlink_members_are_accounted(tmp_path, rng):
    a, b = _png(rng), _png(rng)
    path = tmp_path / "set.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for name, data in (("x/a.png", a), ("x/b.png", b)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (("x/link_in.png", "a.png"), ("x/link_out.png", "../../etc/passwd")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
        info = tarfile.TarInfo("x/fifo")
        info.type = tarfile.FIFOTYPE
        t.addfile(info)
    got = dict(A.iter_archive(str(path)))
    assert len(got) == 5                                   # every member seen
    assert got[f"{path}!x/link_in.png"] == a                # followed inside the archive
    assert got[f"{path}!x/link_out.png"].reason == O.NOT_A_FILE
    assert "../../etc/passwd" in got[f"{path}!x/link_out.png"].detail
    assert got[f"{path}!x/fifo"].reason == O.NOT_A_FILE
    s = R.ingest(str(path), str(tmp_path / "out"), O.IngestConfig(resolution=16),
                 runner="local")
    assert s["files_seen"] == 5 and s["examples_written"] == 2 and s["duplicates"] == 1
    assert s["rejected_by_reason"][O.NOT_A_FILE] == 2 and s["invariant_holds"]
    with open(tmp_path / "out" / schema.REJECTIONS_FILE) as f:
        reasons = {json.loads(ln)["path"].split("!")[1]: json.loads(ln)["reason"] for ln in f}
    assert reasons == {"x/link_in.png": O.DUPLICATE, "x/link_out.png": O.NOT_A_FILE,
                       "x/fifo": O.NOT_A_FILE}


def test_zip_symlink_members_are_accounted(tmp_path, rng):
    a = _png(rng)
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.png", a)
        for name, target in (("in.png", "a.png"), ("out.png", "/etc/passwd")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, target)
    got = dict(A.iter_archive(str(path)))
    assert got[f"{path}!in.png"] == a and got[f"{path}!out.png"].reason == O.NOT_A_FILE


# ------------------------------------------------------------------ (g) mirror counts

def test_mirror_summary_names_originals_and_records(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert _run(["--input", _faces(tmp_path / "in", 5), "--output", out, "--resolution", "16",
                 "--mirror"]) == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out)
    records = sum(b.shape[0] for sp in ("train", "eval") for b in examples_io.iterate_images(out, sp))
    assert s["originals_written"] == 5 and s["records_written"] == records == 10
    assert "5 originals + 5 mirrored = 10 records" in cap.err


# ------------------------------------------------------------------ (i) help

def test_help_describes_every_flag_with_default_and_example(capsys):
    parser = argparse.ArgumentParser(prog="facegan ingest")
    cli.add_arguments(parser)
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        h = action.help or ""
        assert len(h) > 15, action.dest                      # a real description
        assert "(default: " in parser._get_formatter()._get_help_string(action) or action.required
    flat = " ".join(text.split())
    for flag in ("--crop", "--eval-fraction", "--min-side", "--max-pixels",
                 "--max-rejected-fraction", "--background"):
        assert flag in flat
    assert "(default: 0.1)" in flat and "(default: 32)" in flat and "(default: '255,255,255')" in flat
    assert "example:" in text and "facegan ingest --input" in text
    assert "is replaced, but only when the new run succeeds" in flat


# ------------------------------------------------------------------ local runner: pool = single

def test_pool_and_single_process_write_the_same_records(tmp_path, monkeypatch):
    src = _faces(tmp_path / "in", 24)
    cfg = O.IngestConfig(resolution=16, mirror=True)
    s1 = R.ingest(src, str(tmp_path / "one"), cfg, runner="local", workers=1)
    monkeypatch.setattr(PR, "POOL_MIN_FILES", 2)
    s2 = R.ingest(src, str(tmp_path / "two"), cfg, runner="local", workers=2)
    assert s2["tfrecord_files"]["train"]["files"] > 1       # really ran in chunks

    def records(uri):
        import tensorflow as tf
        return {sp: sorted(r.numpy() for f in examples_io.split_files(uri, sp)
                           for r in tf.data.TFRecordDataset(f, compression_type="GZIP"))
                for sp in ("train", "eval")}
    assert records(str(tmp_path / "one")) == records(str(tmp_path / "two"))
    for k in ("files_seen", "records_written", "splits", "channel_mean", "channel_std"):
        assert s1[k] == s2[k], k


def test_two_pool_ingests_of_the_same_input_are_byte_identical(tmp_path, monkeypatch):
    """Shard files are named in input order, not by the workers' random temp names: training
    reads the files in name order, so a second ingest must give the same example order (a study
    rerun on a fresh ingest trained on a permuted order before)."""
    src = _faces(tmp_path / "in", 60)
    cfg = O.IngestConfig(resolution=16)
    monkeypatch.setattr(PR, "POOL_MIN_FILES", 2)
    R.ingest(src, str(tmp_path / "a"), cfg, runner="local", workers=2)
    R.ingest(src, str(tmp_path / "b"), cfg, runner="local", workers=2)
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    shards = [k for k in a if "data_tfrecord" in k]
    assert len(shards) >= 8                              # 2 workers x 4 chunks x 2 splits
    assert {k: a[k] for k in shards} == {k: b.get(k) for k in shards}
