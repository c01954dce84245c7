"""Image-to-image end to end on real faces (issue 12): `facegan ingest --paired` (Beam), pix2pix on
the training loop, export, `facegan serve`, and `facegan translate` over gRPC and REST pixel-equal
to the direct SavedModel on the same (ingestion-prepared) photo. Tiny sizes, few steps."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facegan import schema

pytestmark = pytest.mark.e2e
RES = 32


@pytest.fixture(scope="module")
def paired_faces(celeba_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("i2i")
    inputs = root / "faces"
    inputs.mkdir()
    names = sorted(os.listdir(celeba_dir))
    for name in names[:40]:
        os.symlink(celeba_dir / name, inputs / name)     # read in place, never copied
    out = root / "examples"
    cmd = [sys.executable, "-m", "facegan.cli", "ingest", "--input", str(inputs), "--output", str(out),
           "--resolution", str(RES), "--crop", "celeba", "--paired", "lowres:factor=4", "--paired-seed", "7",
           "--beam-args", "", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root, out, celeba_dir / names[-1]     # a face outside the ingested ones


def test_ingest_writes_pairs_and_reports_the_transform(paired_faces):
    from facegan.ingest import paired as P
    from facegan.examples_io import iterate_images
    _, out, _ = paired_faces
    summary = json.loads((out / schema.SUMMARY_FILE).read_text())
    assert summary["paired"] == {"transform": "lowres", "params": {"factor": 4}, "seed": 7,
                                 "spec": "lowres:factor=4", "feature": "input_image"}
    targets = next(iterate_images(str(out), schema.TRAIN_SPLIT, batch_size=64))
    inputs = next(iterate_images(str(out), schema.TRAIN_SPLIT, key=schema.INPUT_IMAGE, batch_size=64))
    assert len(targets) == summary["splits"]["train"]["examples"] > 20
    for t, i in zip(targets, inputs):      # each stored input is the documented transform of its face
        np.testing.assert_array_equal(i, P.lowres(t, 4))


def test_pix2pix_served_translate_equals_direct(paired_faces, tmp_path):
    from facegan.cli import main as facegan_main
    from facegan.generator import load_generator
    from facegan.images import decode_png
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    from facegan.serving.translate_cli import prepare_image
    from facegan.trainer import config, train_lib
    _, examples, photo = paired_faces
    cfg = config.get_preset("smoke_pix2pix", {"run.steps": 3, "run.checkpoint_every": 3, "run.image_every": 3})
    res = train_lib.train(cfg, str(examples), str(tmp_path / "run"), progress=False)
    base = tmp_path / "serving" / "pix2pix"
    train_lib.export(res, str(base / "1"))
    direct = load_generator(str(base / "1"))
    face, model_input = prepare_image(photo.read_bytes(), RES, "center", "lanczos", "lowres:factor=4")
    want = direct.translate(model_input[None])[0]
    srv = Server([ModelSpec("pix2pix", str(base))], port=0, host="127.0.0.1", rest_api_port=0, poll_wait_s=0).start()
    try:
        for flag, port in (("--server", srv.port), ("--rest", srv.rest_api_port)):
            out = tmp_path / f"out{flag}.png"
            rc = facegan_main(["translate", flag, f"127.0.0.1:{port}", "--model", "pix2pix", "--in", str(photo),
                               "--out", str(out), "--derive", "lowres:factor=4"])
            assert rc == 0
            np.testing.assert_array_equal(decode_png(out.read_bytes()), want)
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"not an image")
        assert facegan_main(["translate", "--server", f"127.0.0.1:{srv.port}", "--model", "pix2pix",
                             "--in", str(bad), "--out", str(tmp_path / "x.png")]) == 2
        assert facegan_main(["translate", "--server", f"127.0.0.1:{srv.port}", "--model", "nosuch",
                             "--in", str(photo), "--out", str(tmp_path / "x.png")]) == 1
    finally:
        srv.stop()


def test_cyclegan_on_real_faces_with_attribute_domains(celeba_dir, tmp_path):
    """Eyeglasses 0 vs 1 from CelebA's attribute table (read in place), ingested with --labels."""
    from facegan.trainer import config, train_lib
    table = celeba_dir.parent / "list_attr_celeba.txt"
    if not table.exists():
        pytest.skip(f"{table} not found")
    lines = table.read_text().splitlines()
    col = lines[1].split().index("Eyeglasses") + 1
    rows = [ln.split() for ln in lines[2:3000]]
    glasses = [r[0] for r in rows if r[col] == "1"][:10]
    plain = [r[0] for r in rows if r[col] == "-1"][:14]
    inputs = tmp_path / "faces"
    inputs.mkdir()
    for name in glasses + plain:
        os.symlink(celeba_dir / name, inputs / name)
    out = tmp_path / "examples"
    proc = subprocess.run([sys.executable, "-m", "facegan.cli", "ingest", "--input", str(inputs), "--output", str(out),
                           "--resolution", str(RES), "--crop", "celeba", "--labels", str(table),
                           "--eval-fraction", "0.2", "--beam-args", "", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = config.get_preset("smoke_cyclegan", {"run.steps": 2, "run.checkpoint_every": 2, "run.image_every": 2})
    res = train_lib.train(cfg, str(out), str(tmp_path / "run"), progress=False)
    counts = json.loads((tmp_path / "run" / "domains.json").read_text())
    train = json.loads((out / schema.SUMMARY_FILE).read_text())["splits"]["train"]["examples"]
    assert counts["a"] + counts["b"] == train and counts["unlabeled"] == 0
    assert 0 < counts["b"] <= 10 and 0 < counts["a"] <= 14
    assert res.steps == 2 and np.isfinite(res.metrics["loss/cycle"])
    assert os.path.exists(tmp_path / "run" / "samples" / "step_0000002.png")


def test_pipeline_passes_paired_to_the_ingestion_component(tmp_path):
    """create_pipeline: `ingest_options={'paired': ...}` reaches ImageExampleGen's execution
    properties; a pix2pix preset without it is refused at construction (not after ingestion)."""
    from facegan.pipeline.pipeline import create_pipeline
    kw = dict(pipeline_name="i2i", pipeline_root=str(tmp_path / "root"), data_root=str(tmp_path / "faces"),
              serving_dir=str(tmp_path / "serving"), metadata_path=str(tmp_path / "m.sqlite"),
              preset="smoke_pix2pix", train_steps=2)
    with pytest.raises(ValueError, match="paired"):
        create_pipeline(**kw, ingest_options={"mirror": False})
    p = create_pipeline(**kw, ingest_options={"mirror": False, "paired": "lowres:factor=8", "paired_seed": 3})
    (gen,) = [c for c in p.components if c.id == "ImageExampleGen"]
    assert gen.exec_properties["paired"] == "lowres:factor=8" and gen.exec_properties["paired_seed"] == 3
    # unpaired presets build without it, and their ingestion makes no pairs
    p = create_pipeline(**dict(kw, preset="smoke"), ingest_options={"mirror": False})
    (gen,) = [c for c in p.components if c.id == "ImageExampleGen"]
    assert gen.exec_properties.get("paired") is None
