"""Issue 11: conditioning for progressive growing (`cprogan`) and StyleGAN2 (`cstylegan2`), built
from the shared blocks of trainer/networks/conditional.py: shapes per stage, G depends on the
label, the projection D's output changes with the label and not otherwise, a 2-step smoke run
exported as the conditional kind."""
import numpy as np
import pytest

from facegan.trainer import config as C
from tests.testlib.examples import write_synthetic_examples

ATTRS = "male,smiling,young"


def _progan(disc="projection", **extra):
    return C.get_preset("smoke_progan", {"network.architecture": "cprogan", "condition.attributes": ATTRS,
                                         "condition.discriminator": disc, **extra})


@pytest.mark.parametrize("disc", ["projection", "acgan"])
def test_cprogan_conditioning_shapes_per_stage(disc):
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    cfg = _progan(disc)
    nets = build_networks(cfg)
    z, y = tf.random.normal([4, cfg.network.z_dim], seed=3), tf.constant([[0, 1, 1]] * 4, tf.float32)
    for r in (4, 8, 16):
        g, d = nets.stage_models(r)
        assert [tuple(i.shape) for i in g.inputs] == [(None, cfg.network.z_dim), (None, 3)]
        x = g([z, y], training=False)
        assert x.shape == (4, r, r, 3)
        out = d([x, y] if disc == "projection" else x, training=False)
        assert out["logits"].shape == (4, 1)
        assert len(d.inputs) == (2 if disc == "projection" else 1)
        assert ("class_logits" in out) == (disc == "acgan")
    # one embedding / head for every stage (shared blocks, tracked by the full models)
    heads = [l for l in nets.discriminator.stage_layers if l.name in ("d_projection", "d_class")]
    assert len(heads) == 1


def _check_projection(d, x):
    y0 = np.array([[0, 0, 0], [1, 0, 1], [0, 1, 0]], np.float32)
    y1 = np.array([[1, 0, 0], [1, 0, 1], [1, 1, 1]], np.float32)
    o0, o1 = d([x, y0], training=False), d([x, y1], training=False)
    np.testing.assert_array_equal(o0["features"].numpy(), o1["features"].numpy())   # phi(x) ignores y
    V = next(l for l in d.submodules if getattr(l, "name", "") == "d_projection").embedding.numpy()
    phi = o0["features"].numpy()

    def proj(y):
        return np.sum(np.concatenate([y, 1 - y], 1) @ V * phi, axis=1, keepdims=True)
    np.testing.assert_allclose(o1["logits"].numpy() - o0["logits"].numpy(), proj(y1) - proj(y0), rtol=1e-4, atol=1e-5)
    diff = np.abs(o1["logits"].numpy() - o0["logits"].numpy())[:, 0]
    assert diff[0] > 1e-6 and diff[2] > 1e-6 and diff[1] == 0.0


def test_cprogan_projection_d_changes_with_the_label_and_not_otherwise():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    nets = build_networks(_progan())
    for r in (8, 16):
        _check_projection(nets.stage_models(r)[1], tf.random.uniform([3, r, r, 3], -1, 1, seed=r))


def test_cprogan_generator_joins_the_label_before_pixel_norm():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    g = build_networks(_progan()).stage_models(16)[0]
    z = tf.random.normal([2, 32], seed=1)
    a = g([z, tf.zeros([2, 3])], training=False).numpy()
    b = g([z, tf.constant([[1, 0, 0]] * 2, tf.float32)], training=False).numpy()
    np.testing.assert_array_equal(a, g([z, tf.zeros([2, 3])], training=False).numpy())
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()
    # pixel norm acts on concat(z, y): scaling z and y together leaves the output unchanged
    np.testing.assert_allclose(g([3 * z, 3 * tf.constant([[1, 0, 0]] * 2, tf.float32)], training=False).numpy(), b,
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def labelled16(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("lab16") / "examples"), n_train=32,
                                                n_eval=8, resolution=16, extra_resolutions=(4, 8),
                                                attributes=("male", "smiling", "young"))


def _smoke(cfg, data, tmp_path):
    from facegan import generator as contract
    from facegan.trainer import train_lib
    result = train_lib.train(cfg, data, str(tmp_path / "run"), steps=2, progress=False)
    assert result.steps == 2 and np.isfinite(result.metrics["loss/d"]) and np.isfinite(result.metrics["loss/g"])
    g = contract.load_generator(train_lib.export(result, str(tmp_path / "export")))
    assert g.kind == "conditional" and g.attributes == ["male", "smiling", "young"]
    z = np.random.default_rng(0).standard_normal((4, cfg.network.z_dim)).astype(np.float32)
    y = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0]], np.float32)
    out = g.generate(z, attributes=y)
    assert out.shape == (4, cfg.network.resolution, cfg.network.resolution, 3)
    assert not np.array_equal(g.generate(z, attributes=1 - y), out)
    return result, g, z, y, out


