"""facegan/generator (+ trainer/export.py's config metadata): the SavedModel contract of all three
kinds (signatures, determinism, bounds and input checks in the graph, metadata, the one loader)."""
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
from facegan import generator as contract  # noqa: E402
from facegan.generator import load_generator, read_metadata, to_uint8  # noqa: E402
from facegan.trainer.export import export_generator  # noqa: E402

Z_DIM, RES = 8, 16


def tiny_generator(seed=0):
    from tests.testlib.serving import tiny_generator as build
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


def test_every_export_serves_its_metadata(exported, conditional, image_to_image):
    """An ordinary export (every kind) serves the metadata asset's JSON from `facegan_metadata`."""
    for path in (exported[1], conditional[1].export_dir, image_to_image[1].export_dir):
        loaded = tf.saved_model.load(path)
        assert contract.SIGNATURE_METADATA in loaded.signatures, path
        out = loaded.signatures[contract.SIGNATURE_METADATA]()["metadata"].numpy()
        assert out.shape == (1,)
        served = json.loads(out[0])
        assert served == read_metadata(path)
        assert served["signatures"][contract.SIGNATURE_METADATA] == {"inputs": {}, "outputs": {"metadata": "string [1]"}}
    served = json.loads(tf.saved_model.load(exported[1]).signatures["facegan_metadata"]()["metadata"].numpy()[0])
    assert (served["preset"], served["steps"], served["metrics"]) == ("smoke", 123, {"fid": 42.5})


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
    model = loaded.model
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


# -- the contract's in-graph checks and the other two kinds ------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_z_refused_in_graph(loaded, bad):
    z = np.zeros((3, Z_DIM), np.float32)
    z[1, 2] = bad
    for name, extra in [(schema.SIGNATURE_DEFAULT, {}), ("generate", {"truncation": tf.constant(0.5)})]:
        with pytest.raises(tf.errors.InvalidArgumentError, match="z must be finite"):
            loaded.signatures[name](z=tf.constant(z), **extra)


def test_import_facegan_generator_is_tensorflow_free():
    code = ("import sys, facegan, facegan.generator as g; assert 'tensorflow' not in sys.modules; "
            "print(g.KINDS, g.translate_signature('a_to_b'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "('unconditional', 'conditional', 'image_to_image') translate_a_to_b" in out.stdout


def test_old_exports_without_kind_load_as_unconditional(exported, tmp_path):
    import shutil
    path = str(tmp_path / "v1")
    shutil.copytree(exported[1], path)
    meta_path = os.path.join(path, "assets", schema.METADATA_ASSET)
    meta = json.load(open(meta_path))
    del meta["kind"], meta["contract_version"]                  # contract version 1 had neither
    json.dump(meta, open(meta_path, "w"))
    g = load_generator(path)
    assert g.kind == contract.UNCONDITIONAL
    np.testing.assert_array_equal(g.sample(2, 3), load_generator(exported[1]).sample(2, 3))
    meta["kind"] = "video"
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="unknown generator kind 'video'"):
        load_generator(path)


ATTRS = ["Smiling", "Male", "Eyeglasses"]


def conditional_generator(seed=0):
    from tests.testlib.serving import tiny_conditional_generator
    return tiny_conditional_generator(Z_DIM, len(ATTRS), RES, seed)


def translator(seed=0, res=RES, up=1):
    from tests.testlib.serving import tiny_translator
    return tiny_translator(res, up, seed)


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    gen = conditional_generator()
    path = str(tmp_path_factory.mktemp("cond") / "1")
    contract.export_generator(gen, path, kind=contract.CONDITIONAL, attributes=ATTRS, attribute_range=(-1, 1),
                              metadata={"architecture": "test_cond"}, max_batch=16)
    return gen, load_generator(path)


