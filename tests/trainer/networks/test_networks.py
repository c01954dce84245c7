"""Architectures: shapes and ranges at 32/64/128, progressive stages and fade-in, lens, schedules,
equalized layers, config validation of model-side combinations."""
import math

import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import config as C
from facegan.trainer import registry
from facegan.trainer.networks import Stage, build_networks, layers
from facegan.trainer.networks.lens import build_lens, lens_lambda
from facegan.trainer.networks.progan import progressive_schedule

Z = 16
TINY = {"network.filters": 4, "network.max_filters": 16, "network.z_dim": Z}


def cfg_for(arch, res, **over):
    o = dict(TINY, **{"network.architecture": arch, "network.resolution": res})
    if arch == "progan":
        o.update({"loss.family": "wgan_gp", "network.filters": 2, "network.max_filters": 16})
    o.update(over)
    return C.get_preset("smoke", o)


def z_batch(n=4, seed=0):
    return tf.random.stateless_normal([n, Z], seed=[seed, 1])


@pytest.mark.parametrize("arch", ["dcgan", "hdcgan", "facegan", "progan"])
@pytest.mark.parametrize("res", [32, 64, 128])
def test_shapes_and_ranges(arch, res):
    # progan grown from res/4 here (two fades) to keep the suite fast; stages from 4 are tested below
    over = {"network.start_resolution": res // 4} if arch == "progan" else {}
    nets = build_networks(cfg_for(arch, res, **over))
    x = nets.generator(z_batch(), training=True)
    assert x.shape == (4, res, res, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    assert float(tf.math.reduce_std(x)) > 0                       # not a constant image
    out = nets.discriminator(x, training=True)
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (4, 1) and out["logits"].dtype == tf.float32
    assert out["features"].shape[0] == 4 and out["features"].shape.rank == 2
    assert out["features"].dtype == tf.float32
    assert np.all(np.isfinite(out["logits"].numpy()))
    assert nets.progressive == (arch == "progan")
    # every variable of the (final-stage) G gets a gradient through D
    g, d = nets.stage_models(res)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(d(g(z_batch(), training=True), training=True)["logits"])
    grads = tape.gradient(loss, g.trainable_variables)
    assert grads and all(gr is not None for gr in grads)


def test_registry_drives_config_validation():
    with pytest.raises(C.ConfigError, match=r"network.architecture 'nope' is not one of dcgan, hdcgan"):
        C.get_preset("smoke", {"network.architecture": "nope"})
    # a registered architecture validates and builds through its lazily imported builder
    arch = registry.Architecture("tiny_test", "facegan.trainer.networks.convnets:build_dcgan", "test only",
                                 min_resolution=32, max_resolution=32, resolution_reason="only 32x32 here",
                                 settings=registry.architecture("dcgan").settings)
    registry.register_architecture(arch)
    try:
        cfg = C.get_preset("smoke", {"network.architecture": "tiny_test", "network.filters": 4})
        assert build_networks(cfg).generator.output.shape[1] == 32
        with pytest.raises(C.ConfigError, match="only 32x32 here"):
            C.get_preset("smoke", {"network.architecture": "tiny_test", "network.resolution": 64})
        with pytest.raises(ValueError, match="registered twice"):
            registry.register_architecture(arch)
    finally:
        del registry.ARCHITECTURES["tiny_test"]
    with pytest.raises(ValueError, match="kind 'video'"):
        registry.Architecture("x", "m:f", "s", kind="video")


def test_dcgan_layout_follows_radford():
    nets = build_networks(cfg_for("dcgan", 64))
    G, D = nets.generator, nets.discriminator
    deconvs = [l for l in G.layers if isinstance(l, tf.keras.layers.Conv2DTranspose)]
    convs = [l for l in D.layers if isinstance(l, tf.keras.layers.Conv2D)]
    assert len(deconvs) == 4 and all(l.strides == (2, 2) and l.kernel_size == (5, 5) for l in deconvs)
    assert len(convs) == 4 and all(l.strides == (2, 2) for l in convs)
    assert [l.filters for l in convs] == [4, 8, 16, 16]                    # doubling, capped at max_filters
    assert not any(isinstance(l, tf.keras.layers.BatchNormalization) and "down0" in l.name for l in D.layers)
    assert G.get_layer("g_project_act").__class__.__name__ == "ReLU"
    assert D.get_layer("d_down1_act").alpha == pytest.approx(0.2)
    assert G.output.shape[1:] == (64, 64, 3)


def test_facegan_layout_follows_li():
    nets = build_networks(cfg_for("facegan", 64))
    G, D = nets.generator, nets.discriminator
    assert sum(isinstance(l, tf.keras.layers.Dense) for l in G.layers) == 2
    assert sum(isinstance(l, tf.keras.layers.Conv2DTranspose) for l in G.layers) == 4
    assert sum(isinstance(l, tf.keras.layers.Conv2D) for l in D.layers) == 4
    assert sum(isinstance(l, tf.keras.layers.Dense) for l in D.layers) == 2
    bn_d = [l.name for l in D.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    assert "d_down0_bn" not in bn_d and "d_down1_bn" in bn_d and "d_fc0_bn" in bn_d
    assert D.output["features"].shape[-1] == 1024


def test_hdcgan_noise_only_while_training_and_selu():
    nets = build_networks(cfg_for("hdcgan", 32, **{"network.input_noise_std": 0.5}))
    G, D = nets.generator, nets.discriminator
    assert all(l.kernel_size == (4, 4) for l in D.layers if isinstance(l, tf.keras.layers.Conv2D))
    assert G.get_layer("g_up1_act").get_config()["activation"] == "selu"
    x = tf.random.stateless_uniform([4, 32, 32, 3], seed=[1, 1], minval=-1, maxval=1)
    a, b = D(x, training=False)["logits"], D(x, training=False)["logits"]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    D.get_layer("d_input_noise")   # exists
    c = D(x, training=True)["logits"]
    d = D(x, training=True)["logits"]
    assert not np.allclose(c.numpy(), d.numpy())
    G.get_layer("g_input_noise")


def test_minibatch_discrimination_appended_to_any_d():
    for arch in ("dcgan", "progan"):
        over = {"network.start_resolution": 16} if arch == "progan" else {}
        nets = build_networks(cfg_for(arch, 32, **{"tricks.minibatch_discrimination": True,
                                                  "tricks.mbd_kernels": 5, "tricks.mbd_kernel_dim": 3}, **over))
        D = nets.discriminator
        mbd = D.get_layer("d_mbd")
        out = D(nets.generator(z_batch(), training=False), training=False)
        assert out["logits"].shape == (4, 1)
        assert mbd.output.shape[-1] == out["features"].shape[-1] + 5


def test_non_progressive_stage_and_schedule():
    cfg = cfg_for("dcgan", 32)
    nets = build_networks(cfg)
    assert nets.alpha is None
    g, d = nets.stage_models(32)
    assert g is nets.generator and d is nets.discriminator
    with pytest.raises(ValueError, match="not progressive"):
        nets.stage_models(16)
    assert nets.schedule(10 ** 9) == Stage(32, 1.0, cfg.optim.batch_size, False, 0)


def test_mixed_precision_outputs_float32():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for arch in ("dcgan", "progan"):
            over = {"network.start_resolution": 16} if arch == "progan" else {}
            nets = build_networks(cfg_for(arch, 32, **over))
            x = nets.generator(z_batch(), training=True)
            out = nets.discriminator(x, training=True)
            assert x.dtype == tf.float32 and out["logits"].dtype == tf.float32
            assert out["features"].dtype == tf.float32
            assert any(v.dtype == tf.float32 for v in nets.generator.trainable_variables)
        lens = build_lens(cfg_for("dcgan", 32))
        assert lens(x).dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


# -- progan ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def progan():
    cfg = cfg_for("progan", 32, **{"network.residual_g": True, "network.residual_d": True,
                                   "network.mbstd_extra_stats": True})
    return cfg, build_networks(cfg)


def test_progan_stage_shapes_and_shared_weights(progan):
    cfg, nets = progan
    z = z_batch()
    for r in (4, 8, 16, 32):
        g, d = nets.stage_models(r)
        assert nets.stage_models(r)[0] is g                           # cached
        img = g(z)
        assert img.shape == (4, r, r, 3)
        assert d(img)["logits"].shape == (4, 1)
    g16 = nets.stage_models(16)[0]
    full = {id(v) for v in nets.generator.trainable_variables}
    assert all(id(v) in full for v in g16.trainable_variables)       # stage models share weights
    assert len(g16.trainable_variables) < len(nets.generator.trainable_variables)
    # the full models compute exactly the final stage, and also hold the earlier toRGB/fromRGB
    g32, d32 = nets.stage_models(32)
    np.testing.assert_array_equal(g32(z).numpy(), nets.generator(z).numpy())
    img = g32(z)
    np.testing.assert_array_equal(d32(img)["logits"].numpy(), nets.discriminator(img)["logits"].numpy())
    names = {v.name for v in nets.generator.trainable_variables}
    assert {"g_4_to_rgb/kernel:0", "g_8_to_rgb/kernel:0"} <= names
    assert not {"g_4_to_rgb/kernel:0", "g_8_to_rgb/kernel:0"} & {v.name for v in g32.trainable_variables}
    assert "d_8_from_rgb/kernel:0" in {v.name for v in nets.discriminator.trainable_variables}
    with pytest.raises(ValueError, match="power of two"):
        nets.stage_models(64)


def _nn_up(x):
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)


def _avgpool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_progan_fade_alpha_zero_is_upsampled_previous_stage(progan):
    # The previous stage is evaluated finished (alpha = 1); at alpha = 0 the new stage must equal
    # its output upsampled (G) / must see the 2x average-pooled image exactly like it (D).
    cfg, nets = progan
    z = z_batch(seed=3)
    try:
        for r in (8, 16, 32):
            g_r, g_prev = nets.stage_models(r)[0], nets.stage_models(r // 2)[0]
            d_r, d_prev = nets.stage_models(r)[1], nets.stage_models(r // 2)[1]
            x = tf.random.stateless_uniform([4, r, r, 3], seed=[r, 2], minval=-1, maxval=1)
            nets.alpha.assign(1.0)
            prev_img = g_prev(z).numpy()
            prev_logits = d_prev(_avgpool(x.numpy()))["logits"].numpy()
            nets.alpha.assign(0.0)
            np.testing.assert_allclose(g_r(z).numpy(), _nn_up(prev_img), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(d_r(x)["logits"].numpy(), prev_logits, rtol=1e-4, atol=1e-5)
            nets.alpha.assign(1.0)
            assert not np.allclose(g_r(z).numpy(), _nn_up(prev_img), atol=1e-3)
    finally:
        nets.alpha.assign(1.0)


def test_progan_fade_alpha_one_is_new_path_and_lerp_between(progan):
    cfg, nets = progan
    z = z_batch(seed=4)
    g = nets.stage_models(16)[0]
    fade = g.get_layer("g_fade_16")
    parts = tf.keras.Model(g.input, [fade.input[0], fade.input[1]])      # old (upsampled), new toRGB
    old, new = [t.numpy() for t in parts(z)]
    assert not np.allclose(old, new)
    try:
        for a in (1.0, 0.25, 0.7):
            nets.alpha.assign(a)
            act = np.tanh if cfg.network.output_activation == "tanh" else (lambda x: x)
            np.testing.assert_allclose(g(z).numpy(), act(old + a * (new - old)), rtol=1e-5, atol=1e-6)
    finally:
        nets.alpha.assign(1.0)


def test_progan_layout_follows_karras(progan):
    cfg, nets = progan
    G, D = nets.generator, nets.discriminator
    names = [l.name for l in G.layers]
    assert sum(isinstance(l, layers.PixelNorm) for l in G.layers) > 0
    assert sum(isinstance(l, tf.keras.layers.UpSampling2D) and l.interpolation == "nearest" for l in G.layers) >= 3
    assert {"g_4_to_rgb", "g_16_to_rgb", "g_32_to_rgb"} <= set(names)
    assert G.get_layer("g_32_to_rgb").kernel_size == 1 and D.get_layer("d_32_from_rgb").kernel_size == 1
    assert any(isinstance(l, tf.keras.layers.AveragePooling2D) for l in D.layers)
    mb = D.get_layer("d_mbstd")
    assert mb.group_size == 4 and mb.extra_stats
    assert mb.output.shape[-1] == mb.input.shape[-1] + 3
    assert any(isinstance(l, layers.ScaledAdd) for l in G.layers) and any(isinstance(l, layers.ScaledAdd) for l in D.layers)


def test_progan_widths_follow_karras_table():
    cfg = C.get_preset("progan")
    from facegan.trainer.networks.progan import ProGAN
    pg = ProGAN(cfg, tf.Variable(1.0))
    assert [pg.nf(r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]


def test_progressive_schedule_against_formula():
    bs = {"4": 64, "8": 32, "16": 16}
    f = lambda t: progressive_schedule(t, 4, 16, fade_images=100, stable_images=200, batch_sizes=bs,  # noqa: E731
                                       default_batch=8)
    assert f(0) == Stage(4, 1.0, 64, False, 0)
    assert f(199) == Stage(4, 1.0, 64, False, 0)
    assert f(200) == Stage(8, 0.0, 32, True, 1)
    assert f(225) == Stage(8, 0.25, 32, True, 1)
    assert f(300) == Stage(8, 1.0, 32, False, 2)
    assert f(499) == Stage(8, 1.0, 32, False, 2)
    assert f(550) == Stage(16, 0.5, 16, True, 3)
    assert f(600) == Stage(16, 1.0, 16, False, 4)
    assert f(10 ** 9) == Stage(16, 1.0, 16, False, 4)
    # missing batch size -> optim.batch_size; start at 8 skips 4
    g = progressive_schedule(0, 8, 8, 100, 200, {}, 12)
    assert g == Stage(8, 1.0, 12, False, 0)
    # alpha is monotone and continuous through the fade
    alphas = [progressive_schedule(t, 4, 16, 100, 200, bs, 8).alpha for t in range(200, 301)]
    assert alphas[0] == 0.0 and alphas[-1] == 1.0 and all(b >= a for a, b in zip(alphas, alphas[1:]))


def test_progan_schedule_via_networks(progan):
    cfg, nets = progan
    n = cfg.network
    s = nets.schedule(n.stable_images + n.fade_images // 2)
    assert s.resolution == 8 and s.fading and s.alpha == pytest.approx(0.5)


# -- layers ---------------------------------------------------------------------------------------
def test_equalized_conv_scales_at_runtime():
    x = tf.random.stateless_normal([2, 5, 5, 3], seed=[1, 2])
    eq = layers.EqualizedConv2D(4, 3, gain=math.sqrt(2.0))
    y = eq(x).numpy()
    w = eq.kernel.numpy()
    assert 0.7 < w.std() < 1.3                                       # N(0, 1) storage
    expected = tf.nn.conv2d(x, w * math.sqrt(2.0) / math.sqrt(27), 1, "SAME").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    plain = layers.EqualizedConv2D(4, 3, equalized=False)
    plain(x)
    assert plain.kernel.numpy().std() < 0.5                          # He constant folded into init
    d = layers.EqualizedDense(3, gain=1.0)
    v = tf.ones([1, 16])
    np.testing.assert_allclose(d(v).numpy(), v.numpy() @ d.kernel.numpy() / 4.0, rtol=1e-5)


def test_pixelnorm():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 8)).astype(np.float32)
    y = layers.PixelNorm()(x).numpy()
    np.testing.assert_allclose(y, x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-8), rtol=1e-5)


# -- lens -----------------------------------------------------------------------------------------
def test_lens_near_identity_any_resolution_and_bounded():
    cfg = C.get_preset("smoke_lens")
    lens = build_lens(cfg)
    assert sum(isinstance(l, tf.keras.layers.Add) and l.name.startswith("lens_b") for l in lens.layers) == 8
    for r in (8, 32):
        x = tf.random.stateless_uniform([2, r, r, 3], seed=[r, 0], minval=-1, maxval=1)
        y = lens(x)
        assert y.shape == x.shape
        assert float(tf.reduce_max(tf.abs(y - x))) < 0.1
    # pushed far away it still returns images in [-1, 1]
    lens.get_layer("lens_out").bias.assign([5.0, -5.0, 0.0])
    y = lens(tf.zeros([1, 8, 8, 3])).numpy()
    np.testing.assert_allclose(y[..., 0], 1.0)
    np.testing.assert_allclose(y[..., 1], -1.0)


def test_lens_lambda_schedule():
    K = 100
    for t in (0, 1, 37, 50, 99, 100):
        assert lens_lambda(t, K) == pytest.approx(1 - math.sin(t * math.pi / (2 * K)))
    assert lens_lambda(0, K) == 1.0 and lens_lambda(100, K) == pytest.approx(0.0, abs=1e-12)
    assert lens_lambda(101, K) == 0.0 and lens_lambda(10 ** 6, K) == 0.0
    assert lens_lambda(5, 0) == 0.0
    for t in (0, 50, 150):
        assert float(lens_lambda(tf.constant(t), K)) == pytest.approx(lens_lambda(t, K), abs=1e-6)


# -- config validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,match", [
    ({"loss.family": "wgan_gp"}, "batch normalization"),
    ({"loss.family": "hinge", "tricks.label_smoothing": 0.1}, "no meaning for hinge"),
    ({"network.input_noise_std": 0.1}, "HDCGAN's input noise"),
    ({"network.architecture": "facegan", "network.resolution": 8}, "at least 16x16"),
    ({"network.architecture": "hdcgan", "network.resolution": 1024}, "32x32 up to 512x512"),
    ({"network.batch_sizes": {"32": 8}}, "not progressive"),
    ({"tricks.instance_noise": 0.1}, "instance_noise_steps"),
    ({"loss.family": "lsgan", "loss.lsgan_a": 1.0}, "must differ"),
    ({"tricks.lens.enabled": True, "tricks.lens.blocks": 0}, "tricks.lens.blocks"),
    ({"network.architecture": "progan", "loss.family": "wgan_gp", "network.start_resolution": 64}, "start_resolution"),
    ({"network.architecture": "progan", "loss.family": "wgan_gp", "network.batch_sizes": {"64": 4}},
     "outside the grown range"),
    ({"network.architecture": "progan", "loss.family": "wgan_gp", "network.minibatch_stddev": False,
      "network.mbstd_extra_stats": True}, "mbstd_extra_stats"),
    ({"tricks.feature_matching": -1.0}, "must be >= 0"),
])
def test_config_refuses_incompatible_combinations(overrides, match):
    with pytest.raises(C.ConfigError, match=match):
        C.get_preset("smoke", overrides)


@pytest.mark.parametrize("name", C.preset_names())
def test_every_preset_validates_and_names_a_registered_architecture(name):
    cfg = C.get_preset(name)
    assert cfg.network.architecture in registry.ARCHITECTURES
    if name.startswith("smoke"):       # small enough to build here
        nets = build_networks(cfg)
        # called, not `.output`: the StyleGAN generator is a subclassed model (no .inputs); the
        # functional ones get zeros of each input's shape (conditional: [z, y]; image-to-image: x)
        g = nets.generator
        ins = [tf.zeros([1] + list(i.shape[1:])) for i in (getattr(g, "inputs", None) or [])]
        out = g((ins if len(ins) > 1 else ins[0]) if ins else tf.zeros([1, cfg.network.z_dim]), training=False)
        assert out.shape[1] == cfg.network.resolution


def test_second_copy_shares_alpha_for_ema(progan):
    cfg, nets = progan
    ema = build_networks(cfg, alpha=nets.alpha)
    assert ema.alpha is nets.alpha
    assert len(ema.generator.trainable_variables) == len(nets.generator.trainable_variables)
    assert all(a is not b for a, b in zip(ema.generator.trainable_variables, nets.generator.trainable_variables))


def test_progan_options_switch_layers_off():
    cfg = cfg_for("progan", 16, **{"network.start_resolution": 8, "network.pixelnorm": False,
                                   "network.minibatch_stddev": False, "network.equalized_lr": False})
    nets = build_networks(cfg)
    G, D = nets.generator, nets.discriminator
    assert not any(isinstance(l, layers.PixelNorm) for l in G.layers)
    assert not any(isinstance(l, layers.MinibatchStddev) for l in D.layers)
    assert not any(isinstance(l, layers.ScaledAdd) for l in G.layers + D.layers)   # residual off by default
    conv = G.get_layer("g_16_conv0")
    assert not conv.equalized and conv.kernel.numpy().std() < 0.5
    assert G(z_batch()).shape == (4, 16, 16, 3)
    # start at 8: no 4x4 toRGB/fromRGB anywhere, and stage 4 is refused
    assert "g_4_to_rgb" not in {l.name for l in G.layers}
    with pytest.raises(ValueError, match=r"\[8, 16\]"):
        nets.stage_models(4)


@pytest.mark.parametrize("preset", ["smoke", "smoke_progan"])
def test_stages_follow_the_registry_s_stage_resolutions(preset):
    cfg = C.get_preset(preset, {"network.filters": 4, "network.max_filters": 8})
    nets = build_networks(cfg)
    assert nets.stage_resolutions == registry.stage_resolutions(cfg.network)
    assert nets.stage_resolutions == ((4, 8, 16) if preset == "smoke_progan" else (32,))
    for r, (g, d) in zip(nets.stage_resolutions, nets.stages()):
        assert g.output.shape[1:] == (r, r, 3) and d.input.shape[1:] == (r, r, 3)
    # what a checkpoint holds is what the registry says the architecture checkpoints
    assert tuple(nets.checkpoint_items()) == registry.architecture(cfg.network.architecture).checkpoints
