"""Every loss family against hand-computed numpy formulas; gradient penalty on analytic critics."""
import math

import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import config as C
from facegan.trainer import registry
from facegan.trainer import losses as L

REAL = np.array([[0.5], [-1.0], [2.0], [0.0]], np.float32)
FAKE = np.array([[0.1], [0.3], [-2.0], [4.0]], np.float32)


def softplus(x):
    return np.log1p(np.exp(x))


def _own(family, **fields):
    """Those of `fields` the family's settings have (each family's settings hold only its own)."""
    names = C.field_names(registry.loss_family(family).settings)
    return {k: v for k, v in fields.items() if k in names}


class LossFamilyCase:
    """Shared checks for one family: subclasses give the numpy formulas."""
    family = ""
    smoothing = (0.0, 0.1)

    def np_g(self, f, lc):
        raise NotImplementedError

    def np_d(self, r, f, s, lc):
        raise NotImplementedError

    def loss_cfg(self):
        return C.loss_settings(self.family, **_own(self.family, lsgan_a=-1.0, lsgan_b=1.0, lsgan_c=0.5, drift=0.01))

    def test_generator_matches_formula(self):
        lc = self.loss_cfg()
        g, _ = registry.LOSSES[self.family].bind(lc)
        got = g(tf.constant(FAKE)).numpy()
        assert got.shape == (4,)
        np.testing.assert_allclose(got, self.np_g(FAKE[:, 0], lc), rtol=1e-5, atol=1e-6)

    def test_discriminator_matches_formula(self):
        lc = self.loss_cfg()
        _, d = registry.LOSSES[self.family].bind(lc)
        for s in self.smoothing:
            got = d(tf.constant(REAL), tf.constant(FAKE), real_label_smoothing=s).numpy()
            assert got.shape == (4,)
            np.testing.assert_allclose(got, self.np_d(REAL[:, 0], FAKE[:, 0], s, lc), rtol=1e-5, atol=1e-6)

    def test_flat_logits_and_bfloat16_accepted(self):
        lc = self.loss_cfg()
        g, d = registry.LOSSES[self.family].bind(lc)
        a = d(tf.constant(REAL[:, 0]), tf.constant(FAKE[:, 0])).numpy()
        b = d(tf.constant(REAL, tf.bfloat16), tf.constant(FAKE, tf.bfloat16)).numpy()
        assert a.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)   # bfloat16 has ~3 significant digits
        assert g(tf.constant(FAKE[:, 0])).shape == (4,)

    def test_per_example_mean_equals_batch_loss(self):
        # Per-example values averaged over the global batch == the loss of the whole batch, so the
        # loop's compute_average_loss gives replica-independent results.
        lc = self.loss_cfg()
        _, d = registry.LOSSES[self.family].bind(lc)
        halves = [d(tf.constant(REAL[i:i + 2]), tf.constant(FAKE[i:i + 2])).numpy() for i in (0, 2)]
        whole = d(tf.constant(REAL), tf.constant(FAKE)).numpy()
        np.testing.assert_allclose(np.concatenate(halves), whole, rtol=1e-6)


class TestMinimax(LossFamilyCase):
    family = "minimax"

    def np_g(self, f, lc):
        return np.log(1 - 1 / (1 + np.exp(-f)))          # log(1 - D(G(z)))

    def np_d(self, r, f, s, lc):
        return (1 - s) * softplus(-r) + s * softplus(r) + softplus(f)


class TestNonSaturating(LossFamilyCase):
    family = "ns"

    def np_g(self, f, lc):
        return -np.log(1 / (1 + np.exp(-f)))             # -log D(G(z))

    def np_d(self, r, f, s, lc):
        sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        t = 1 - s
        return -(t * np.log(sig(r)) + (1 - t) * np.log(1 - sig(r))) - np.log(1 - sig(f))

    def test_hand_values(self):
        assert L.ns_generator_loss(tf.constant([0.0])).numpy()[0] == pytest.approx(math.log(2), rel=1e-6)
        assert L.ns_discriminator_loss(tf.constant([0.0]), tf.constant([0.0])).numpy()[0] == \
            pytest.approx(2 * math.log(2), rel=1e-6)


