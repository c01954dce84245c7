"""GAN loss families as pure functions returning PER-EXAMPLE losses [N].

Every function here returns one value per example so the training loop scales by the GLOBAL
batch (`tf.nn.compute_average_loss`) and results do not depend on the replica count.
Logits come in as [N] or [N, 1] (any float dtype; computed in float32).

Families (registered in trainer/registry.py, keyed like `LossConfig.family`):

| family   | D loss (per example)                                      | G loss                     |
|----------|-----------------------------------------------------------|----------------------------|
| minimax  | softplus(-D(x)) [target 1-s] + softplus(D(G(z)))          | -softplus(D(G(z)))         |
| ns       | same as minimax                                           | softplus(-D(G(z)))         |
| lsgan    | (D(x)-b')^2/2 + (D(G(z))-a)^2/2, b' = b - s(b - a)        | (D(G(z))-c)^2/2            |
| wgan_gp  | D(G(z)) - D(x) + drift*D(x)^2   (+ gp_weight * GP, loop)  | -D(G(z))                   |
| wgan     | D(G(z)) - D(x)   (+ weight clipping to [-c, c], loop)     | -D(G(z))                   |
| hinge    | relu(1 - D(x)) + relu(1 + D(G(z)))                        | -D(G(z))                   |
| facegan  | softplus(-D(x)) [target 1-s] + softplus(D(G(z)) - 1)      | softplus(-D(G(z)))         |

Where TF-GAN has the loss we call its implementation (`tensorflow_gan.python.losses.losses_impl`)
with `Reduction.NONE`. Two deliberate exceptions, both noted at the function:
* TF-GAN's `minimax_generator_loss` adds the constant log(sigmoid(1)) (it feeds ones as "real
  logits"); we use log(1 - sigmoid(D(G(z)))) = -softplus(D(G(z))) exactly.
* TF-GAN's `wasserstein_gradient_penalty` uses graph-mode `tf.gradients`, variable scopes and an
  unseeded `tf.random.uniform`; `gradient_penalty` below is the same formula (sqrt(|g|^2 + 1e-10),
  (slope - 1)^2) on a GradientTape with a seedable interpolation.

One-sided label smoothing (Salimans et al. 2016): `real_label_smoothing=s` moves only the REAL
target from 1 to 1 - s. TF-GAN's `label_smoothing` is the two-sided tf.losses convention
(target * (1 - ls) + 0.5 * ls), so we pass ls = 2 s to get a real target of exactly 1 - s.

The lens (Sajjadi et al. 2018, Tempered Adversarial Networks) is trained to MAXIMIZE the
discriminator's loss on lensed reals; the `*_lens_loss` functions give that term per family in
the same non-saturating form as each family's generator loss.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf
from tensorflow_gan.python.losses import losses_impl as _tfgan

_NONE = tf.compat.v1.losses.Reduction.NONE


def _flat(logits) -> tf.Tensor:
    """[N] or [N, 1] logits of any float dtype -> float32 [N]."""
    x = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    if x.shape.rank == 2:
        if x.shape[-1] is not None and x.shape[-1] != 1:
            raise ValueError(f"logits must be [N] or [N, 1], got shape {x.shape}")
        x = tf.squeeze(x, axis=-1)
    elif x.shape.rank != 1:
        raise ValueError(f"logits must be [N] or [N, 1], got shape {x.shape}")
    return x


def _check_smoothing(s, family):
    if not 0.0 <= float(s) < 0.5:
        raise ValueError(f"{family}: real_label_smoothing must be in [0, 0.5), got {s}")


def _no_smoothing(s, family):
    if s:
        raise ValueError(f"{family}: real_label_smoothing has no meaning for this loss "
                         f"(the critic has no labels), got {s}")


# -- minimax / non-saturating (Goodfellow et al. 2014) ----------------------------------------
def minimax_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """-log D(x) - log(1 - D(G(z))), real target 1 - s. TF-GAN `minimax_discriminator_loss`."""
    _check_smoothing(real_label_smoothing, "minimax")
    r, f = _flat(real_logits), _flat(fake_logits)
    return _tfgan.minimax_discriminator_loss(
        r, f, label_smoothing=2.0 * real_label_smoothing, reduction=_NONE, loss_collection=None)


def minimax_generator_loss(fake_logits):
    """log(1 - D(G(z))) = -softplus(D(G(z))) (saturating; TF-GAN's version adds a constant)."""
    return -tf.nn.softplus(_flat(fake_logits))


def ns_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """Same as minimax (TF-GAN `modified_discriminator_loss`)."""
    _check_smoothing(real_label_smoothing, "ns")
    r, f = _flat(real_logits), _flat(fake_logits)
    return _tfgan.modified_discriminator_loss(
        r, f, label_smoothing=2.0 * real_label_smoothing, reduction=_NONE, loss_collection=None)


def ns_generator_loss(fake_logits):
    """-log D(G(z)) = softplus(-D(G(z))). TF-GAN `modified_generator_loss`."""
    return _tfgan.modified_generator_loss(_flat(fake_logits), reduction=_NONE, loss_collection=None)


# -- LSGAN (Mao et al. 2017): labels a (fake), b (real), c (G's target) -----------------------
def lsgan_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0,
                             a: float = 0.0, b: float = 1.0):
    """(D(x) - b')^2 / 2 + (D(G(z)) - a)^2 / 2 with b' = b - s (b - a). TF-GAN least squares."""
    _check_smoothing(real_label_smoothing, "lsgan")
    real_label = b - real_label_smoothing * (b - a)
    return _tfgan.least_squares_discriminator_loss(
        _flat(real_logits), _flat(fake_logits), real_label=real_label, fake_label=a,
        reduction=_NONE, loss_collection=None)


