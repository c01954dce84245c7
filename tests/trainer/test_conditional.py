"""Attribute-conditional training (issue 11): config rules, networks, projection / AC-GAN
discriminators, the labelled input stream, and a short run exported as the conditional kind."""
import os

import numpy as np
import pytest

from facegan import conditioning
from facegan.trainer.conditioning import export_kind_args
from facegan.trainer import config as C
from facegan.trainer import registry
from tests.testlib.conditional import CONDITIONAL_TINY, celeba_rows, link_faces, write_labelled_faces

CONDITIONAL_ARCHS = [a.name for a in registry.ARCHITECTURES.values() if a.kind == "conditional"]


# -- config (TensorFlow-free) -----------------------------------------------------------------
def test_conditional_architectures_are_registered_with_their_kind():
    assert {"cdcgan", "chdcgan", "cfacegan", "cprogan"} <= set(CONDITIONAL_ARCHS)
    cfg = C.get_preset("smoke_conditional")
    assert conditioning.attribute_names(cfg) == ["male", "smiling"]
    assert export_kind_args(cfg)["attributes"] == ["male", "smiling"]
    assert export_kind_args(C.get_preset("smoke")) == {}


@pytest.mark.parametrize("overrides, needle", [
    ({"condition.attributes": ""}, "condition.attributes must name"),
    ({"network.architecture": "dcgan"}, "use a conditional architecture (cdcgan, chdcgan, cfacegan, cprogan"),
    ({"condition.discriminator": "concat"}, "condition.discriminator 'concat'"),
    ({"condition.unlabelled": "zero"}, "condition.unlabelled 'zero'"),
    ({"condition.attributes": "Male,male"}, "repeats a name"),
    ({"condition.embedding": -1}, "condition.embedding"),
])
def test_bad_condition_configs_are_refused_naming_the_field(overrides, needle):
    with pytest.raises(C.ConfigError, match="condition|conditional") as e:
        C.get_preset("smoke_conditional", overrides)
    assert needle in str(e.value)


def test_names_are_normalized_like_ingestion():
    from facegan.ingest.labels import normalize_name as normalize_attr_name
    for raw in ("Smiling", "Hair Colour", "5_o_Clock_Shadow", " Eyes-Color "):
        assert conditioning.normalize_name(raw) == normalize_attr_name(raw)
    assert conditioning.parse_names("Male, Smiling") == ["male", "smiling"]


def test_grid_attributes_cycle_through_every_combination():
    g = conditioning.grid_attributes(6, 2)
    assert g.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [1, 0]]