class TestLSGAN(LossFamilyCase):
    family = "lsgan"

    def np_g(self, f, lc):
        return 0.5 * (f - lc.lsgan_c) ** 2

    def np_d(self, r, f, s, lc):
        b = lc.lsgan_b - s * (lc.lsgan_b - lc.lsgan_a)
        return 0.5 * (r - b) ** 2 + 0.5 * (f - lc.lsgan_a) ** 2

    def test_hand_values(self):
        # a=0, b=1: D(x)=1, D(G(z))=0 is optimal -> 0; D(x)=0, D(G(z))=1 -> 1/2 + 1/2.
        d = L.lsgan_discriminator_loss(tf.constant([1.0, 0.0]), tf.constant([0.0, 1.0]), a=0.0, b=1.0).numpy()
        np.testing.assert_allclose(d, [0.0, 1.0])


class TestWGANGP(LossFamilyCase):
    family = "wgan_gp"
    smoothing = (0.0,)

    def np_g(self, f, lc):
        return -f

    def np_d(self, r, f, s, lc):
        return f - r + lc.drift * r ** 2

    def test_smoothing_refused(self):
        with pytest.raises(ValueError, match="no meaning"):
            L.wgan_gp_discriminator_loss(REAL, FAKE, real_label_smoothing=0.1)

    def test_family_needs_penalty(self):
        assert registry.LOSSES["wgan_gp"].needs_gradient_penalty
        assert not any(f.needs_gradient_penalty for n, f in registry.LOSSES.items() if n != "wgan_gp")


class TestHinge(LossFamilyCase):
    family = "hinge"
    smoothing = (0.0,)

    def np_g(self, f, lc):
        return -f

    def np_d(self, r, f, s, lc):
        return np.maximum(0, 1 - r) + np.maximum(0, 1 + f)


class TestFaceGAN(LossFamilyCase):
    family = "facegan"

    def np_g(self, f, lc):
        return softplus(-f)

    def np_d(self, r, f, s, lc):
        # Li et al. eq. 1: -log sigmoid(D(x)) - log sigmoid(1 - D(G(z))), real target 1 - s
        return (1 - s) * softplus(-r) + s * softplus(r) + softplus(f - 1)


def test_registry_drives_config_validation():
    with pytest.raises(C.ConfigError, match="loss.family 'nope' is not one of minimax, ns"):
        C.get_preset("smoke", {"loss.family": "nope"})
    # label smoothing is refused exactly for the families that declare no support for it
    for name, fam in registry.LOSSES.items():
        over = {"loss.family": name, "tricks.label_smoothing": 0.1}
        if fam.refuses_batchnorm_critic:
            over["network.architecture"] = "progan"
        if fam.supports_label_smoothing:
            assert C.get_preset("smoke", over).tricks.label_smoothing == 0.1
        else:
            with pytest.raises(C.ConfigError, match=f"no meaning for {name}"):
                C.get_preset("smoke", over)


def test_smoothing_out_of_range_refused():
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        L.ns_discriminator_loss(REAL, FAKE, real_label_smoothing=0.6)


# -- gradient penalty ---------------------------------------------------------------------------
def test_gradient_penalty_linear_critic_is_analytic():
    # D(x) = <w, x>: grad = w everywhere, so the penalty is (|w| - 1)^2 for every interpolate.
    w = np.arange(1, 13, dtype=np.float32).reshape(2, 2, 3) / 10.0
    fn = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    real = tf.random.stateless_uniform([5, 2, 2, 3], seed=[1, 2], minval=-1, maxval=1)
    fake = tf.random.stateless_uniform([5, 2, 2, 3], seed=[3, 4], minval=-1, maxval=1)
    got = L.gradient_penalty(fn, real, fake, tf.constant([7, 8])).numpy()
    expected = (np.sqrt((w ** 2).sum() + 1e-10) - 1.0) ** 2
    assert got.shape == (5,)
    np.testing.assert_allclose(got, np.full(5, expected), rtol=1e-5)


