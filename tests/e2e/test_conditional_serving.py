"""Conditional sampling served over gRPC and REST (issue 11): `facegan sample --attr` and
`--attr-sweep` against `facegan serve`, pixel-equal to the SavedModel called directly."""
import argparse

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

from facegan.images import decode_png  # noqa: E402
from facegan.serving import client as client_lib  # noqa: E402

Z_DIM, RES, ATTRS = 8, 16, ["Smiling", "Male", "Eyeglasses"]
PAD = 2   # facegan.images grid padding


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from facegan.generator import CONDITIONAL, export_generator, load_generator
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    from tests.testlib.serving import tiny_conditional_generator, tiny_generator
    root = tmp_path_factory.mktemp("cond_serving")
    export_generator(tiny_conditional_generator(Z_DIM, len(ATTRS), RES), str(root / "cond" / "1"), kind=CONDITIONAL,
                     attributes=ATTRS, max_batch=64)
    export_generator(tiny_generator(Z_DIM, RES), str(root / "plain" / "1"), max_batch=64)
    srv = Server([ModelSpec("cond", str(root / "cond")), ModelSpec("plain", str(root / "plain"))], port=0,
                 host="127.0.0.1", rest_api_port=0, poll_wait_s=0).start()
    yield srv, load_generator(str(root / "cond" / "1"))
    srv.stop()


def _args(**kw):
    p = argparse.ArgumentParser()
    client_lib.add_arguments(p)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    return p.parse_args(argv)


def _tile(grid, row, col):
    y, x = PAD + row * (RES + PAD), PAD + col * (RES + PAD)
    return grid[y:y + RES, x:x + RES]


@pytest.mark.parametrize("where", ["server", "rest"])
def test_attr_grid_equals_direct_savedmodel(served, tmp_path, where):
    srv, direct = served
    target = f"127.0.0.1:{srv.port if where == 'server' else srv.rest_api_port}"
    out = tmp_path / "grid.png"
    rc = client_lib.main(_args(**{where: target}, model="cond", attr="smiling=1,Eyeglasses=0", num=4, seed=5,
                               truncation=0.8, cols=4, out=out))
    assert rc == 0
    want = direct.sample(4, 5, 0.8, attributes={"Smiling": 1, "Eyeglasses": 0})
    grid = decode_png(out.read_bytes())
    for i in range(4):
        np.testing.assert_array_equal(_tile(grid, 0, i), want[i])
    # client-drawn latents (what TF Serving batching forces) give the same pixels
    with client_lib.GrpcClient(f"127.0.0.1:{srv.port}") as c:
        vec = direct.attribute_vector({"Smiling": 1})
        np.testing.assert_array_equal(c.sample("cond", 4, 5, 0.8, attributes=vec, latents="client"), want)
        assert c.attribute_names("cond") == ATTRS
    assert client_lib.RestClient(f"127.0.0.1:{srv.rest_api_port}").attribute_names("cond") == ATTRS


def test_attr_sweep_varies_one_attribute_with_the_latent_fixed(served, tmp_path):
    srv, direct = served
    out = tmp_path / "sweep.png"
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr_sweep="Male", attr="Smiling=1",
                               num=2, seed=3, sweep_steps=3, out=out))
    assert rc == 0
    grid = decode_png(out.read_bytes())
    assert grid.shape == (2 * (RES + PAD) + PAD, 3 * (RES + PAD) + PAD, 3)
    from facegan.generator import sample_latents
    z = sample_latents(3, 0, 2, Z_DIM).numpy()
    for r in range(2):
        for j, male in enumerate((0.0, 0.5, 1.0)):
            want = direct.generate(z[r:r + 1], attributes=np.float32([[1.0, male, 0.0]]))[0]
            np.testing.assert_array_equal(_tile(grid, r, j), want)
    assert not np.array_equal(_tile(grid, 0, 0), _tile(grid, 0, 2))


def test_attr_errors_are_one_line(served, tmp_path, capsys):
    srv, _ = served
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr="Young=1", out=tmp_path / "x.png"))
    assert rc == 2 and "unknown attribute(s) young; the model conditions on smiling, male, eyeglasses" in \
        capsys.readouterr().err
    rc = client_lib.main(_args(rest=f"127.0.0.1:{srv.rest_api_port}", model="plain", attr="Smiling=1",
                               out=tmp_path / "x.png"))
    assert rc == 2 and "model 'plain' takes no attributes" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_synthetic_set_reingests_with_the_manifest_labels_and_provenance(served, tmp_path, capsys):
    import json
    import os

    import tensorflow as tf
    from facegan.ingest import runner as R
    from facegan.ingest import options as O
    srv, direct = served
    out = tmp_path / "synthetic"
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr="Smiling=1", num=6, seed=11,
                               truncation=0.9, out_dir=out))
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["index"] for r in manifest] == list(range(6))
    assert {(r["seed"], r["model_version"], r["truncation"], r["provenance"]) for r in manifest} == {(11, 1, 0.9, "synthetic")}
    want = direct.sample(6, 11, 0.9, attributes={"Smiling": 1})
    for r in manifest:
        np.testing.assert_array_equal(decode_png((out / "images" / r["file"]).read_bytes()), want[r["index"]])
    # a second write into the same folder is refused (nothing overwritten)
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr="Smiling=1", num=2, out_dir=out))
    assert rc == 2 and "is not empty" in capsys.readouterr().err

    summary = R.ingest(str(out / "images"), str(tmp_path / "ex"),
                       O.IngestConfig(resolution=16, labels=str(out / "manifest.json"), eval_fraction=0.0,
                                      min_side=16),
                                  runner="local")
    assert summary["unlabeled"] == 0 and summary["attributes"]["smiling"]["positive_rate"] == 1.0
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(str(tmp_path / "ex" / "Split-train" / "*")),
                                      compression_type="GZIP")
    seen = {}
    for rec in records:
        f = tf.train.Example.FromString(rec.numpy()).features.feature
        src = os.path.basename(f["source"].bytes_list.value[0].decode())
        seen[src] = (f["attr/provenance"].bytes_list.value[0].decode(), f["attr/index"].int64_list.value[0],
                     f["attr/smiling"].float_list.value[0], f["attr/male"].float_list.value[0])
    assert seen == {r["file"]: ("synthetic", r["index"], 1.0, 0.0) for r in manifest}


def test_out_dir_refuses_near_copies_of_training_faces(served, tmp_path, capsys):
    from facegan import examples_io
    srv, direct = served
    want = direct.sample(3, 21, 1.0, attributes={"Male": 1})
    rng = np.random.default_rng(0)
    others = [rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8) for _ in range(5)]

    def artifact(name, images):
        uri = str(tmp_path / name)
        examples_io.write_examples(f"{uri}/Split-train/data-00000-of-00001.gz",
                                   [examples_io.make_example(im, source=f"{k}.png") for k, im in enumerate(images)])
        return uri

    leaky = artifact("leaky", others + [want[1]])   # the training set holds sample 1
    out = tmp_path / "refused"
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr="Male=1", num=3, seed=21,
                               out_dir=out, refuse_copies_of=leaky))
    assert rc == 2 and "1 of 3 images are within 4.0 grey levels RMSE of a training image (indices [1])" in \
        capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    clean = artifact("clean", others)
    rc = client_lib.main(_args(server=f"127.0.0.1:{srv.port}", model="cond", attr="Male=1", num=3, seed=21,
                               out_dir=out, refuse_copies_of=clean))
    assert rc == 0 and len(list((out / "images").iterdir())) == 3