def lsgan_generator_loss(fake_logits, c: float = 1.0):
    """(D(G(z)) - c)^2 / 2. TF-GAN `least_squares_generator_loss`."""
    return _tfgan.least_squares_generator_loss(_flat(fake_logits), real_label=c,
                                               reduction=_NONE, loss_collection=None)


# -- WGAN-GP (Gulrajani et al. 2017) + drift (Karras et al. 2018) ----------------------------
def wgan_gp_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0,
                               drift: float = 0.0):
    """D(G(z)) - D(x) + drift * D(x)^2. The gradient penalty is separate (`gradient_penalty`,
    weighted by `LossConfig.gp_weight`) because it needs the discriminator, not just logits."""
    _no_smoothing(real_label_smoothing, "wgan_gp")
    r, f = _flat(real_logits), _flat(fake_logits)
    loss = _tfgan.wasserstein_discriminator_loss(r, f, reduction=_NONE, loss_collection=None)
    if drift:
        loss = loss + drift * tf.square(r)
    return loss


def wgan_gp_generator_loss(fake_logits):
    """-D(G(z)). TF-GAN `wasserstein_generator_loss`."""
    return _tfgan.wasserstein_generator_loss(_flat(fake_logits), reduction=_NONE, loss_collection=None)


# -- WGAN with weight clipping (Arjovsky et al. 2017) -----------------------------------------
WGAN_CLIP = 0.01          # Arjovsky et al., Algorithm 1: c = 0.01 (with RMSProp, lr 5e-5, n_critic 5)


def wgan_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """D(G(z)) - D(x): the critic's side of the Wasserstein estimate (Arjovsky et al. 2017,
    Algorithm 1). The Lipschitz constraint is weight clipping after every critic update
    (`clip_weights`, box [-loss.clip_value, clip_value]), not a penalty term."""
    _no_smoothing(real_label_smoothing, "wgan")
    return _flat(fake_logits) - _flat(real_logits)


def wgan_generator_loss(fake_logits):
    """-D(G(z)) (Arjovsky et al. 2017, Algorithm 1)."""
    return -_flat(fake_logits)


