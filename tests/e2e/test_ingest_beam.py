"""End-to-end ingestion: the Beam pipeline (in-memory and multi-processing DirectRunner), the
`facegan ingest` CLI, and the ImageExampleGen component in a LocalDagRunner pipeline with
SQLite MLMD on real faces (read in place through symlinks, never copied into the repo).

Every bad input is synthesized in tmp_path so the expected counts are known by construction.
"""
import collections
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from facegan.ingest import options as O
from facegan.ingest import archives as A
from facegan.ingest import image_ops as IM
from facegan import schema

pytestmark = pytest.mark.e2e

MP_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _enc(arr, fmt, **kw):
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format=fmt, **kw)
    return b.getvalue()


def _face_like(rng, h, w):
    """A smooth random picture (JPEG-friendly), distinct per call."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(0, 255, size=(3, 3))
    img = c[0] * yy[..., None] + c[1] * xx[..., None] + c[2] * (1 - yy[..., None])
    img = img / 2 + rng.uniform(0, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def _bomb_png():
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def make_input_tree(root, rng):
    """A tree with good images in several formats, every rejection reason, duplicates, archives.

    Returns the expected accounting.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "a").mkdir()
    (root / "b" / "deep").mkdir(parents=True)
    good = {}
    good["a/p0.png"] = _enc(_face_like(rng, 48, 40), "PNG")
    good["a/p1.jpg"] = _enc(_face_like(rng, 60, 60), "JPEG", quality=95)
    good["a/p2.bmp"] = _enc(_face_like(rng, 40, 56), "BMP")
    good["b/p3.webp"] = _enc(_face_like(rng, 40, 40), "WEBP", lossless=True)
    good["b/p4.ppm"] = _enc(_face_like(rng, 44, 44), "PPM")
    good["b/deep/p5.gif"] = _enc(_face_like(rng, 40, 40), "GIF")
    good["b/deep/p6.png"] = _enc(np.dstack([_face_like(rng, 40, 40),
                                            np.full((40, 40, 1), 200, np.uint8)]), "PNG")  # RGBA
    for k in range(7, 12):
        good[f"b/q{k}.jpg"] = _enc(_face_like(rng, 50, 45), "JPEG", quality=92)
    for rel, data in good.items():
        (root / rel).write_bytes(data)
    # exact duplicates (same bytes, other names): written once
    (root / "b" / "zz_copy_of_p0.png").write_bytes(good["a/p0.png"])
    (root / "b" / "deep" / "copy_of_q7.jpg").write_bytes(good["b/q7.jpg"])
    # rejections
    jpg = _enc(_face_like(rng, 64, 64), "JPEG")
    bad = {
        "a/empty.jpg": O.ZERO_BYTE,
        "a/half.jpg": O.TRUNCATED,
        "a/readme.txt": O.NOT_AN_IMAGE,
        "a/corrupt.png": O.UNREADABLE,
        "a/tiny.png": O.TOO_SMALL,
        "a/bomb.png": O.OVERSIZED,
        "broken.zip": O.UNREADABLE,
    }
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "a" / "half.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "a" / "readme.txt").write_text("not a face\n")
    png = bytearray(_enc(_face_like(rng, 64, 64), "PNG"))
    i = png.find(b"IDAT")
    (root / "a" / "corrupt.png").write_bytes(bytes(png[: i + 14]) + bytes(200) + bytes(png[i + 214:]))
    (root / "a" / "tiny.png").write_bytes(_enc(_face_like(rng, 10, 12), "PNG"))
    (root / "a" / "bomb.png").write_bytes(_bomb_png())
    (root / "broken.zip").write_bytes(b"PK\x03\x04 truncated zip")
    # archives: two new faces + one duplicate of a tree file in a zip; one face in a tar.gz
    z1, z2 = _enc(_face_like(rng, 40, 40), "PNG"), _enc(_face_like(rng, 48, 48), "JPEG", quality=95)
    with zipfile.ZipFile(root / "set.zip", "w") as z:
        z.writestr("faces/z1.png", z1)
        z.writestr("faces/z2.jpg", z2)
        z.writestr("faces/dup_p1.jpg", good["a/p1.jpg"])
    t1 = _enc(_face_like(rng, 40, 40), "PNG")
    with tarfile.open(root / "more.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("t1.png")
        info.size = len(t1)
        t.addfile(info, io.BytesIO(t1))
    n_good = len(good) + 3       # + z1, z2, t1
    return {"good": n_good, "duplicates": 3, "bad": bad,
            "files_seen": n_good + 3 + len(bad)}


def _read_examples(uri):
    """{split: [feature dict]} via TensorFlow's own tf.train.Example parser."""
    import tensorflow as tf
    from facegan import examples_io
    out = {}
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        rows = []
        for f in examples_io.split_files(uri, split):
            for rec in tf.data.TFRecordDataset(f, compression_type="GZIP"):
                ex = tf.train.Example.FromString(rec.numpy())
                row = {}
                for k, v in ex.features.feature.items():
                    kind = v.WhichOneof("kind")
                    vals = list(getattr(v, kind).value)
                    row[k] = vals[0] if len(vals) == 1 else vals
                rows.append(row)
        out[split] = rows
    return out


def _source_bytes(source):
    if A.ARCHIVE_SEP in source:
        arch = source.split(A.ARCHIVE_SEP)[0]
        return dict(A.iter_archive(arch))[source]
    with open(source, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest") / "inputs"
    expect = make_input_tree(root, np.random.default_rng(7))
    labels = root.parent / "list_attr_celeba.txt"
    labels.write_text("2\nSmiling Male\np0.png 1 -1\nq8.jpg -1 1\n")
    return root, expect, str(labels)


@pytest.fixture(scope="module")
def in_memory_run(tree, tmp_path_factory):
    from facegan.ingest import runner as R
    root, expect, labels = tree
    out = str(tmp_path_factory.mktemp("out") / "examples")
    cfg = O.IngestConfig(resolution=16, mirror=True, extra_resolutions="4,8", eval_fraction=0.4,
                         min_side=16, max_pixels=1_000_000, labels=labels, background="0,0,0")
    summary = R.run_ingest(str(root), out, cfg, beam_args=[])
    return out, summary, cfg


def test_accounting_and_rejection_report(tree, in_memory_run):
    root, expect, _ = tree
    out, s, _ = in_memory_run
    assert s["files_seen"] == expect["files_seen"]
    assert s["examples_written"] == expect["good"]
    assert s["duplicates"] == expect["duplicates"]
    want = collections.Counter(expect["bad"].values())
    assert s["rejected_by_reason"] == {r: want.get(r, 0) for r in O.REJECTION_REASONS}
    assert s["files_seen"] == s["examples_written"] + s["duplicates"] + s["rejected"]
    assert s["invariant_holds"] and s["mirrored"] == expect["good"]
    with open(os.path.join(out, schema.REJECTIONS_FILE)) as f:
        lines = [json.loads(ln) for ln in f]
    rejected = {os.path.relpath(r["path"], root): r["reason"] for r in lines if r["reason"] != O.DUPLICATE}
    assert rejected == expect["bad"]
    assert all(r["detail"] for r in lines)
    dups = sorted(os.path.relpath(r["path"], root) for r in lines if r["reason"] == O.DUPLICATE)
    # the sorted-first path of a group is the original: b/deep/copy_of_q7.jpg < b/q7.jpg
    assert dups == ["b/q7.jpg", "b/zz_copy_of_p0.png", "set.zip!faces/dup_p1.jpg"]
    assert s["splits"]["train"]["originals"] + s["splits"]["eval"]["originals"] == expect["good"]
    assert s["resolutions"] == [4, 8, 16] and s["crop"] == "center" and s["filter"] == "lanczos"


def test_examples_pixel_exact_splits_mirrors_labels(tree, in_memory_run):
    from facegan.images import decode_png
    out, s, cfg = in_memory_run
    ex = _read_examples(out)
    originals = {}
    for split, rows in ex.items():
        assert len(rows) == s["splits"][split]["examples"]
        for row in rows:
            sha = row[schema.SHA256].decode()
            assert IM.assign_split(sha, cfg.eval_fraction) == split       # split by content hash
            img = decode_png(row[schema.IMAGE])
            assert img.shape == (16, 16, 3) and row[schema.HEIGHT] == 16
            if row[schema.MIRRORED] == 0:
                assert sha not in originals                               # duplicates written once
                originals[sha] = (split, row, img)
    for split, rows in ex.items():
        for row in rows:
            if row[schema.MIRRORED] == 1:
                osplit, orow, oimg = originals[row[schema.SHA256].decode()]
                assert osplit == split                                     # mirror stays with it
                np.testing.assert_array_equal(decode_png(row[schema.IMAGE]), oimg[:, ::-1])
    assert len(originals) == s["examples_written"]
    # pixel-exact round trip: stored PNG == the transform's output on the source bytes
    for sha, (split, row, img) in originals.items():
        src = row[schema.SOURCE].decode()
        data = _source_bytes(src)
        assert IM.sha256_hex(data) == sha
        p = IM.process_bytes(data, cfg)
        np.testing.assert_array_equal(img, p.image)
        np.testing.assert_array_equal(decode_png(row[schema.image_key(8, 16)]), p.extra[8])
        np.testing.assert_array_equal(decode_png(row[schema.image_key(4, 16)]), p.extra[4])
        assert (row[schema.ORIG_HEIGHT], row[schema.ORIG_WIDTH]) == (p.orig_height, p.orig_width)
    # the original of a duplicate group is its sorted-first path
    by_src = {os.path.basename(r[schema.SOURCE].decode()): r for _, r, _ in originals.values()}
    assert "p0.png" in by_src and "zz_copy_of_p0.png" not in by_src
    # labels: CelebA table -> attr/<name> int64 0/1
    assert by_src["p0.png"]["attr/smiling"] == 1 and by_src["p0.png"]["attr/male"] == 0
    assert by_src["q8.jpg"]["attr/smiling"] == 0 and by_src["q8.jpg"]["attr/male"] == 1
    assert "attr/smiling" not in by_src["p1.jpg"]
    assert s["unlabeled"] == s["examples_written"] - 2
    # per-channel mean/std of the written originals, recomputed from the read-back pixels
    px = np.concatenate([img.reshape(-1, 3) for _, _, img in originals.values()]).astype(np.float64)
    np.testing.assert_allclose(s["channel_mean"], px.mean(0), atol=1e-3)
    np.testing.assert_allclose(s["channel_std"], px.std(0), atol=1e-3)
    grid = Image.open(os.path.join(out, schema.GRID_FILE))
    assert grid.mode == "RGB" and s["grid_images"] == s["examples_written"]


def test_multiprocessing_matches_in_memory_and_is_deterministic(tree, in_memory_run, tmp_path):
    """Same inputs on the multi-processing DirectRunner (2 workers): identical examples and splits."""
    from facegan.ingest import runner as R
    root, _, _ = tree
    out0, s0, cfg = in_memory_run
    out = str(tmp_path / "mp")
    s = R.run_ingest(str(root), out, cfg, beam_args=MP_ARGS)
    for k in ("files_seen", "examples_written", "duplicates", "rejected_by_reason", "splits",
              "channel_mean", "mirrored"):
        assert s[k] == s0[k], k

    def keyed(uri):
        return {split: sorted((r[schema.SHA256], r[schema.MIRRORED], r[schema.IMAGE], r[schema.SOURCE])
                              for r in rows) for split, rows in _read_examples(uri).items()}
    assert keyed(out) == keyed(out0)
    with open(os.path.join(out, schema.REJECTIONS_FILE)) as a, \
            open(os.path.join(out0, schema.REJECTIONS_FILE)) as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("workers", [1, 2])
def test_local_runner_matches_beam(tree, in_memory_run, tmp_path, monkeypatch, workers):
    """The output does not depend on the runner: the local runner (no Beam; one process or a
    fork pool) writes the same records, rejection report and counts as the Beam pipeline."""
    from facegan.ingest import pool_runner as PR, runner as R
    monkeypatch.setattr(PR, "POOL_MIN_FILES", 2)
    root, _, _ = tree
    out0, s0, cfg = in_memory_run
    out = str(tmp_path / "local")
    s = R.ingest(str(root), out, cfg, runner="local", workers=workers)
    assert s["runner"] == "local" and s0["runner"] == "beam"
    for k in ("files_seen", "examples_written", "records_written", "duplicates",
              "rejected_by_reason", "splits", "channel_mean", "channel_std", "mirrored",
              "unlabeled", "grid_images"):
        assert s[k] == s0[k], k

    def keyed(uri):
        return {split: sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)
                for split, rows in _read_examples(uri).items()}
    assert keyed(out) == keyed(out0)
    for name in (schema.REJECTIONS_FILE, schema.GRID_FILE):
        with open(os.path.join(out, name), "rb") as a, open(os.path.join(out0, name), "rb") as b:
            assert a.read() == b.read(), name


def test_fail_fast_before_beam(tmp_path):
    from facegan.ingest import runner as R
    cfg = O.IngestConfig(resolution=16)
    with pytest.raises(O.IngestError, match="missing_dir"):
        R.run_ingest(str(tmp_path / "missing_dir"), str(tmp_path / "o"), cfg)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(O.IngestError, match="empty directory"):
        R.run_ingest(str(tmp_path / "empty_dir"), str(tmp_path / "o"), cfg)
    (tmp_path / "bad_labels.txt").write_text("9\nA\nx.jpg 1\n")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.png").write_bytes(_enc(np.zeros((16, 16, 3), np.uint8), "PNG"))
    with pytest.raises(O.IngestError, match="bad_labels.txt"):
        R.run_ingest(str(tmp_path / "one"), str(tmp_path / "o"),
                     O.IngestConfig(resolution=16, labels=str(tmp_path / "bad_labels.txt")))
    assert not os.path.exists(tmp_path / "o" / schema.SUMMARY_FILE)


def test_nothing_survives_and_rejection_threshold(tmp_path):
    from facegan.ingest import runner as R
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.txt").write_text("x")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(O.IngestError, match="no image survived") as e:
        R.run_ingest(str(bad), str(tmp_path / "o1"), O.IngestConfig(resolution=16))
    assert "not_an_image=1" in str(e.value) and "zero_byte=1" in str(e.value)
    rng = np.random.default_rng(1)
    (bad / "good.png").write_bytes(_enc(_face_like(rng, 32, 32), "PNG"))
    with pytest.raises(O.IngestError, match="max_rejected_fraction") as e:
        R.run_ingest(str(bad), str(tmp_path / "o2"),
                     O.IngestConfig(resolution=16, max_rejected_fraction=0.5))
    assert "2 of 3 files rejected" in str(e.value)
    s = R.run_ingest(str(bad), str(tmp_path / "o3"),
                     O.IngestConfig(resolution=16, max_rejected_fraction=0.7))
    assert s["examples_written"] == 1 and s["rejected"] == 2


def test_cli_ingest(tmp_path, capsys):
    import argparse
    from facegan.ingest import cli
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    for k in range(6):
        (src / f"{k}.png").write_bytes(_enc(_face_like(rng, 40, 40), "PNG"))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "out"
    rc = cli.main(parser.parse_args(["--input", str(src), "--output", str(out), "--resolution", "8",
                                     "--mirror", "--beam-args", "", "--quiet"]))
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["examples_written"] == 6 and printed["mirrored"] == 6
    from facegan import examples_io
    n = sum(b.shape[0] for split in ("train", "eval") for b in examples_io.iterate_images(str(out), split))
    assert n == 12
    rc = cli.main(parser.parse_args(["--input", str(src), "--output", str(out), "--resolution", "48"]))
    assert rc == 2 and "resolution" in capsys.readouterr().err


def test_component_in_local_dag_runner_on_real_faces(tmp_path, ffhq_dir, celeba_dir):
    """ImageExampleGen + TFX's own StatisticsGen, LocalDagRunner, SQLite MLMD, real faces; with
    image-to-image pairs (`paired`, issue 12) so the component's pair path is covered too."""
    from tfx import v1 as tfx
    from facegan.ingest import paired as P
    from facegan.components.image_example_gen.component import ImageExampleGen
    from facegan.images import decode_png

    with pytest.raises(ValueError, match="paired"):       # refused at construction, not in Beam
        ImageExampleGen(input_base="faces", resolution=32, paired="blur")

    inputs = tmp_path / "faces"
    (inputs / "ffhq").mkdir(parents=True)
    (inputs / "celeba").mkdir()
    for name in sorted(os.listdir(ffhq_dir))[:60]:
        os.symlink(ffhq_dir / name, inputs / "ffhq" / name)
    for name in sorted(os.listdir(celeba_dir))[:60]:
        os.symlink(celeba_dir / name, inputs / "celeba" / name)
    example_gen = ImageExampleGen(input_base=str(inputs), resolution=32, crop="center",
                                  mirror=True, extra_resolutions=[8, 16], eval_fraction=0.2,
                                  paired="lowres:factor=4")
    stats = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    db = str(tmp_path / "mlmd.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="ingest-e2e", pipeline_root=str(tmp_path / "root"),
        components=[example_gen, stats], enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    tfx.orchestration.LocalDagRunner().run(pipeline)

    from ml_metadata.metadata_store import metadata_store
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    arts = store.get_artifacts_by_type("Examples")
    assert len(arts) == 1
    a = arts[0]
    props = {k: (v.int_value or v.string_value) for k, v in a.custom_properties.items()}
    assert json.loads(a.properties["split_names"].string_value) == ["train", "eval"]
    assert props["files_seen"] == 120 and props["examples_written"] == 120
    assert props["mirrored"] == 120 and props["resolutions"] == "8,16,32"
    assert props["train_examples"] + props["eval_examples"] == 240
    assert props["paired"] == "lowres:factor=4"
    with open(os.path.join(a.uri, schema.SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert summary["invariant_holds"] and summary["rejected"] == 0
    assert summary["paired"]["spec"] == "lowres:factor=4" and summary["paired"]["seed"] == 0
    # every example carries its derived input: the transform of its own stored face (mirrored
    # copies: the mirrored input), with the pair/* provenance features
    rows = [r for split_rows in _read_examples(a.uri).values() for r in split_rows]
    assert len(rows) == 240
    for row in rows:
        flip = (lambda im: im[:, ::-1]) if row[schema.MIRRORED] else (lambda im: im)
        original = flip(decode_png(row[schema.IMAGE]))       # the face the pair was derived from
        np.testing.assert_array_equal(decode_png(row[P.INPUT_IMAGE]), flip(P.lowres(original, 4)))
        assert row[P.PAIR_TRANSFORM] == b"lowres"
        assert json.loads(row[P.PAIR_PARAMS]) == {"factor": 4}
        assert row[P.PAIR_SEED] == P.example_seed(0, original)
    for split in ("train", "eval"):
        files = os.listdir(os.path.join(a.uri, f"Split-{split}"))
        assert files and all(f.endswith(".gz") for f in files)
    assert os.path.getsize(os.path.join(a.uri, schema.GRID_FILE)) > 0
    # TFX's StatisticsGen read both splits and counted the same examples
    from tfx.utils import io_utils
    from tensorflow_metadata.proto.v0 import statistics_pb2
    (st,) = store.get_artifacts_by_type("ExampleStatistics")
    for split in ("train", "eval"):
        path = os.path.join(st.uri, f"Split-{split}", "FeatureStats.pb")
        dss = io_utils.read_bytes_file(path)
        stats_pb = statistics_pb2.DatasetFeatureStatisticsList.FromString(dss)
        assert stats_pb.datasets[0].num_examples == summary["splits"][split]["examples"]




def test_component_input_fingerprint_drives_the_tfx_cache(tmp_path):
    """LocalDagRunner with caching on: an unchanged folder is a cache hit, a changed one re-runs."""
    from tfx import v1 as tfx
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from facegan.components.image_example_gen.component import ImageExampleGen
    rng = np.random.default_rng(11)
    src = tmp_path / "faces"
    src.mkdir()
    for k in range(4):
        (src / f"{k}.png").write_bytes(_enc(_face_like(rng, 32, 32), "PNG"))
    db = str(tmp_path / "mlmd.sqlite")
    conn = tfx.orchestration.metadata.sqlite_metadata_connection_config(db)

    def run():
        gen = ImageExampleGen(input_base=str(src), resolution=8, min_side=8)
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="ingest-cache", pipeline_root=str(tmp_path / "root"),
            components=[gen], enable_cache=True, metadata_connection_config=conn))
        store = metadata_store.MetadataStore(conn)
        execs = sorted(store.get_executions(), key=lambda e: e.id)
        return [e.last_known_state for e in execs], store.get_artifacts_by_type("Examples")

    E = metadata_store_pb2.Execution
    states, arts = run()
    assert states == [E.COMPLETE] and len(arts) == 1
    fp = arts[0].custom_properties["input_fingerprint"].string_value
    assert fp.startswith("files:4,")
    states, arts = run()                                   # unchanged: cache hit
    assert states == [E.COMPLETE, E.CACHED] and len(arts) == 1
    (src / "4.png").write_bytes(_enc(_face_like(rng, 32, 32), "PNG"))   # changed folder
    states, arts = run()
    assert states == [E.COMPLETE, E.CACHED, E.COMPLETE] and len(arts) == 2
    new = max(arts, key=lambda a: a.id)
    assert new.custom_properties["files_seen"].int_value == 5
    assert new.custom_properties["input_fingerprint"].string_value.startswith("files:5,")
