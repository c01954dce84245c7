"""StyleGAN2 / StyleGAN networks (trainer/networks/stylegan2.py) and their losses
(trainer/stylegan_losses.py): contract shapes and ranges, demodulation, AdaIN, W truncation,
style mixing, w_avg EMA, R1 and path length against hand-computed values."""
import math

import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import stylegan_losses as L
from facegan.trainer.networks import stylegan2 as S

Z = 8


def tiny(res=32, **over):
    kw = dict(resolution=res, z_dim=Z, w_dim=8, mapping_layers=2, channel_base=4 * res, channel_max=8)
    kw.update(over)
    return S.StyleGANConfig(**kw)


def z_batch(n=4, seed=0):
    return tf.random.stateless_normal([n, Z], seed=[seed, 1])


@pytest.mark.parametrize("mode", S.STYLE_MODES)
@pytest.mark.parametrize("res", [32, 64, 128])
def test_shapes_and_ranges(mode, res):
    G, D = S.build_stylegan(tiny(res, style_mode=mode))
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    x = G(z_batch(), training=True, noise_seed=[1, 2])
    assert x.shape == (4, res, res, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    assert float(tf.math.reduce_std(x)) > 0
    out = D(x)
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (4, 1) and out["logits"].dtype == tf.float32
    assert out["features"].shape == (4, 8) and out["features"].dtype == tf.float32
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(D(G(z_batch(), training=True, noise_seed=[3, 4]))["logits"])
    grads = tape.gradient(loss, G.trainable_variables)
    missing = [v.name for v, g in zip(G.trainable_variables, grads) if g is None]
    assert not missing
    # w_avg and the noise buffers are state, not trained
    names = {v.name.split("/")[-1].split(":")[0] for v in G.non_trainable_variables}
    assert {"w_avg", "w_avg_updates", "noise_const"} <= names


def test_mixed_precision_outputs_float32():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        G, D = S.build_stylegan(tiny(32))
        x = G(z_batch(), training=True, noise_seed=[1, 2])
        out = D(x)
        assert x.dtype == tf.float32 and out["logits"].dtype == tf.float32
        assert np.all(np.isfinite(x.numpy())) and np.all(np.isfinite(out["logits"].numpy()))
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_demodulation_gives_unit_variance():
    """StyleGAN2 §2.2: with unit-variance i.i.d. inputs the demodulated output has unit variance,
    whatever the styles and weights (the un-demodulated output does not)."""
    x = tf.random.stateless_normal([8, 64, 64, 16], seed=[0, 1])
    weight = tf.random.stateless_normal([3, 3, 16, 12], seed=[0, 2]) * 3.0
    styles = tf.random.stateless_normal([8, 16], seed=[0, 3]) * 2.0 + 1.0
    y = S.modulated_conv2d(x, weight, styles, demodulate=True)[:, 1:-1, 1:-1]   # interior (no padding)
    var = tf.math.reduce_variance(y, axis=[1, 2, 3]).numpy()                  # per example
    assert np.allclose(var, 1.0, atol=0.06), var
    assert abs(var.mean() - 1.0) < 0.02
    raw = tf.math.reduce_variance(S.modulated_conv2d(x, weight, styles, demodulate=False)[:, 1:-1, 1:-1])
    assert float(raw) > 10.0
    # modulation = per-example conv with w * s (Eq. 1)
    ref = tf.nn.conv2d(x[:1], weight * styles[0][None, None, :, None], 1, "SAME")
    np.testing.assert_allclose(S.modulated_conv2d(x[:1], weight, styles[:1], demodulate=False), ref,
                               rtol=1e-4, atol=1e-4)


def test_adain_sets_channel_mean_and_std_from_the_style():
    """AdaIN(x, y) = y_s (x - mu) / sigma + y_b: each output channel has mean y_b and std |y_s|."""
    layer = S.StyledConv(6, 16, style_mode="adain")
    x = tf.random.stateless_normal([3, 16, 16, 5], seed=[1, 1])
    w = tf.random.stateless_normal([3, 4], seed=[1, 2])
    y = layer(x, w=w)
    ys, yb = tf.split(layer.affine(w), 2, axis=-1)
    mu, var = tf.nn.moments(y, axes=[1, 2])
    np.testing.assert_allclose(mu, yb, atol=1e-4)
    np.testing.assert_allclose(tf.sqrt(var), tf.abs(ys), rtol=1e-3, atol=1e-4)


def _trained_w_avg(G, steps=3):
    for s in range(steps):
        G(z_batch(8, seed=10 + s), training=True, noise_seed=[s, 0])


def test_w_avg_is_an_ema_of_w_updated_only_in_training():
    cfg = tiny(32)
    G, _ = S.build_stylegan(cfg)
    assert int(G.w_avg_updates.numpy()) == 0 and np.all(G.w_avg.numpy() == 0)   # the build call is not training
    z = z_batch(8, seed=5)
    before = G.w_avg.numpy().copy()
    G(z, training=True)
    w = G.map(z).numpy()
    expect = w.mean(0) + cfg.w_avg_beta * (before - w.mean(0))
    np.testing.assert_allclose(G.w_avg.numpy(), expect, rtol=1e-6, atol=1e-7)
    G(z, training=False)
    np.testing.assert_array_equal(G.w_avg.numpy(), expect.astype(np.float32))
    assert int(G.w_avg_updates.numpy()) == 1


def test_truncation_psi0_gives_the_w_avg_image_and_psi1_no_truncation():
    G, _ = S.build_stylegan(tiny(32))
    _trained_w_avg(G)
    assert float(tf.norm(G.w_avg)) > 0
    z = z_batch(5, seed=3)
    at0 = G(z, psi=0.0).numpy()
    avg_img = G.synthesis(tf.tile(G.w_avg[None, None, :], [1, G.num_ws, 1])).numpy()
    for i in range(5):
        np.testing.assert_allclose(at0[i], avg_img[0], atol=1e-6)
    plain = G(z).numpy()
    np.testing.assert_allclose(G(z, psi=1.0).numpy(), plain, atol=1e-5)
    half = G(z, psi=0.5).numpy()
    assert np.abs(half - plain).max() > 1e-3 and np.abs(half - at0).max() > 1e-3


def test_truncation_cutoff_only_touches_early_layers():
    G, _ = S.build_stylegan(tiny(32))
    _trained_w_avg(G)
    w = G.map(z_batch(3))
    ws = G.truncate(w, psi=0.0, cutoff=3).numpy()
    np.testing.assert_array_equal(ws[:, :3], np.broadcast_to(G.w_avg.numpy(), (3, 3, 8)))
    np.testing.assert_array_equal(ws[:, 3:], np.broadcast_to(w.numpy()[:, None], (3, G.num_ws - 3, 8)))


def test_style_mixing_crossover():
    G, _ = S.build_stylegan(tiny(32))
    z1, z2 = z_batch(3, seed=1), z_batch(3, seed=2)
    a, b = G(z1).numpy(), G(z2).numpy()
    np.testing.assert_allclose(G.style_mix(z1, z2, 0).numpy(), b, atol=1e-6)           # layer 0 = second seed
    np.testing.assert_allclose(G.style_mix(z1, z2, G.num_ws).numpy(), a, atol=1e-6)    # never = first seed
    mid = G.style_mix(z1, z2, 4).numpy()
    assert np.abs(mid - a).max() > 1e-3 and np.abs(mid - b).max() > 1e-3
    # per-example crossovers
    per = G.style_mix(z1, z2, tf.constant([0, G.num_ws, 4])).numpy()
    np.testing.assert_allclose(per, np.stack([b[0], a[1], mid[2]]), atol=1e-6)


def test_mixing_crossover_distribution():
    G = S.StyleGenerator(tiny(32, mixing_prob=0.9))
    c = G.mixing_crossover(tf.constant([4, 2]), 4000).numpy()
    assert c.min() >= 1 and c.max() <= G.num_ws
    frac_unmixed = np.mean(c == G.num_ws)
    assert abs(frac_unmixed - 0.1) < 0.02                         # 1 - mixing_prob
    assert set(np.unique(c[c < G.num_ws])) == set(range(1, G.num_ws))
    np.testing.assert_array_equal(c, G.mixing_crossover(tf.constant([4, 2]), 4000).numpy())


def test_noise_seed_draws_fresh_noise_and_const_noise_is_deterministic():
    G, _ = S.build_stylegan(tiny(32))
    for layer, _ in G.convs:                       # noise strength starts at 0: make noise visible
        layer.noise_strength.assign(0.5)
    z = z_batch(2)
    a, b = G(z, noise_seed=[1, 1]).numpy(), G(z, noise_seed=[1, 2]).numpy()
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, G(z, noise_seed=[1, 1]).numpy())
    np.testing.assert_array_equal(G(z).numpy(), G(z).numpy())