def clip_weights(variables, clip_value: float):
    """w <- clip(w, -c, c) for every critic weight, in place (Arjovsky et al. 2017, Algorithm 1:
    "w <- clip(w, -c, c)" after each RMSProp step). Returns the assign ops (eager: the values)."""
    c = float(clip_value)
    return [v.assign(tf.clip_by_value(v, -c, c)) for v in variables]


# -- hinge (Lim & Ye 2017; Miyato et al. 2018) ------------------------------------------------
def hinge_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """relu(1 - D(x)) + relu(1 + D(G(z))). TF-GAN `wasserstein_hinge_discriminator_loss`."""
    _no_smoothing(real_label_smoothing, "hinge")
    return _tfgan.wasserstein_hinge_discriminator_loss(
        _flat(real_logits), _flat(fake_logits), reduction=_NONE, loss_collection=None)


def hinge_generator_loss(fake_logits):
    """-D(G(z)). TF-GAN `wasserstein_hinge_generator_loss`."""
    return _tfgan.wasserstein_hinge_generator_loss(_flat(fake_logits), reduction=_NONE,
                                                   loss_collection=None)


# -- FaceGANs (Li et al.) ---------------------------------------------------------------------
def facegan_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """FaceGANs' discriminator objective (Li et al., eq. 1), on D's raw outputs:

        L_D = mean[-log sigmoid(D(x)) - log sigmoid(1 - D(G(z)))]

    (the paper's setting as quoted in the spec: "the paper applies the sigmoid to D(x), D(G(z)) and to
    (1 - D(G(z))) with D's raw outputs"). Per example: softplus(-D(x)) + softplus(D(G(z)) - 1);
    at logits (0, 0) that is log 2 + softplus(-1) = 1.0064 (NS-GAN: 2 log 2 = 1.3863).

    What it does to D's gradient: the fake term is NS-GAN's softplus(D(G(z))) with the logit
    shifted by -1, so d L_D / d D(G(z)) = sigmoid(D(G(z)) - 1) instead of sigmoid(D(G(z))): D's
    push on fakes is weaker at every logit (0.27 vs 0.5 at 0) and keeps a fake "satisfied" only
    once its logit is well below 1 rather than below 0, i.e. D's optimal logit where real and fake
    densities are equal moves from 0 to 1/2 (the optimum where real and fake densities are equal). The real term and its
    gradient -sigmoid(-D(x)) are NS-GAN's. One-sided label smoothing (real target 1 - s)
    applies to the real term as in the other log-loss families."""
    _check_smoothing(real_label_smoothing, "facegan")
    r, f = _flat(real_logits), _flat(fake_logits)
    real = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(r), 1.0 - real_label_smoothing),
                                                   logits=r)
    return real + tf.nn.softplus(f - 1.0)     # -log sigmoid(1 - D(G(z)))


def facegan_generator_loss(fake_logits):
    """FaceGANs' generator objective (Li et al., eq. 2): mean[-log sigmoid(D(G(z)))] =
    softplus(-D(G(z))) per example (the same as NS-GAN's generator term)."""
    return tf.nn.softplus(-_flat(fake_logits))


# -- gradient penalty -------------------------------------------------------------------------
def _uniform(shape, seed_or_generator):
    if isinstance(seed_or_generator, tf.random.Generator):
        return seed_or_generator.uniform(shape, dtype=tf.float32)
    if seed_or_generator is None:
        return tf.random.uniform(shape, dtype=tf.float32)
    return tf.random.stateless_uniform(shape, seed=seed_or_generator, dtype=tf.float32)


def interpolates(real, fake, seed_or_generator=None):
    """real + eps (fake - real), eps ~ U[0, 1] per example (Gulrajani et al. Alg. 1)."""
    real = tf.cast(real, tf.float32)
    fake = tf.cast(fake, tf.float32)
    shape = tf.concat([tf.shape(real)[:1], tf.ones([tf.rank(real) - 1], tf.int32)], axis=0)
    eps = _uniform(shape, seed_or_generator)
    return real + eps * (fake - real)