def test_parse_assignments():
    assert conditioning.parse_assignments("Smiling=1, Eyeglasses=0") == {"smiling": 1.0, "eyeglasses": 0.0}
    with pytest.raises(ValueError, match="unknown attribute.*eyeglasses.*male, smiling"):
        conditioning.parse_assignments("Eyeglasses=1", known=["male", "smiling"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        conditioning.parse_assignments("Smiling")
    with pytest.raises(ValueError, match="'yes' is not a number"):
        conditioning.parse_assignments("Smiling=yes")


# -- networks ---------------------------------------------------------------------------------
def _cfg(arch="cdcgan", disc="projection", resolution=32, **extra):
    return C.get_preset("smoke_conditional", {"network.architecture": arch, "network.resolution": resolution,
                                              "network.filters": 8, "condition.discriminator": disc,
                                              "condition.attributes": "male,smiling,young", **extra})


@pytest.mark.parametrize("arch", ["cdcgan", "chdcgan", "cfacegan"])
@pytest.mark.parametrize("disc", ["projection", "acgan"])
def test_conditioning_shapes_per_architecture(arch, disc):
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    cfg = _cfg(arch, disc, **({"network.input_noise_std": 0.1} if arch == "chdcgan" else {}))
    nets = build_networks(cfg)
    z, y = tf.random.normal([4, cfg.network.z_dim]), tf.constant([[0, 1, 1]] * 4, tf.float32)
    assert [tuple(i.shape) for i in nets.generator.inputs] == [(None, cfg.network.z_dim), (None, 3)]
    x = nets.generator([z, y], training=False)
    assert x.shape == (4, 32, 32, 3)
    out = nets.discriminator([x, y] if disc == "projection" else x, training=False)
    assert out["logits"].shape == (4, 1)
    if disc == "acgan":
        assert out["class_logits"].shape == (4, 3)
        assert len(nets.discriminator.inputs) == 1
    else:
        assert len(nets.discriminator.inputs) == 2 and "class_logits" not in out


def test_generator_output_depends_on_the_attributes():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    g = build_networks(_cfg(**{"condition.embedding": 8})).generator
    z = tf.random.normal([2, 32], seed=1)
    a = g([z, tf.zeros([2, 3])], training=False).numpy()
    b = g([z, tf.constant([[1, 0, 0]] * 2, tf.float32)], training=False).numpy()
    again = g([z, tf.zeros([2, 3])], training=False).numpy()
    np.testing.assert_array_equal(a, again)
    # deterministic (above), so any change is the attributes' (at init outputs are ~1e-4 in size)
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


def test_projection_discriminator_changes_with_the_label_and_not_otherwise():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    d = build_networks(_cfg()).discriminator
    x = tf.random.uniform([3, 32, 32, 3], -1, 1, seed=2)
    y0 = tf.constant([[0, 0, 0], [1, 0, 1], [0, 1, 0]], tf.float32)
    y1 = tf.constant([[1, 0, 0], [1, 0, 1], [1, 1, 1]], tf.float32)
    o0, o1 = d([x, y0], training=False), d([x, y1], training=False)
    # phi(x) does not see the label; the logit moves by exactly the projection difference
    np.testing.assert_array_equal(o0["features"].numpy(), o1["features"].numpy())
    V = d.get_layer("d_projection").embedding.numpy()          # [2A, F]
    phi = o0["features"].numpy()

    def proj(y):
        y = y.numpy()
        return np.sum(np.concatenate([y, 1 - y], 1) @ V * phi, axis=1, keepdims=True)
    np.testing.assert_allclose(o1["logits"].numpy() - o0["logits"].numpy(), proj(y1) - proj(y0),
                               rtol=1e-4, atol=1e-5)
    diff = np.abs(o1["logits"].numpy() - o0["logits"].numpy())[:, 0]
    assert diff[0] > 1e-6 and diff[2] > 1e-6     # labels changed
    assert diff[1] == 0.0                         # same label, same image: same output
    # the same label on a different image changes only through phi(x)
    o2 = d([x[::-1], y0], training=False)
    assert not np.allclose(o2["features"].numpy(), o0["features"].numpy())


def test_acgan_loss_matches_tf_gan_two_class_softmax():
    import tensorflow as tf
    import tensorflow_gan as tfgan
    from facegan.trainer.networks.conditional import acgan_loss
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    y = (rng.uniform(size=(5, 3)) < 0.5).astype(np.float32)
    ours = float(tf.reduce_sum(acgan_loss(real, y) + acgan_loss(fake, y)))

    def pairs(logits):   # attribute a as a two-class problem with logits [0, l_a]
        return tf.reshape(tf.stack([tf.zeros_like(logits), logits], -1), [-1, 2])
    onehot = tf.reshape(tf.stack([1 - y, y], -1), [-1, 2])
    ref = tfgan.losses.wargs.acgan_discriminator_loss(pairs(real), pairs(fake), onehot,
                                                      reduction=tf.compat.v1.losses.Reduction.SUM)
    assert ours == pytest.approx(float(ref), rel=1e-5)


# -- ingest summary: attribute statistics ------------------------------------------------------
def test_ingest_summary_has_the_positive_rate_per_attribute(tmp_path, celeba_dir, celeba_attributes):
    from facegan.ingest import runner as R
    from facegan.ingest import options as O
    rows = dict(celeba_rows(celeba_attributes, 100, 20))
    unlabelled = tmp_path / "faces" / "not_in_table.jpg"
    src = link_faces(celeba_dir, tmp_path / "faces", sorted(rows))
    os.symlink(os.path.join(celeba_dir, "000001.jpg"), unlabelled)   # a face the table does not name
    summary = R.ingest(src, str(tmp_path / "ex"), O.IngestConfig(resolution=16,
                                                                 labels=str(celeba_attributes)), runner="local")
    attrs = summary["attributes"]
    assert (summary["originals_written"], summary["unlabeled"]) == (21, 1)
    assert len(attrs) == 40
    for name in ("smiling", "eyeglasses", "male"):
        n_pos = sum(r[name] for r in rows.values())
        assert attrs[name] == {"labelled": 20, "positive": n_pos, "positive_rate": round(n_pos / 20, 6)}


def test_attribute_summary_leaves_non_binary_rates_null():
    import collections
    from facegan.ingest import stages
    counts = collections.Counter()
    for attrs in ({"age": 31.5, "smiling": 1}, {"age": 40, "smiling": 0}, {"smiling": 1, "hair": "red"}):
        stages.count_attributes(counts, attrs)
    s = stages.attribute_summary(counts)
    assert s["smiling"] == {"labelled": 3, "positive": 2, "positive_rate": round(2 / 3, 6)}
    assert s["age"] == {"labelled": 2, "positive": None, "positive_rate": None}
    assert s["hair"]["positive_rate"] is None


# -- the labelled input stream ----------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled(tmp_path_factory, celeba_dir, celeba_attributes):
    uri = str(tmp_path_factory.mktemp("celeba_labelled"))
    return write_labelled_faces(celeba_dir, celeba_attributes, uri, n_train=24, n_eval=8,
                                attributes=["male", "smiling", "eyeglasses"])


def test_scan_refuses_unknown_attributes_naming_them(labelled):
    from facegan.trainer import data
    files = data.resolve_files(labelled)
    with pytest.raises(ValueError, match=r"condition.attributes: smilng, young not in the Examples.*"
                                         r"they carry: eyeglasses, male, smiling"):
        data.scan_attributes(files, ["male", "smilng", "young"])


def test_labelled_stream_yields_the_examples_labels(labelled, celeba_attributes):
    import tensorflow as tf
    from facegan.trainer import data
    files = data.resolve_files(labelled)
    info = data.scan_attributes(files, ["smiling", "male"])
    expected = {name: [a["smiling"], a["male"]] for name, a in celeba_rows(celeba_attributes, 0, 24)}
    assert info["usable"] == info["total"] == 24
    assert info["positive_rate"]["male"] == pytest.approx(np.mean([v[1] for v in expected.values()]))
    ds = data.train_dataset(files, 32, 24, seed=3, shuffle_buffer=64, labels=info)
    images, attrs = next(iter(ds))
    assert images.shape == (24, 32, 32, 3) and attrs.shape == (24, 2)
    # match each image to its source through the unshuffled stream (same bytes, same pixels)
    plain = tf.data.TFRecordDataset(files, compression_type="GZIP")
    by_pixels = {}
    for rec in plain:
        ex = tf.train.Example.FromString(rec.numpy())
        img = tf.io.decode_png(ex.features.feature["image"].bytes_list.value[0]).numpy()
        by_pixels[img.tobytes()] = ex.features.feature["source"].bytes_list.value[0].decode()
    got = data.from_network(images).numpy()
    for img, a in zip(got, attrs.numpy()):
        assert a.tolist() == expected[by_pixels[img.tobytes()]]


def test_unlabelled_examples_refused_or_skipped(tmp_path, celeba_dir, celeba_attributes):
    from facegan.trainer import data
    rows = celeba_rows(celeba_attributes, 0, 12)
    missing = {rows[3][0], rows[7][0]}
    uri = write_labelled_faces(celeba_dir, celeba_attributes, str(tmp_path / "ex"), n_train=12, n_eval=2,
                               attributes=["male", "smiling"], unlabelled=missing)
    files = data.resolve_files(uri)
    with pytest.raises(ValueError, match=rf"2 of 12 Examples lack one of male, smiling \(first: {rows[3][0]}\)"
                                         r".*condition.unlabelled=skip"):
        data.scan_attributes(files, ["male", "smiling"])
    info = data.scan_attributes(files, ["male", "smiling"], rule="skip")
    assert (info["usable"], info["unlabelled"]) == (10, 2)
    ds = data.train_dataset(files, 32, 10, seed=0, shuffle_buffer=16, labels=info)
    first_epoch = next(iter(ds))[0]
    assert first_epoch.shape[0] == 10      # one epoch = exactly the 10 labelled records


# -- training + export ------------------------------------------------------------------------
@pytest.mark.parametrize("disc", ["projection", "acgan"])
def test_conditional_training_exports_the_conditional_kind(tmp_path, labelled, disc):
    from facegan import generator as contract
    from facegan.trainer import train_lib
    cfg = C.get_preset("smoke_conditional", {**CONDITIONAL_TINY, "condition.discriminator": disc})
    result = train_lib.train(cfg, labelled, str(tmp_path / "run"), steps=2, progress=False)
    assert result.steps == 2 and np.isfinite(result.metrics["loss/d"])
    if disc == "acgan":
        assert result.metrics["loss/acgan_d"] > 0 and result.metrics["loss/acgan_g"] > 0
    export = train_lib.export(result, str(tmp_path / "export"))
    g = contract.load_generator(export)
    assert g.kind == "conditional" and g.attributes == ["male", "smiling"]
    assert g.metadata["attribute_range"] == [0.0, 1.0]
    # the served graph computes the trained EMA generator on (z, y)
    z = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    y = conditioning.grid_attributes(4, 2)
    direct = result.gan.sample(z, attributes=y).numpy()
    np.testing.assert_array_equal(g.generate(z, attributes=y), direct)
    assert not np.array_equal(g.generate(z, attributes=np.ones_like(y)), direct)