@pytest.mark.parametrize("disc", ["projection", "acgan"])
def test_cprogan_two_step_smoke_run_exports_the_conditional_kind(tmp_path, labelled16, disc):
    result, g, z, y, out = _smoke(_progan(disc, **{"optim.batch_size": 8}), labelled16, tmp_path)
    if disc == "acgan":
        assert result.metrics["loss/acgan_d"] > 0
    # the run stopped at its first stage (4x4): the export is that stage upsampled, conditioned
    assert g.metadata["stage_resolution"] == 4
    direct = result.gan.sample(z, attributes=y).numpy()
    np.testing.assert_array_equal(out, np.repeat(np.repeat(direct, 4, axis=1), 4, axis=2))


# -- cstylegan2 ---------------------------------------------------------------------------------------
def _style(disc="projection", **extra):
    return C.get_preset("smoke_stylegan2", {"network.architecture": "cstylegan2", "condition.attributes": ATTRS,
                                            "condition.discriminator": disc, **extra})


@pytest.mark.parametrize("disc", ["projection", "acgan"])
def test_cstylegan2_conditioning_shapes(disc):
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    cfg = _style(disc)
    nets = build_networks(cfg)
    z, y = tf.random.normal([4, cfg.network.z_dim], seed=3), tf.constant([[0, 1, 1]] * 4, tf.float32)
    G = nets.generator
    w = G.map(z, attributes=y)
    assert w.shape == (4, cfg.network.w_dim)
    # the mapping's first layer reads [pixelnorm(z), pixelnorm(embed(y))]: z_dim + w_dim inputs
    assert G.mapping.fcs[0].kernel.shape[0] == cfg.network.z_dim + cfg.network.w_dim
    x = G(z, training=False, attributes=y)
    assert x.shape == (4, 32, 32, 3)
    out = nets.discriminator([x, y] if disc == "projection" else x, training=False)
    assert out["logits"].shape == (4, 1) and ("class_logits" in out) == (disc == "acgan")
    assert len(nets.discriminator.inputs) == (2 if disc == "projection" else 1)
    # unconditional stylegan2 keeps its mapping input (no embedding): z_dim inputs
    plain = build_networks(C.get_preset("smoke_stylegan2")).generator
    assert plain.mapping.embed is None and plain.mapping.fcs[0].kernel.shape[0] == cfg.network.z_dim


def test_cstylegan2_generator_depends_on_the_label_through_w():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    G = build_networks(_style()).generator
    z = tf.random.normal([2, 32], seed=1)
    y0, y1 = tf.zeros([2, 3]), tf.constant([[1, 0, 0]] * 2, tf.float32)
    assert np.abs(G.map(z, attributes=y0).numpy() - G.map(z, attributes=y1).numpy()).max() > 1e-4
    a, b = G(z, training=False, attributes=y0).numpy(), G(z, training=False, attributes=y1).numpy()
    np.testing.assert_array_equal(a, G(z, training=False, attributes=y0).numpy())
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


def test_cstylegan2_projection_d_changes_with_the_label_and_not_otherwise():
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    _check_projection(build_networks(_style()).discriminator, tf.random.uniform([3, 32, 32, 3], -1, 1, seed=4))


def test_cstylegan2_two_step_smoke_run_exports_the_conditional_kind(tmp_path, labelled16):
    # lazy R1 and path length both due at step 0 (intervals 1): every conditional path runs.
    # 16x16 and 16 channels: the conditional paths are the same at any size, and tracing the
    # R1 / path-length tapes grows with the number of synthesis blocks
    cfg = _style(**{"optim.batch_size": 8, "loss.r1_interval": 1, "loss.pl_interval": 1,
                    "network.resolution": 16, "network.channel_max": 16, "network.w_dim": 16})
    result, g, z, y, out = _smoke(cfg, labelled16, tmp_path)
    assert np.isfinite(result.metrics["loss/r1"]) and np.isfinite(result.metrics["loss/pl"])
    np.testing.assert_array_equal(out, result.gan.sample(z, attributes=y).numpy())