def gradient_penalty(discriminator_logits_fn: Callable, real, fake, seed_or_generator=None,
                     target: float = 1.0, epsilon: float = 1e-10, interpolation=None):
    """(||grad_x D(x_hat)||_2 - 1)^2 per example [N] at uniform interpolates x_hat.

    `discriminator_logits_fn(images) -> logits [N] / [N, 1]`; `seed_or_generator` is a
    `tf.random.Generator`, a stateless seed (shape [2] int), or None (global RNG). Same formula
    as TF-GAN's `wasserstein_gradient_penalty` (epsilon inside the sqrt), on a GradientTape so it
    works in eager mode, tf.function and replica context; differentiable w.r.t. D's weights.
    `interpolation` (eps [N, 1, 1, 1] in [0, 1]) replaces the draw: the training loop passes its
    slice of a global-batch draw so the result does not depend on the replica count."""
    if interpolation is None:
        x_hat = interpolates(real, fake, seed_or_generator)
    else:
        real, fake = tf.cast(real, tf.float32), tf.cast(fake, tf.float32)
        x_hat = real + tf.cast(interpolation, tf.float32) * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        logits = _flat(discriminator_logits_fn(x_hat))
        total = tf.reduce_sum(logits)
    grads = tape.gradient(total, x_hat)
    grads = tf.reshape(tf.cast(grads, tf.float32), [tf.shape(grads)[0], -1])
    slopes = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=1) + epsilon)
    return tf.square(slopes / target - 1.0)


# -- lens (Sajjadi et al. 2018) ---------------------------------------------------------------
# Per-example adversarial term L_A of the lens loss L_L = lambda * L_A + ||X - L(X)||^2_2. The
# lens works against D on the real batch: it tries to make lensed reals look FAKE. Sajjadi et al.
# give the term per GAN family; as for the generator, the log-losses use the non-saturating form.
# Each family names its term in trainer/registry.py; the keyword arguments are the family's d_params.
def softplus_lens_loss(lensed_real_logits, fake_logits=None, **_):
    """ns / facegan: -log(1 - D(L(x))) = softplus(D(L(x)))."""
    return tf.nn.softplus(_flat(lensed_real_logits))


def minimax_lens_loss(lensed_real_logits, fake_logits=None, **_):
    """minimax: log D(L(x)) = -softplus(-D(L(x))) (= -L_D's real part, saturating)."""
    return -tf.nn.softplus(-_flat(lensed_real_logits))


def lsgan_lens_loss(lensed_real_logits, fake_logits=None, a: float = 0.0, **_):
    """lsgan: ||D(L(X)) - a||^2 = (D(L(x)) - a)^2, lensed reals pushed to the fake label a.
    Sajjadi et al. eq. 11 gives ||D(L(X))||^2 (a = 0, the default): no factor 1/2."""
    return tf.square(_flat(lensed_real_logits) - a)


def critic_lens_loss(lensed_real_logits, fake_logits=None, **_):
    """wgan_gp / wgan / hinge: D(L(x)) [- D(G(z)) when fake_logits is given] (= -L_D of the
    critic; the fake part is constant for the lens and only makes the value comparable)."""
    r = _flat(lensed_real_logits)
    return r - _flat(fake_logits) if fake_logits is not None else r


def lens_reconstruction_loss(real, lensed):
    """||X - L(X)||^2_2 per example: the squared L2 norm SUMMED over pixels and channels
    (Sajjadi et al.: L_L = lambda * L_A + ||X - L(X)||^2_2); the loop averages it over the batch.
    At 64x64 this is H*W*3 = 12,288 times the per-pixel mean, which is what keeps the lens close
    to the identity against the lambda-weighted adversarial term."""
    d = tf.cast(real, tf.float32) - tf.cast(lensed, tf.float32)
    return tf.reduce_sum(tf.reshape(tf.square(d), [tf.shape(d)[0], -1]), axis=1)
