"""Issue 14 section 1, "Match the papers": each test pins a paper's formula or shape (the issue's
quotes are the spec; each test names the quote it checks)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import config as C
from facegan.trainer import losses as L


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# -- FaceGANs loss (Li et al., eq. 1-2) -----------------------------------------------------------
def test_facegan_d_loss_at_zero_logits_is_the_papers_not_ns():
    # "D loss = mean[-log sigmoid(D(x)) - log sigmoid(1 - D(G(z)))]" at D(x) = D(G(z)) = 0:
    expected = -math.log(_sigmoid(0.0)) - math.log(_sigmoid(1.0 - 0.0))
    assert expected == pytest.approx(1.0064, abs=1e-4)
    got = L.facegan_discriminator_loss(tf.zeros([3, 1]), tf.zeros([3, 1])).numpy()
    np.testing.assert_allclose(got, [expected] * 3, rtol=1e-6)
    ns = L.ns_discriminator_loss(tf.zeros([3, 1]), tf.zeros([3, 1])).numpy()
    np.testing.assert_allclose(ns, [2 * math.log(2.0)] * 3, rtol=1e-6)   # 1.3863: ns stays separate


@pytest.mark.parametrize("r,f", [(0.5, 0.1), (-1.0, 0.3), (2.0, -2.0), (0.0, 4.0), (-3.0, 7.0)])
def test_facegan_losses_match_eq_1_2_elementwise(r, f):
    d = L.facegan_discriminator_loss(tf.constant([r]), tf.constant([f])).numpy()[0]
    g = L.facegan_generator_loss(tf.constant([f])).numpy()[0]
    assert d == pytest.approx(-math.log(_sigmoid(r)) - math.log(_sigmoid(1.0 - f)), rel=1e-5)
    assert g == pytest.approx(-math.log(_sigmoid(f)), rel=1e-5)     # G loss = mean[-log sigmoid(D(G(z)))]


def test_facegan_d_gradient_on_fakes_is_shifted_sigmoid():
    # The docstring's claim: dL_D/dD(G(z)) = sigmoid(D(G(z)) - 1), weaker than NS-GAN's sigmoid(D(G(z))).
    f = tf.constant([-1.0, 0.0, 1.0, 3.0])
    with tf.GradientTape(persistent=True) as t:
        t.watch(f)
        fg = tf.reduce_sum(L.facegan_discriminator_loss(tf.zeros_like(f), f))
        ns = tf.reduce_sum(L.ns_discriminator_loss(tf.zeros_like(f), f))
    gf, gn = t.gradient(fg, f).numpy(), t.gradient(ns, f).numpy()
    np.testing.assert_allclose(gf, [_sigmoid(v - 1.0) for v in f.numpy()], rtol=1e-5)
    assert np.all(gf < gn)


# -- Tempered Adversarial Networks lens (Sajjadi et al.) ------------------------------------------
def test_lens_reconstruction_is_summed_over_pixels_per_image():
    # "||X - L(X)||^2_2 with the squared norm summed over pixels (per image, averaged over the batch)"
    x = tf.zeros([2, 64, 64, 3])
    lx = tf.concat([tf.fill([1, 64, 64, 3], 0.1), tf.fill([1, 64, 64, 3], -0.2)], axis=0)
    got = L.lens_reconstruction_loss(x, lx).numpy()
    np.testing.assert_allclose(got, [64 * 64 * 3 * 0.01, 64 * 64 * 3 * 0.04], rtol=1e-5)
    # the batch mean is what the loop optimizes (compute_average_loss over the global batch)
    assert float(tf.reduce_mean(got)) == pytest.approx(12288 * 0.025, rel=1e-5)


def test_lens_lsgan_term_is_eq_11_without_half():
    # "The LSGAN term is ||D(L(X))||^2 as the paper's eq. 11 gives it"
    logits = tf.constant([[0.5], [-2.0], [3.0]])
    from facegan.trainer import registry
    got = registry.LOSSES["lsgan"].bind_lens(C.loss_settings("lsgan"))(logits).numpy()
    np.testing.assert_allclose(got, [0.25, 4.0, 9.0], rtol=1e-6)


# -- FaceGANs networks (Li et al.) ----------------------------------------------------------------
def test_facegan_generator_fc_expands_then_shrinks():
    # "the first fully connected layer of G expands the latent to a large size and the second
    # shrinks it to the deconvolution input" -- at the preset's 64px / 64 filters / z 100
    from facegan.trainer.networks import build_networks
    cfg = C.get_preset("facegan")
    G = build_networks(cfg).generator
    dense = [l for l in G.layers if isinstance(l, tf.keras.layers.Dense)]
    assert [l.name for l in dense] == ["g_fc0_fc", "g_project_fc"]
    z, fc0, proj = cfg.network.z_dim, dense[0].units, dense[1].units
    assert z < fc0 and proj < fc0                   # expand, then shrink
    assert (z, fc0, proj) == (100, 4096, 2048)
    first = [l for l in G.layers if isinstance(l, tf.keras.layers.Conv2DTranspose)][0]
    assert first.get_input_shape_at(0)[1:] == (4, 4, 128)   # the deconvolution input: 4x4x128 = 2048


# -- ProGAN residual blocks (the Columbia report) --------------------------------------------------
def _progan(res=16, start=4, **over):
    from facegan.trainer.networks import build_networks
    o = {"network.architecture": "progan", "loss.family": "wgan_gp", "network.resolution": res,
         "network.start_resolution": start, "network.filters": 2, "network.max_filters": 16,
         "network.z_dim": 16}
    o.update(over)
    return build_networks(C.get_preset("smoke", o))


def _n_convs(model):
    from facegan.trainer.networks import layers
    return sum(isinstance(l, layers.EqualizedConv2D) and l.kernel_size == 3 for l in model.layers)


def test_progan_residual_blocks_add_depth_before_upsampling_in_g_and_after_downsampling_in_d():
    # "additional residual blocks within each resolution, before upsampling in G and after
    # downsampling in D, adding depth"
    plain = _progan()
    res = _progan(**{"network.residual_g": True, "network.residual_d": True})
    G, D = res.generator, res.discriminator
    # two extra 3x3 convs per grown block (8 and 16) in each network: depth, not a skip wrap
    assert _n_convs(G) == _n_convs(plain.generator) + 4
    assert _n_convs(D) == _n_convs(plain.discriminator) + 4
    for r in (8, 16):
        # G: the block for r starts at r/2, before the upsampling; D's ends at r/2, after pooling
        assert G.get_layer(f"g_{r}_res_conv0").get_input_shape_at(0)[1:3] == (r // 2, r // 2)
        assert G.get_layer(f"g_{r}_conv0").get_input_shape_at(0)[1:3] == (r, r)
        assert D.get_layer(f"d_{r}_res_conv0").get_input_shape_at(0)[1:3] == (r // 2, r // 2)
        assert D.get_layer(f"d_{r}_res_add").get_output_shape_at(0)[1:3] == (r // 2, r // 2)
    assert G(tf.zeros([2, 16])).shape == (2, 16, 16, 3)
    assert D(tf.zeros([2, 16, 16, 3]))["logits"].shape == (2, 1)


def test_progan_residual_branch_is_added_to_its_input():
    # With the residual branch's last conv zeroed, f(x) = lrelu(0) = 0, so the block is x / sqrt(2)
    # and G (pixel-normalized right after) computes exactly what the plain G computes.
    plain = _progan(res=8)
    res = _progan(res=8, **{"network.residual_g": True})
    by_name = {w.name: w for w in plain.generator.weights}
    for w in res.generator.weights:
        if "_res_conv1" in w.name:
            w.assign(tf.zeros_like(w))
        elif "_res_" not in w.name:
            w.assign(by_name[w.name])
    z = tf.random.stateless_normal([3, 16], seed=[4, 2])
    np.testing.assert_allclose(res.generator(z).numpy(), plain.generator(z).numpy(), atol=1e-5)
    r0 = res.generator.get_layer("g_8_res_conv0")
    r0.kernel.assign(r0.kernel + 0.5)       # a non-zero branch changes the output
    res.generator.get_layer("g_8_res_conv1").kernel.assign(tf.ones_like(r0.kernel))
    assert not np.allclose(res.generator(z).numpy(), plain.generator(z).numpy(), atol=1e-3)


# -- WGAN with weight clipping (Arjovsky et al. 2017) ---------------------------------------------
def test_wgan_losses_and_clipping_follow_algorithm_1():
    r, f = tf.constant([[0.5], [-1.0], [2.0]]), tf.constant([[0.1], [0.3], [-2.0]])
    np.testing.assert_allclose(L.wgan_discriminator_loss(r, f).numpy(), [-0.4, 1.3, -4.0], rtol=1e-6)
    np.testing.assert_allclose(L.wgan_generator_loss(f).numpy(), [-0.1, -0.3, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match="no meaning"):
        L.wgan_discriminator_loss(r, f, real_label_smoothing=0.1)
    w = tf.Variable([[-0.5, 0.005], [0.02, -0.01]])
    L.clip_weights([w], L.WGAN_CLIP)
    np.testing.assert_allclose(w.numpy(), [[-0.01, 0.005], [0.01, -0.01]], rtol=1e-6)
    assert L.WGAN_CLIP == 0.01


# -- Tempered Adversarial Networks: the paper's network and its BatchNorm-free variants -----------
def _tan(**over):
    from facegan.trainer.networks import build_networks
    o = {"network.architecture": "tan", "network.resolution": 32, "network.filters": 4,
         "network.max_filters": 16, "network.z_dim": 8}
    o.update(over)
    return build_networks(C.get_preset("smoke", o))


def test_tan_network_has_4x4_kernels_and_xavier_init():
    # "the paper's settings ... (4x4 kernels, lr 1e-4, Xavier init, 32x32)"
    nets = _tan()
    convs = [l for m in (nets.generator, nets.discriminator) for l in m.layers
             if isinstance(l, (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose))]
    assert convs and all(l.kernel_size == (4, 4) for l in convs)
    assert all(isinstance(l.kernel_initializer, tf.keras.initializers.GlorotUniform) for l in convs)
    assert nets.generator.output.shape[1:] == (32, 32, 3)
    # Xavier uniform: the kernel's variance is 2 / (fan_in + fan_out)
    k = nets.discriminator.get_layer("d_down1_conv").kernel.numpy()
    fan_in, fan_out = 4 * 4 * k.shape[2], 4 * 4 * k.shape[3]
    assert k.var() == pytest.approx(2.0 / (fan_in + fan_out), rel=0.2)


def test_batch_norm_off_removes_every_batchnorm_and_allows_a_gradient_penalty():
    # "LSGAN without BatchNorm, WGAN-GP ... on a DCGAN-style critic without BatchNorm"
    with_bn, without = _tan(), _tan(**{"network.batch_norm": False})
    bn = lambda m: [l for l in m.layers if isinstance(l, tf.keras.layers.BatchNormalization)]  # noqa: E731
    assert bn(with_bn.discriminator) and bn(with_bn.generator)
    assert not bn(without.discriminator) and not bn(without.generator)
    assert all(l.use_bias for l in without.discriminator.layers if isinstance(l, tf.keras.layers.Conv2D))
    with pytest.raises(C.ConfigError, match="batch normalization"):
        C.get_preset("smoke", {"network.architecture": "tan", "loss.family": "wgan_gp"})
    C.get_preset("smoke", {"network.architecture": "tan", "loss.family": "wgan_gp", "network.batch_norm": False})


# -- presets reproduce their papers ---------------------------------------------------------------
PAPER_PRESETS = ("dcgan", "hdcgan", "facegan", "progan", "wgan", "dcgan_lens", "tan", "tan_lsgan", "tan_wgan_gp")


def test_hdcgan_preset_trains_at_512_and_the_cpu_preset_says_so():
    # "the `hdcgan` preset trains at 512x512 as the paper does (keep a smaller preset for CPU, named as such)"
    assert C.get_preset("hdcgan").network.resolution == 512
    cpu = C.get_preset("hdcgan_cpu")
    assert cpu.network.resolution < 512 and cpu.network.architecture == "hdcgan"
    same = lambda c: (c.loss, c.optim, c.tricks, c.network.filters, c.network.input_noise_std)  # noqa: E731
    assert same(cpu) == same(C.get_preset("hdcgan"))          # only the resolution differs


def test_tan_presets_follow_the_paper():
    # "The paper's settings as a preset (4x4 kernels, lr 1e-4, Xavier init, 32x32) and its variants:
    # LSGAN without BatchNorm, WGAN-GP with RMSProp on a DCGAN-style critic without BatchNorm."
    tan, ls, wg = C.get_preset("tan"), C.get_preset("tan_lsgan"), C.get_preset("tan_wgan_gp")
    for c in (tan, ls, wg):
        assert (c.network.architecture, c.network.resolution) == ("tan", 32)
        assert c.optim.g_learning_rate == c.optim.d_learning_rate == 1e-4
        assert c.tricks.lens.enabled and c.tricks.lens.blocks == 8
    assert tan.network.batch_norm and tan.loss.family == "ns"
    assert (ls.loss.family, ls.network.batch_norm) == ("lsgan", False)
    assert (wg.loss.family, wg.network.batch_norm, wg.optim.optimizer) == ("wgan_gp", False, "rmsprop")


def test_lens_anneal_default_is_the_papers_text_k():
    # "K's default follows the paper (it gives 10^5 in the text and 10k in figure captions: pick one, cite it)"
    from facegan.trainer.networks.lens import lens_lambda
    K = C.LensConfig().anneal_steps
    assert K == 10 ** 5
    assert C.get_preset("tan").tricks.lens.anneal_steps == K == C.get_preset("dcgan_lens").tricks.lens.anneal_steps
    assert lens_lambda(K // 2, K) == pytest.approx(1 - math.sin(math.pi / 4))
    assert lens_lambda(K + 1, K) == 0.0


def test_ema_only_where_the_paper_uses_it():
    # "the generator EMA is on only where the paper uses it (ProGAN); elsewhere it is an option"
    assert C.TricksConfig().ema_decay == 0.0
    on = {n for n in PAPER_PRESETS if C.ema_enabled(C.get_preset(n))}
    assert on == {"progan"}
    assert C.get_preset("dcgan", {"tricks.ema_decay": 0.999}).tricks.ema_decay == 0.999   # an option


def test_export_metadata_says_which_weights():
    # "evaluation says which weights it scored": the export metadata records it
    from facegan.trainer.export import config_metadata
    for preset, weights in (("progan", "ema"), ("dcgan", "raw")):
        cfg = C.get_preset(preset)
        meta = config_metadata(cfg)
        assert meta["generator_weights"] == weights and meta["ema_decay"] == cfg.tricks.ema_decay


def test_latent_scaling_is_called_temperature():
    # "Truncation: z' = psi * z is temperature scaling; call it that."
    from facegan import generator
    assert generator.TRUNCATION_KIND == "temperature_scaling"
    assert C.TricksConfig().temperature == 1.0 and not hasattr(C.TricksConfig(), "truncation")
    with pytest.raises(C.ConfigError, match="tricks.temperature"):
        C.get_preset("smoke", {"tricks.temperature": 0.0})
    with pytest.raises(C.ConfigError, match="unknown config field 'tricks.truncation'"):
        C.get_preset("smoke", {"tricks.truncation": 0.7})


def test_wgan_preset_is_algorithm_1_and_refused_with_batchnorm_critics():
    # "WGAN with weight clipping ... as a loss family with RMSProp, refused with BatchNorm critics as WGAN-GP is"
    w = C.get_preset("wgan")
    assert (w.loss.family, w.loss.clip_value, w.optim.optimizer) == ("wgan", 0.01, "rmsprop")
    assert w.optim.d_learning_rate == w.optim.g_learning_rate == 5e-5 and w.tricks.d_steps == 5
    assert not w.network.batch_norm
    for arch in ("dcgan", "hdcgan", "facegan", "tan"):
        res = 32
        with pytest.raises(C.ConfigError, match="batch normalization"):
            C.get_preset("smoke", {"network.architecture": arch, "network.resolution": res, "loss.family": "wgan"})
    with pytest.raises(C.ConfigError, match="no meaning for wgan"):
        C.get_preset("wgan", {"tricks.label_smoothing": 0.1})
    with pytest.raises(C.ConfigError, match="loss.clip_value"):
        C.get_preset("wgan", {"loss.clip_value": 0.0})
    C.get_preset("smoke_progan", {"loss.family": "wgan"})    # progan's critic has no BatchNorm


# -- the training step: feature matching and weight clipping ---------------------------------------
def _gan(preset, **over):
    from facegan.trainer.gan import GAN
    from facegan.trainer.networks import build_networks
    o = {"network.z_dim": 8, "network.filters": 4, "network.max_filters": 8, "optim.batch_size": 4,
         "tricks.ema_decay": 0.0}
    o.update(over)
    cfg = C.get_preset(preset, o)
    gan = GAN(cfg, build_networks(cfg), global_batch_size=cfg.optim.batch_size * cfg.tricks.d_steps)
    gan.global_batch_size = cfg.optim.batch_size
    gan.compile()
    return cfg, gan


def _reals(cfg, n, seed=3):
    r = cfg.network.resolution
    return tf.random.stateless_uniform([n, r, r, 3], seed=[seed, 0], minval=-1, maxval=1)


def test_feature_matching_uses_real_and_fake_features_from_the_same_d():
    # "real and fake features from the same D" (Salimans et al.): the G step's term is
    # ||mean f_D'(x) - mean f_D'(G(z))||^2 with D' = D AFTER its update, for both sides.
    from facegan.trainer import gan as gan_mod
    from facegan.trainer.regularizers import feature_matching_loss
    cfg, gan = _gan("smoke", **{"tricks.feature_matching": 1.0})
    x, key = _reals(cfg, 4), tf.constant([5, 0], tf.int64)
    g0, d0 = gan.G.get_weights(), gan.D.get_weights()
    got = float(gan.train_step((x, key))["loss/feature_matching"])
    d1 = gan.D.get_weights()
    gan.G.set_weights(g0)                                    # G as it was when the term was taken
    z = gan._global_slice(key, gan_mod._Z_G, [cfg.network.z_dim])
    fake = gan.G(z, training=True)

    def fm(d_weights):
        gan.D.set_weights(d_weights)
        return float(feature_matching_loss(gan.D(x, training=True)["features"],
                                           gan.D(fake, training=True)["features"]))

    same, before = fm(d1), fm(d0)
    assert got == pytest.approx(same, rel=1e-4)
    assert abs(before - same) > 1e-3 * same                 # the old pairing gives a different value


def test_wgan_step_clips_every_critic_weight_and_uses_rmsprop():
    # Arjovsky et al. Algorithm 1: RMSProp; after each critic update w <- clip(w, -c, c)
    cfg, gan = _gan("wgan", **{"network.resolution": 16, "loss.clip_value": 0.003})
    assert isinstance(gan.d_optimizer, tf.keras.optimizers.RMSprop)
    assert isinstance(gan.g_optimizer, tf.keras.optimizers.RMSprop)
    assert max(float(tf.reduce_max(tf.abs(v))) for v in gan.D.trainable_variables) > 0.003   # init exceeds c
    out = gan.train_step((_reals(cfg, 4 * cfg.tricks.d_steps), tf.constant([1, 0], tf.int64)))
    assert max(float(tf.reduce_max(tf.abs(v))) for v in gan.D.trainable_variables) <= 0.003 + 1e-9
    # the box is hit, not just respected: some weights sit exactly at +-c
    assert any(np.any(np.isclose(np.abs(v.numpy()), 0.003)) for v in gan.D.trainable_variables)
    assert np.isfinite(float(out["loss/d"]))
    _, adam = _gan("smoke")
    assert isinstance(adam.d_optimizer, tf.keras.optimizers.Adam)