def test_equalized_lr_and_mapping_lr_multiplier():
    layer = S.StyleDense(64, lr_mul=0.01)
    x = tf.random.stateless_normal([256, 128], seed=[0, 7])
    y = layer(x)
    assert abs(float(tf.math.reduce_std(layer.kernel)) - 100.0) < 5.0          # N(0, 1/lr_mul^2) storage
    assert abs(float(tf.math.reduce_std(y)) - 1.0) < 0.1                      # unit gain at runtime
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(x))
    g = tape.gradient(out, layer.kernel)
    # dy/dkernel = x * lr_mul / sqrt(fan_in): the learning rate is scaled by lr_mul
    np.testing.assert_allclose(g.numpy(), np.tile(x.numpy().sum(0)[:, None], [1, 64]) * 0.01 / math.sqrt(128),
                               rtol=1e-4, atol=1e-6)


def test_widths_and_validation():
    small = S.config_from("stylegan2_small", resolution=64)
    assert [small.nf(r) for r in (4, 8, 16, 32, 64)] == [128, 128, 128, 128, 64]
    full = S.config_from("stylegan2", resolution=1024)
    assert [full.nf(r) for r in (4, 64, 128, 1024)] == [512, 512, 256, 32]
    assert full.mapping_layers == 8 and full.mapping_lr_mul == 0.01 and full.mixing_prob == 0.9
    with pytest.raises(ValueError, match="resolution"):
        S.StyleGANConfig(resolution=48)
    with pytest.raises(ValueError, match="style_mode"):
        S.StyleGANConfig(style_mode="spade")
    with pytest.raises(ValueError, match="widths"):
        S.config_from("huge")


