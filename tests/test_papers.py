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
    got = L.LOSSES["lsgan"].lens_loss(C.LossConfig(family="lsgan"))(logits).numpy()
    np.testing.assert_allclose(got, [0.25, 4.0, 9.0], rtol=1e-6)
