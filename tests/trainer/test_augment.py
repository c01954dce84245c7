"""ADA (trainer/augment.py): every augmentation differentiable and in range, p = 0 the identity,
exact geometric permutations, colour invariants, replica slicing, and the adaptive p controller
rising on an overfitting discriminator and falling on one that does not overfit."""
import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import augment as A

SEED = tf.constant([3, 4])


def images(n=6, size=16, lo=-1.0, hi=1.0, seed=0):
    return tf.random.stateless_uniform([n, size, size, 3], [seed, 1], lo, hi)


@pytest.mark.parametrize("op", A.AUGMENTATIONS)
def test_every_augmentation_is_differentiable(op):
    """For fixed random parameters each op is linear in the pixels (away from clipping), so the
    tape's directional derivative must equal the finite difference."""
    x = images() * 0.05                     # small values: nothing is clipped
    d = tf.random.stateless_normal(x.shape, [1, 2])
    wts = tf.random.stateless_normal(x.shape, [1, 3])
    f = lambda v: tf.reduce_sum(A.augment(v, 1.0, SEED, ops=[op]) * wts)  # noqa: E731
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    g = tape.gradient(y, x)
    assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0
    eps = 1e-2
    fd = (f(x + eps * d) - f(x - eps * d)) / (2 * eps)
    assert float(tf.reduce_sum(g * d)) == pytest.approx(float(fd), rel=2e-3, abs=2e-3)
    assert float(tf.reduce_max(tf.abs(A.augment(x, 1.0, SEED, ops=[op]) - x))) > 1e-3   # it did something


@pytest.mark.parametrize("pipeline", ["bgc", "bgcc"])
def test_outputs_stay_in_range(pipeline):
    ops = A.PIPELINES[pipeline]
    y = A.augment(images(16), 1.0, SEED, ops)
    assert float(tf.reduce_min(y)) >= -1.0 and float(tf.reduce_max(y)) <= 1.0
    u = tf.cast(images(16, lo=0, hi=256), tf.uint8)
    yu = A.augment(u, 1.0, SEED, ops, value_range=(0, 255))
    assert yu.dtype == tf.uint8 and int(tf.reduce_max(tf.abs(tf.cast(yu, tf.int32) - tf.cast(u, tf.int32)))) > 0
    f = images(16, lo=0.0, hi=255.0)
    yf = A.augment(f, 1.0, SEED, ops, value_range=(0, 255))
    assert float(tf.reduce_min(yf)) >= 0.0 and float(tf.reduce_max(yf)) <= 255.0


def test_p0_is_the_identity():
    x = images()
    np.testing.assert_array_equal(A.augment(x, 0.0, SEED, A.PIPELINES["bgcc"]).numpy(), x.numpy())
    u = tf.cast(images(lo=0, hi=256), tf.uint8)
    np.testing.assert_array_equal(A.augment(u, 0.0, SEED, A.PIPELINES["bgcc"], (0, 255)).numpy(), u.numpy())
    assert A.AdaptiveAugment("none")(x, SEED) is x


def test_blit_ops_are_exact_pixel_permutations():
    x = images(8).numpy()
    for op, candidates in [("xflip", lambda a: [a, a[:, ::-1]]),
                           ("rotate90", lambda a: [np.rot90(a, k, axes=(0, 1)) for k in range(4)])]:
        y = A.augment(x, 1.0, SEED, ops=[op]).numpy()
        for i in range(8):
            assert min(np.abs(c - y[i]).max() for c in candidates(x[i])) == 0.0, op
    y = A.augment(x, 1.0, SEED, ops=["xint"]).numpy()
    for i in range(8):    # an integer shift: some interior window matches exactly
        found = any(np.array_equal(y[i, 4:12, 4:12], x[i, 4 + dy:12 + dy, 4 + dx:12 + dx])
                    for dy in range(-2, 3) for dx in range(-2, 3))
        assert found


def test_colour_ops_keep_or_flip_luma_as_specified():
    x = images(8) * 0.05
    luma = lambda a: tf.reduce_mean(a, axis=-1).numpy()  # noqa: E731  (projection on (1,1,1))
    for op in ("hue", "saturation"):        # act only orthogonally to the luma axis
        np.testing.assert_allclose(luma(A.augment(x, 1.0, SEED, [op])), luma(x), atol=1e-5)
    gray = tf.tile(x[..., :1], [1, 1, 1, 3])
    np.testing.assert_allclose(A.augment(gray, 1.0, SEED, ["hue"]), gray, atol=1e-5)  # gray is on the axis
    y = A.augment(gray, 1.0, SEED, ["lumaflip"]).numpy()
    for i in range(8):                      # gray pixels are negated or kept
        assert min(np.abs(y[i] - gray[i]).max(), np.abs(y[i] + gray[i]).max()) < 1e-5
    yb = A.augment(x, 1.0, SEED, ["brightness"]).numpy() - x.numpy()
    assert np.allclose(yb, yb[:, :1, :1, :1], atol=1e-5)               # one offset per image


def test_replica_slice_gets_the_global_batchs_parameters():
    x = images(8)
    full = A.augment(x, 0.7, SEED, A.PIPELINES["bgcc"])
    part = A.augment(x[4:6], 0.7, SEED, A.PIPELINES["bgcc"], rows=(8, 4))
    np.testing.assert_allclose(part, full[4:6], atol=1e-6)