def test_w_avg_survives_a_checkpoint(tmp_path):
    G, _ = S.build_stylegan(tiny(32))
    _trained_w_avg(G)
    pl = L.PathLengthMean()
    pl.value.assign(0.37)
    path = tf.train.Checkpoint(g=G, pl=pl).write(str(tmp_path / "ck"))
    G2, _ = S.build_stylegan(tiny(32))
    pl2 = L.PathLengthMean()
    tf.train.Checkpoint(g=G2, pl=pl2).read(path).assert_consumed()
    np.testing.assert_array_equal(G2.w_avg.numpy(), G.w_avg.numpy())
    assert int(G2.w_avg_updates.numpy()) == int(G.w_avg_updates.numpy())
    assert float(pl2.value.numpy()) == pytest.approx(0.37)
    np.testing.assert_array_equal(G2(z_batch(), psi=0.7).numpy(), G(z_batch(), psi=0.7).numpy())


# -- losses -----------------------------------------------------------------------------------
class Quadratic(tf.keras.layers.Layer):
    """D(x) = c * sum(x^2) per example: grad_x D = 2 c x by hand."""

    def build(self, _):
        self.c = self.add_weight("c", shape=(), initializer=tf.keras.initializers.Constant(0.3))

    def call(self, x):
        return self.c * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]


def test_r1_matches_hand_computation_and_is_differentiable_in_d():
    d = Quadratic()
    x = tf.random.stateless_normal([3, 4, 4, 3], seed=[2, 2])
    d(x)
    gamma, interval = 10.0, 16
    with tf.GradientTape() as tape:
        pen = L.r1_penalty(d, x, gamma=gamma, interval=interval)
        total = tf.reduce_sum(pen)
    S_ = np.sum(x.numpy() ** 2, axis=(1, 2, 3))
    c = 0.3
    np.testing.assert_allclose(pen.numpy(), interval * gamma / 2 * 4 * c ** 2 * S_, rtol=1e-5)
    dc = tape.gradient(total, d.c)                  # d/dc of 16 * 5 * 4 c^2 S
    assert float(dc) == pytest.approx(float(np.sum(interval * gamma / 2 * 8 * c * S_)), rel=1e-5)
    with pytest.raises(ValueError, match="interval"):
        L.r1_penalty(d, x, interval=0)