@pytest.fixture(scope="module")
def image_to_image(tmp_path_factory):
    nets = {"a_to_b": translator(0), "b_to_a": translator(1)}
    path = str(tmp_path_factory.mktemp("i2i") / "1")
    contract.export_generator(nets, path, kind=contract.IMAGE_TO_IMAGE, max_batch=16)
    return nets, load_generator(path)


def test_conditional_round_trip(conditional):
    gen, g = conditional
    assert g.kind == contract.CONDITIONAL and g.attributes == ATTRS and g.attribute_range == (-1.0, 1.0)
    meta = g.metadata
    assert (meta["kind"], meta["z_dim"], meta["resolution"], meta["architecture"]) == ("conditional", Z_DIM, RES,
                                                                                       "test_cond")
    assert meta["signatures"]["sample"]["inputs"]["attributes"].startswith("float32 [3] in [-1, 1]")
    assert set(meta["signatures"]["serving_default"]["inputs"]) == {"z", "attributes"}
    z = np.random.default_rng(2).standard_normal((20, Z_DIM)).astype(np.float32)   # > max_batch: two calls
    a = np.random.default_rng(3).uniform(-1, 1, (20, 3)).astype(np.float32)
    want = to_uint8(gen([z, a], training=False)).numpy()
    np.testing.assert_array_equal(g.generate(z, attributes=a), want)
    np.testing.assert_array_equal(g.generate(z, 0.5, attributes=a), to_uint8(gen([z * 0.5, a], training=False)).numpy())
    # sample: seed latents (as unconditional) with one attribute vector for every image.
    vec = g.attribute_vector({"Smiling": 1.0, "Eyeglasses": 0.5})
    np.testing.assert_array_equal(vec, [1.0, -1.0, 0.5])                      # unnamed -> range's low end
    zs = contract.sample_latents(7, 0, 5, Z_DIM).numpy()
    want = to_uint8(gen([zs, np.tile(vec, (5, 1))], training=False)).numpy()
    got = g.signatures["sample"](num=tf.constant(5), seed=tf.constant(7, tf.int64), truncation=tf.constant(1.0),
                                 attributes=tf.constant(vec))["images"].numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g.sample(5, 7, attributes=vec), want)
    np.testing.assert_array_equal(g.sample(3, 7, attributes={"Smiling": 1.0, "Eyeglasses": 0.5}), want[:3])
    assert not np.array_equal(g.sample(5, 7, attributes=[0, 0, 0]), want)    # attributes matter
    with pytest.raises(ValueError, match=r"unknown attribute\(s\) \['Hat'\]"):
        g.attribute_vector({"Hat": 1})
    with pytest.raises(ValueError, match="needs attributes"):
        g.generate(z)