def test_gradient_penalty_quadratic_critic_uses_uniform_interpolates():
    # D(x) = |x|^2 / 2: grad = x_hat, so the penalty reveals the interpolates.
    fn = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])  # noqa: E731
    real = tf.zeros([64, 1, 1, 2])
    fake = tf.ones([64, 1, 1, 2]) * np.float32(1 / math.sqrt(2.0))     # |fake| = 1
    seed = tf.constant([11, 12])
    x_hat = L.interpolates(real, fake, seed).numpy()
    eps = x_hat[:, 0, 0, 0] * math.sqrt(2.0)                           # x_hat = eps * fake
    assert 0.0 <= eps.min() and eps.max() <= 1.0 and eps.std() > 0.15  # uniform-ish in [0, 1]
    got = L.gradient_penalty(fn, real, fake, seed).numpy()
    np.testing.assert_allclose(got, (eps - 1.0) ** 2, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_is_differentiable_wrt_critic_weights():
    # D(x) = <w, x>, penalty (|w| - 1)^2 -> d/dw = 2 (|w| - 1) w / |w|.
    w = tf.Variable([[0.6], [0.8], [1.2]])
    fn = lambda x: tf.matmul(x, w)  # noqa: E731
    with tf.GradientTape() as tape:
        gp = tf.reduce_mean(L.gradient_penalty(fn, tf.zeros([4, 3]), tf.ones([4, 3]), tf.constant([1, 1])))
    g = tape.gradient(gp, w).numpy()
    wn = w.numpy()
    norm = np.linalg.norm(wn)
    np.testing.assert_allclose(g, 2 * (norm - 1) * wn / norm, rtol=1e-4)


def test_gradient_penalty_with_generator_and_in_tf_function():
    fn = lambda x: tf.reduce_sum(3.0 * x, axis=1)  # noqa: E731  grad norm = 3 * sqrt(2)
    gen = tf.random.Generator.from_seed(1)
    expected = (3 * math.sqrt(2.0) - 1) ** 2
    np.testing.assert_allclose(L.gradient_penalty(fn, tf.zeros([3, 2]), tf.ones([3, 2]), gen).numpy(),
                               [expected] * 3, rtol=1e-5)
    f = tf.function(lambda: L.gradient_penalty(fn, tf.zeros([3, 2]), tf.ones([3, 2]), tf.constant([0, 1])))
    np.testing.assert_allclose(f().numpy(), [expected] * 3, rtol=1e-5)


# -- lens terms ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family,formula", [
    ("ns", lambda r, f: softplus(r)),                       # -log(1 - D(L(x)))
    ("facegan", lambda r, f: softplus(r)),
    ("minimax", lambda r, f: -softplus(-r)),                # log D(L(x))
    ("lsgan", lambda r, f: (r - (-1.0)) ** 2),              # ||D(L(X)) - a||^2, fake label a = -1
    ("wgan_gp", lambda r, f: r - f),                        # -L_D of the critic
    ("hinge", lambda r, f: r - f),
])
def test_lens_adversarial_loss(family, formula):
    lc = C.loss_settings(family, **_own(family, lsgan_a=-1.0))
    got = registry.LOSSES[family].bind_lens(lc)(tf.constant(REAL), tf.constant(FAKE)).numpy()
    np.testing.assert_allclose(got, formula(REAL[:, 0], FAKE[:, 0]), rtol=1e-5, atol=1e-6)


def test_lens_adversarial_loss_opposes_discriminator_on_reals():
    # The lens maximizes D's loss on lensed reals: its gradient wrt the logit has the opposite
    # sign of D's real-part gradient for every family (logits between LSGAN's labels a=0, b=1).
    x = tf.constant([[0.3], [0.6]])
    for fam in registry.LOSSES:
        lc = C.loss_settings(fam)
        with tf.GradientTape(persistent=True) as t:
            t.watch(x)
            lens = tf.reduce_sum(registry.LOSSES[fam].bind_lens(lc)(x))
            d = tf.reduce_sum(registry.LOSSES[fam].bind(lc)[1](x, tf.zeros_like(x)))
        assert np.all(np.sign(t.gradient(lens, x).numpy()) == -np.sign(t.gradient(d, x).numpy())), fam


def test_lens_reconstruction_loss_is_squared_norm_per_example():
    a = np.random.default_rng(0).uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
    b = np.random.default_rng(1).uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
    got = L.lens_reconstruction_loss(a, b).numpy()
    np.testing.assert_allclose(got, ((a - b) ** 2).reshape(3, -1).sum(1), rtol=1e-5)


def test_registered_functions_exist():
    # every name a family registers resolves to a function (bare names: trainer.losses)
    for fam in registry.LOSSES.values():
        for path in (fam.generator_loss, fam.discriminator_loss, fam.lens_loss):
            assert callable(registry.LossFamily._fn(path)), (fam.name, path)


class TestWGAN(LossFamilyCase):
    family = "wgan"
    smoothing = (0.0,)

    def np_g(self, f, lc):
        return -f

    def np_d(self, r, f, s, lc):
        return f - r