def test_diffaugment_policies_and_validation():
    assert A.policy_ops("color,translation,cutout") == ("brightness", "saturation", "contrast", "xint", "cutout")
    x = images()
    np.testing.assert_array_equal(A.diffaugment(x, SEED, "translation"), A.augment(x, 1.0, SEED, ["xint"]))
    ada = A.AdaptiveAugment("diffaugment", policy="color")
    assert float(ada.p) == 1.0 and ada.ops == ("brightness", "saturation", "contrast")
    with pytest.raises(ValueError, match="policy"):
        A.policy_ops("colour")
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.augment(x, 1.0, SEED, ["blur"])
    with pytest.raises(ValueError, match="mode"):
        A.AdaptiveAugment("adaptive")


def test_adjust_p_and_controller_bookkeeping(tmp_path):
    # ADA §3: one update moves p by batch * interval / speed in the direction of r_t - target
    assert float(A.adjust_p(0.3, 0.9, 0.6, 64, 640)) == pytest.approx(0.4)
    assert float(A.adjust_p(0.3, 0.1, 0.6, 64, 640)) == pytest.approx(0.2)
    assert float(A.adjust_p(0.05, 0.1, 0.6, 64, 640)) == 0.0
    ada = A.AdaptiveAugment("ada", interval=4, speed_images=160)
    for logits in ([[1.0], [2.0]], [[1.0], [-1.0]], [[3.0], [1.0]]):
        ada.observe(*A.sign_stats(tf.constant(logits)), global_batch=2)
    assert float(ada.p) == 0.0 and float(ada.count) == 6.0              # no update before 4 minibatches
    ada.observe(*A.sign_stats(tf.constant([[1.0], [1.0]])), global_batch=2)
    assert float(ada.rt) == pytest.approx(6 / 8)                        # (2 + 0 + 2 + 2) / 8
    assert float(ada.p) == pytest.approx(2 * 4 / 160) and float(ada.count) == 0.0
    ada.observe(*A.sign_stats(tf.constant([[1.0], [-1.0]])), global_batch=2)
    path = tf.train.Checkpoint(ada=ada).write(str(tmp_path / "ada"))
    back = A.AdaptiveAugment("ada", interval=4, speed_images=160)
    tf.train.Checkpoint(ada=back).read(path).assert_consumed()
    for v in ("p", "rt", "sign_sum", "count", "minibatches"):
        assert getattr(back, v).numpy() == getattr(ada, v).numpy(), v
    fixed = A.AdaptiveAugment("fixed", p=0.25, interval=1)
    fixed.observe(*A.sign_stats(tf.constant([[1.0], [1.0]])), global_batch=2)
    assert float(fixed.p) == 0.25 and float(fixed.rt) == 1.0
    assert set(ada.metrics()) == {"ada/p", "ada/rt"}


def _run_ada(overfit: bool, p0: float, steps: int = 120):
    """A tiny D trained (non-saturating loss) on augmented reals vs augmented fakes. The fakes come
    from the real distribution (a perfect G), so D can only win by memorising its reals: with a
    fixed set of 16 reals it overfits; with fresh reals every step it cannot."""
    tf.keras.utils.set_random_seed(0)
    size, batch = 8, 16
    D = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Dense(128, activation="relu"),
                             tf.keras.layers.Dense(1)])
    D.build([None, size, size, 3])
    opt = tf.keras.optimizers.Adam(3e-3)
    ada = A.AdaptiveAugment("ada", p=p0, interval=4, speed_images=batch * 4 / 0.02)   # 0.02 per update
    fixed_reals = images(batch, size, seed=100)

    @tf.function
    def step(i):
        reals = fixed_reals if overfit else images(batch, size, seed=1000 + i)
        fakes = tf.random.stateless_uniform([batch, size, size, 3], [i, 7], -1.0, 1.0)
        r_aug = ada(reals, tf.stack([i, 1]))
        f_aug = ada(fakes, tf.stack([i, 2]))
        with tf.GradientTape() as tape:
            r, f = D(r_aug), D(f_aug)
            loss = tf.reduce_mean(tf.nn.softplus(-r) + tf.nn.softplus(f))
        opt.apply_gradients(zip(tape.gradient(loss, D.trainable_variables), D.trainable_variables))
        return A.sign_stats(r)

    rts = []
    for i in range(steps):
        ada.observe(*step(tf.constant(i)), global_batch=batch)
        if (i + 1) % 4 == 0:
            rts.append(float(ada.rt))
    return float(ada.p), rts


def test_p_rises_when_d_overfits_and_falls_when_it_does_not():
    p, rts = _run_ada(overfit=True, p0=0.0)
    assert np.mean(rts[1:5]) > 0.7, rts                 # memorised 16 reals: r_t well above 0.6
    assert p >= 0.06, (p, rts)                          # p went up (>= 3 net updates of 0.02) ...
    assert abs(np.mean(rts[10:]) - 0.6) < 0.15, rts     # ... and holds r_t near the target
    p, rts = _run_ada(overfit=False, p0=0.5)
    assert np.mean(rts) < 0.3, rts                      # no memorisation possible
    assert p <= 0.1, (p, rts)                           # p fell from 0.5


def test_observe_works_inside_tf_function():
    ada = A.AdaptiveAugment("ada", interval=2, speed_images=40)       # 2 * 2 / 40 = 0.1 per update
    f = tf.function(lambda logits: ada.observe(*A.sign_stats(logits), global_batch=2))
    ps = [float(f(tf.constant([[1.0], [1.0]]))) for _ in range(4)]
    assert ps == pytest.approx([0.0, 0.1, 0.1, 0.2]) and float(ada.rt) == 1.0
