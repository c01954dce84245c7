"""trainer/export.py: the generator SavedModel contract (signatures, determinism, bounds, metadata)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from facegan import schema  # noqa: E402
from facegan.images import decode_png  # noqa: E402
from facegan.trainer.config import get_preset  # noqa: E402
from facegan.trainer.export import export_generator, load_generator, read_metadata, to_uint8  # noqa: E402

Z_DIM, RES = 8, 16


def tiny_generator(seed=0):
    from facegan.serving.testing import tiny_generator as build
    return build(Z_DIM, RES, seed)


def smoke_cfg(**over):
    return get_preset("smoke", {"network.z_dim": Z_DIM, "network.resolution": RES, **over})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    gen = tiny_generator()
    path = str(tmp_path_factory.mktemp("export") / "1")
    export_generator(gen, path, cfg=smoke_cfg(), metadata={"steps": 123, "metrics": {"fid": 42.5}}, max_batch=32)
    return gen, path


@pytest.fixture(scope="module")
def loaded(exported):
    return load_generator(exported[1])


def test_signatures_via_saved_model_cli(exported):
    _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout

    def block(name):
        start = text.index(f"signature_def['{name}']:")
        end = text.find("signature_def[", start + 1)
        return text[start:end if end > 0 else None]

    default = block(schema.SIGNATURE_DEFAULT)
    assert "inputs['z'] tensor_info:" in default and "dtype: DT_FLOAT" in default
    assert f"shape: (-1, {Z_DIM})" in default
    assert "outputs['images'] tensor_info:" in default and "DT_UINT8" in default
    assert f"shape: (-1, {RES}, {RES}, 3)" in default
    assert "inputs['truncation']" not in default      # the optional form is the `generate` signature
    assert "inputs['truncation']" in block("generate")
    sample = block(schema.SIGNATURE_SAMPLE)
    for name, dtype in [("num", "DT_INT32"), ("seed", "DT_INT64"), ("truncation", "DT_FLOAT")]:
        i = sample.index(f"inputs['{name}'] tensor_info:")
        assert dtype in sample[i:i + 120] and "shape: ()" in sample[i:i + 120]
    assert "outputs['png'] tensor_info:" in sample and "DT_STRING" in sample
    assert "Method name is: tensorflow/serving/predict" in sample


def test_metadata_asset(exported):
    _, path = exported
    assert os.path.isfile(os.path.join(path, "assets", schema.METADATA_ASSET))
    meta = read_metadata(path)
    assert meta["architecture"] == "dcgan" and meta["preset"] == "smoke"
    assert (meta["resolution"], meta["z_dim"], meta["max_batch"]) == (RES, Z_DIM, 32)
    assert meta["steps"] == 123 and meta["metrics"] == {"fid": 42.5}   # caller's metadata wins
    assert meta["config"]["network"]["z_dim"] == Z_DIM
    assert meta["truncation"] == "temperature_scaling"
    assert meta["generator_weights"] == "ema" and meta["ema_decay"] == 0.999   # smoke trains an EMA


def test_serving_default_matches_keras_model(exported, loaded):
    gen, g = exported[0], loaded
    assert (g.z_dim, g.resolution) == (Z_DIM, RES)
    z = np.random.default_rng(1).standard_normal((5, Z_DIM)).astype(np.float32)
    want = to_uint8(gen(z, training=False)).numpy()
    got = g.generate(z)
    assert got.dtype == np.uint8 and got.shape == (5, RES, RES, 3)
    np.testing.assert_array_equal(got, want)
    # Truncation = scaling z toward 0 (the prior's mean).
    np.testing.assert_array_equal(g.generate(z, truncation=0.5), to_uint8(gen(z * 0.5, training=False)).numpy())
    # More images than max_batch are split into bounded calls.
    assert g.generate(np.zeros((70, Z_DIM), np.float32)).shape[0] == 70


def test_to_uint8_rounding():
    x = tf.constant([-1.5, -1.0, 0.0, 1.0 / 127.5 - 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(to_uint8(x).numpy(), [0, 0, 128, 1, 255, 255])  # 127.5 rounds half to even


def test_sample_deterministic_prefix_and_batches(loaded):
    g = loaded
    sig = g.signatures[schema.SIGNATURE_SAMPLE]
    out = sig(num=tf.constant(12), seed=tf.constant(7, tf.int64), truncation=tf.constant(1.0))
    images = out["images"].numpy()
    np.testing.assert_array_equal(g.sample(12, 7), images)
    np.testing.assert_array_equal(g.sample(12, 7), g.sample(12, 7))
    np.testing.assert_array_equal(g.sample(5, 7), images[:5])                  # prefix-stable
    assert not np.array_equal(g.sample(12, 8), images)                          # seed matters
    batches = list(g.batches(12, 5, 7))
    assert [len(b) for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)              # batch-split-stable
    # PNG output decodes to the same pixels.
    pngs = out["png"].numpy()
    assert len(pngs) == 12
    np.testing.assert_array_equal(decode_png(pngs[3]), images[3])
    # Truncation changes the images; psi scales the same latents.
    assert not np.array_equal(g.sample(12, 7, truncation=0.5), images)


def test_sample_latents_are_standard_normal(exported, loaded):
    model = loaded._model
    # Row i is stateless_normal([z_dim], seed=[seed, i]): check the definition directly.
    z0 = tf.random.stateless_normal([Z_DIM], seed=tf.constant([7, 3], tf.int64))
    gen = exported[0]
    img = to_uint8(gen(z0[None], training=False)).numpy()[0]
    np.testing.assert_array_equal(model.sample_range(seed=tf.constant(7, tf.int64), start=tf.constant(3, tf.int64),
                                                     num=tf.constant(1), truncation=tf.constant(1.0))["images"][0], img)


@pytest.mark.parametrize("num,trunc", [(0, 1.0), (33, 1.0), (-1, 1.0), (4, 0.0), (4, 1.5)])
def test_sample_bounds_in_graph(loaded, num, trunc):
    sig = loaded.signatures[schema.SIGNATURE_SAMPLE]
    with pytest.raises(tf.errors.InvalidArgumentError, match="num must be between 1 and 32|truncation must be in"):
        sig(num=tf.constant(num), seed=tf.constant(1, tf.int64), truncation=tf.constant(trunc))


def test_z_batch_bound_in_graph(loaded):
    sig = loaded.signatures[schema.SIGNATURE_DEFAULT]
    with pytest.raises(tf.errors.InvalidArgumentError, match="between 1 and 32"):
        sig(z=tf.zeros([33, Z_DIM]))


def test_loader_rejects_bad_arguments(loaded):
    g = loaded
    with pytest.raises(ValueError, match=r"z must have shape \[N, 8\]"):
        g.generate(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="truncation"):
        g.sample(4, 1, truncation=0.0)
    with pytest.raises(ValueError, match="num must be >= 1"):
        g.sample(0, 1)


def test_export_refuses_mismatch_and_overwrite(exported, tmp_path):
    gen, path = exported
    with pytest.raises(ValueError, match="cfg.network.z_dim is 16"):
        export_generator(gen, str(tmp_path / "a"), cfg=get_preset("smoke", {"network.z_dim": 16, "network.resolution": RES}))
    with pytest.raises(ValueError, match="cfg.network.resolution is 32"):
        export_generator(gen, str(tmp_path / "b"), cfg=get_preset("smoke", {"network.z_dim": Z_DIM}))
    with pytest.raises(ValueError, match="already holds a SavedModel"):
        export_generator(gen, path, cfg=smoke_cfg())
    with pytest.raises(FileNotFoundError, match="no metadata asset"):
        load_generator(str(tmp_path))


def test_export_trainer_network(tmp_path):
    """The real smoke-preset generator from trainer.networks exports and round-trips."""
    networks = pytest.importorskip("facegan.trainer.networks")
    cfg = get_preset("smoke")
    gen = networks.build_networks(cfg).generator
    path = export_generator(gen, str(tmp_path / "1"), cfg=cfg, metadata={"steps": 0})
    g = load_generator(path)
    assert (g.z_dim, g.resolution) == (cfg.network.z_dim, cfg.network.resolution)
    z = np.random.default_rng(0).standard_normal((3, g.z_dim)).astype(np.float32)
    np.testing.assert_array_equal(g.generate(z), to_uint8(gen(z, training=False)).numpy())
    assert json.loads(open(os.path.join(path, "assets", schema.METADATA_ASSET)).read())["architecture"] == "dcgan"


def test_export_subclassed_generator_and_bad_output(tmp_path):
    class Sub(tf.keras.Model):   # no symbolic inputs: z_dim comes from the config
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(RES * RES * 3, activation="tanh")

        def call(self, z, training=False):
            return tf.reshape(self.dense(z), [-1, RES, RES, 3])

    gen = Sub()
    path = export_generator(gen, str(tmp_path / "1"), cfg=smoke_cfg())
    g = load_generator(path)
    z = np.ones((2, Z_DIM), np.float32)
    np.testing.assert_array_equal(g.generate(z), to_uint8(gen(z)).numpy())
    with pytest.raises(ValueError, match="known z_dim"):
        export_generator(Sub(), str(tmp_path / "2"))
    gray = tf.keras.Sequential([tf.keras.Input([Z_DIM]), tf.keras.layers.Dense(RES * RES),
                                tf.keras.layers.Reshape([RES, RES, 1])])
    with pytest.raises(ValueError, match=r"output must be \[N, R, R, 3\]"):
        export_generator(gray, str(tmp_path / "3"))