def test_path_length_matches_hand_computation():
    n, nw, wd, h = 3, 4, 5, 4
    A = tf.random.stateless_normal([nw, wd, h * h * 3], seed=[3, 1])

    def synthesis(ws):        # linear: images = reshape(sum_l ws_l A_l)
        return tf.reshape(tf.einsum("nld,ldk->nk", ws, A), [-1, h, h, 3])

    ws = tf.random.stateless_normal([n, nw, wd], seed=[3, 2])
    seed = tf.constant([9, 9])
    pen, new_mean, lengths = L.path_length_penalty(synthesis, ws, pl_mean=0.5, seed=seed,
                                                   decay=0.01, weight=2.0, interval=4)
    y = L.path_length_noise([n, h, h, 3], seed).numpy().reshape(n, -1)
    assert abs(y.std() * h - 1.0) < 0.2                                  # N(0, 1) / sqrt(H W)
    g = np.einsum("ldk,nk->nld", A.numpy(), y)                           # J^T y by hand
    L_ = np.sqrt((g ** 2).sum(2).mean(1))
    np.testing.assert_allclose(lengths.numpy(), L_, rtol=1e-5)
    m = 0.5 + 0.01 * (L_.mean() - 0.5)
    assert float(new_mean) == pytest.approx(m, rel=1e-6)
    np.testing.assert_allclose(pen.numpy(), 4 * 2.0 * (L_ - m) ** 2, rtol=1e-4)


def test_path_length_on_the_generator_is_differentiable():
    G, _ = S.build_stylegan(tiny(32))
    ws = G.truncate(G.map(z_batch(2)))
    with tf.GradientTape() as tape:
        pen, new_mean, lengths = L.path_length_penalty(lambda w: G.synthesis(w, noise_seed=[0, 1]), ws, 0.0, [5, 5])
        total = tf.reduce_sum(pen)
    grads = tape.gradient(total, G.trainable_variables)
    assert sum(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads) > len(grads) // 2
    assert float(new_mean) == pytest.approx(0.01 * float(tf.reduce_mean(lengths)), rel=1e-6)


def test_ns_logistic_and_lazy_adam():
    r, f = tf.constant([[1.0], [-2.0]]), tf.constant([[0.5], [3.0]])
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    np.testing.assert_allclose(L.ns_logistic_discriminator_loss(r, f), sp(-r.numpy()[:, 0]) + sp(f.numpy()[:, 0]),
                               rtol=1e-6)
    np.testing.assert_allclose(L.ns_logistic_generator_loss(f), sp(-f.numpy()[:, 0]), rtol=1e-6)
    lr, b1, b2 = L.lazy_optimizer_params(0.002, 0.0, 0.99, 16)
    c = 16 / 17
    assert (lr, b1, b2) == pytest.approx((0.002 * c, 0.0, 0.99 ** c))
    assert L.lazy_optimizer_params(0.002, 0.5, 0.99, 0) == (0.002, 0.5, 0.99)


def test_upsample_is_half_pixel_bilinear_and_twice_differentiable():
    x = tf.random.stateless_normal([2, 5, 7, 3], seed=[8, 8])
    np.testing.assert_allclose(S.upsample2x(x), tf.image.resize(x, [10, 14], method="bilinear"), atol=1e-6)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(tf.square(S.upsample2x(x)))
        g = inner.gradient(y, x)
        gg = tf.reduce_sum(tf.square(g))
    assert outer.gradient(gg, x) is not None