@pytest.mark.parametrize("attributes,fragment", [
    ([[0.0, 0.0]], "must be 3 values per image"),                 # wrong length
    ([[0.0, 0.0, 0.0, 0.0]], "must be 3 values per image"),
    ([[0.0, 1.5, 0.0]], r"in \[-1, 1\]"),                          # outside the documented range
    ([[0.0, np.nan, 0.0]], r"in \[-1, 1\]"),
    ([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "must be 3 values per image"),   # 2 rows for 1 latent
])
def test_conditional_bad_attributes_refused_in_graph(conditional, attributes, fragment):
    sig = conditional[1].signatures[schema.SIGNATURE_DEFAULT]
    with pytest.raises(tf.errors.InvalidArgumentError, match=fragment):
        sig(z=tf.zeros([1, Z_DIM]), attributes=tf.constant(attributes, tf.float32))


@pytest.mark.parametrize("vec,fragment", [([0.0, 0.0], "must be 3 values"), ([0.0, 0.0, -2.0], r"in \[-1, 1\]")])
def test_conditional_sample_bad_attributes_refused_in_graph(conditional, vec, fragment):
    with pytest.raises(tf.errors.InvalidArgumentError, match=fragment):
        conditional[1].signatures["sample"](num=tf.constant(2), seed=tf.constant(1, tf.int64),
                                            truncation=tf.constant(1.0), attributes=tf.constant(vec, tf.float32))


def test_conditional_export_refusals(tmp_path):
    with pytest.raises(ValueError, match="needs attributes="):
        contract.export_generator(conditional_generator(), str(tmp_path / "a"), kind=contract.CONDITIONAL)
    with pytest.raises(ValueError, match="takes 3 attributes but 2 names"):
        contract.export_generator(conditional_generator(), str(tmp_path / "b"), kind=contract.CONDITIONAL,
                                  attributes=["Smiling", "Male"])
    with pytest.raises(ValueError, match="unknown generator kind 'video'"):
        contract.export_generator(conditional_generator(), str(tmp_path / "c"), kind="video")


def test_image_to_image_round_trip(image_to_image):
    nets, g = image_to_image
    assert g.kind == contract.IMAGE_TO_IMAGE and g.directions == ["a_to_b", "b_to_a"]
    assert (g.input_resolution, g.resolution, g.default_direction) == (RES, RES, "a_to_b")
    assert {"serving_default", "translate", "translate_a_to_b", "translate_b_to_a"} <= set(g.signatures)
    assert g.metadata["signatures"]["translate_b_to_a"]["inputs"] == {"images": f"uint8 [N, {RES}, {RES}, 3]"}
    x = np.random.default_rng(4).integers(0, 256, (20, RES, RES, 3), dtype=np.uint8)
    for d in ("a_to_b", "b_to_a"):
        want = to_uint8(nets[d](tf.cast(x, tf.float32) / 127.5 - 1.0, training=False)).numpy().astype(int)
        got = g.translate(x, d)
        # Keras eager vs the saved graph may pick other conv kernels: last-bit float differences.
        assert got.dtype == np.uint8 and np.abs(got.astype(int) - want).max() <= 1
        np.testing.assert_array_equal(g.signatures[f"translate_{d}"](images=tf.constant(x[16:]))["images"], got[16:])
    np.testing.assert_array_equal(g.translate(x[:3]), g.translate(x[:3], "a_to_b"))   # default direction
    np.testing.assert_array_equal(g.signatures["translate"](images=tf.constant(x[:3]))["images"],
                                  g.translate(x[:3], "a_to_b"))
    assert not np.array_equal(g.translate(x[:3], "a_to_b"), g.translate(x[:3], "b_to_a"))
    with pytest.raises(ValueError, match="unknown direction 'up'"):
        g.translate(x, "up")


def test_image_to_image_single_model_and_new_size(tmp_path):
    net = translator(res=8, up=2)                                   # 8px in -> 16px out (super-resolution)
    g = load_generator(contract.export_generator(net, str(tmp_path / "1"), kind=contract.IMAGE_TO_IMAGE))
    assert (g.directions, g.input_resolution, g.resolution) == (["forward"], 8, 16)
    x = np.full((2, 8, 8, 3), 200, np.uint8)
    assert g.translate(x).shape == (2, 16, 16, 3)


@pytest.mark.parametrize("images", [
    np.zeros((1, RES // 2, RES // 2, 3), np.uint8),               # wrong size
    np.zeros((1, RES, RES, 1), np.uint8),                         # wrong channels
    np.zeros((1, RES, RES, 4), np.uint8),
    np.zeros((RES, RES, 3), np.uint8),                            # no batch dimension
    np.zeros((17, RES, RES, 3), np.uint8),                        # more than max_batch
    np.zeros((0, RES, RES, 3), np.uint8),
])
def test_image_to_image_bad_inputs_refused_in_graph(image_to_image, images):
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"images must be uint8 \[N, {RES}, {RES}, 3\]"):
        image_to_image[1].signatures["translate_a_to_b"](images=tf.constant(images))


def test_image_to_image_dtype_is_the_signatures(image_to_image):
    fn = image_to_image[1].signatures["translate"]
    assert fn.structured_input_signature[1]["images"].dtype == tf.uint8
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        fn(images=tf.zeros([1, RES, RES, 3], tf.float32))