def test_step_with_ada_r1_path_length_and_mixing():
    """One D step (NS logistic + lazy R1 on ADA-augmented inputs) and G step (NS + style mixing +
    lazy path length) on the tiny nets: finite, and it moves the state (weights, w_avg,
    path-length mean). Eager: tracing the double-backprop graph costs ~15 s on CI's CPU; graph
    mode is covered by `test_generator_traces_and_updates_w_avg_in_graph_mode`."""
    from facegan.trainer import augment as A
    G, D = S.build_stylegan(tiny(8))
    ada = A.AdaptiveAugment("fixed", p=0.5)
    pl = L.PathLengthMean()
    opt_g, opt_d = tf.keras.optimizers.Adam(1e-3), tf.keras.optimizers.Adam(1e-3)
    reals = tf.random.stateless_uniform([4, 8, 8, 3], [0, 9], -1.0, 1.0)

    def logits(x):
        return D(x)["logits"]

    def step(key):
        k = tf.unstack(tf.random.experimental.stateless_split(key, 6))
        z, z2 = tf.random.stateless_normal([4, Z], k[0]), tf.random.stateless_normal([4, Z], k[1])
        with tf.GradientTape() as tape:
            fakes = G(z, training=True, noise_seed=k[2], z2=z2, crossover=G.mixing_crossover(k[3], 4))
            reals_aug = ada(reals, k[4])
            r, f = logits(reals_aug), logits(ada(fakes, k[5]))
            d_loss = tf.reduce_mean(L.ns_logistic_discriminator_loss(r, f))
            # R1 on the augmented reals (as stylegan2-ada does: the gradient is w.r.t. D's input)
            r1 = tf.reduce_mean(L.r1_penalty(logits, reals_aug, gamma=1.0, interval=16))
            total_d = d_loss + r1
        opt_d.apply_gradients(zip(tape.gradient(total_d, D.trainable_variables), D.trainable_variables))
        with tf.GradientTape() as tape:
            g_loss = tf.reduce_mean(L.ns_logistic_generator_loss(logits(G(z, training=True, noise_seed=k[2]))))
            ws = G.truncate(G.map(z))
            pen, new_mean, _ = L.path_length_penalty(lambda w: G.synthesis(w, noise_seed=k[2]), ws, pl.value, k[3])
            total_g = g_loss + tf.reduce_mean(pen)
        opt_g.apply_gradients(zip(tape.gradient(total_g, G.trainable_variables), G.trainable_variables))
        pl.value.assign(new_mean)
        return d_loss, r1, g_loss, tf.reduce_mean(pen)

    before = [v.numpy().copy() for v in (G.mapping.fcs[0].kernel, D.trainable_variables[0])]
    out = [float(v) for v in step(tf.constant([1, 2]))]
    assert all(np.isfinite(out)) and out[1] > 0 and out[3] > 0, out
    assert int(G.w_avg_updates.numpy()) == 2 and float(pl.value) > 0
    assert all(np.abs(b - v.numpy()).max() > 0 for b, v in zip(before, (G.mapping.fcs[0].kernel,
                                                                         D.trainable_variables[0])))


def test_generator_traces_and_updates_w_avg_in_graph_mode():
    G, _ = S.build_stylegan(tiny(8))
    z = z_batch(4)

    @tf.function
    def fwd(key):
        return G(z, training=True, noise_seed=key, z2=z_batch(4, seed=7), crossover=G.mixing_crossover(key, 4))

    a = fwd(tf.constant([1, 1]))
    b = fwd(tf.constant([1, 2]))
    assert a.shape == (4, 8, 8, 3) and int(G.w_avg_updates.numpy()) == 2
    w = G.map(z).numpy().mean(0)
    beta = G.cfg.w_avg_beta
    np.testing.assert_allclose(G.w_avg.numpy(), w + beta * ((1 - beta) * w - w), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="training"):
        tf.function(lambda t: G(z, training=t))(tf.constant(True))    # symbolic: ambiguous


def test_replica_slice_gets_the_global_batchs_noise_and_crossovers():
    G, _ = S.build_stylegan(tiny(32))
    for layer, _ in G.convs:
        layer.noise_strength.assign(0.5)
    z, z2, key = z_batch(4, seed=1), z_batch(4, seed=2), tf.constant([5, 6])
    cross = G.mixing_crossover(key, 4)
    np.testing.assert_array_equal(G.mixing_crossover(key, 2, rows=(4, 2)), cross[2:])
    full = G(z, noise_seed=key, z2=z2, crossover=cross)
    part = G(z[2:], noise_seed=key, z2=z2[2:], crossover=cross[2:], rows=(4, 2))
    np.testing.assert_allclose(part, full[2:], atol=1e-6)
    assert np.abs(G(z[2:], noise_seed=key, z2=z2[2:], crossover=cross[2:]) - full[2:]).max() > 1e-4
