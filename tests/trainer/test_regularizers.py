"""Tricks and regularizers against numpy re-derivations."""
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer import regularizers as R


def test_feature_matching_loss():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum()
    assert R.feature_matching_loss(a, b).numpy() == pytest.approx(expected, rel=1e-5)
    assert R.feature_matching_loss(a, a).numpy() == pytest.approx(0.0, abs=1e-7)
    # trains G only: no gradient flows into the real features
    ra, fb = tf.Variable(a), tf.Variable(b)
    with tf.GradientTape() as t:
        loss = R.feature_matching_loss(ra, fb)
    ga, gb = t.gradient(loss, [ra, fb])
    assert ga is None or not np.any(ga.numpy())
    np.testing.assert_allclose(gb.numpy(), np.tile(-2 * (a.mean(0) - b.mean(0)) / 6, (6, 1)), rtol=1e-4, atol=1e-6)


def test_minibatch_discrimination_matches_numpy():
    rng = np.random.default_rng(1)
    n, a, B, Cd = 5, 7, 4, 3
    f = rng.normal(size=(n, a)).astype(np.float32)
    layer = R.MinibatchDiscrimination(B, Cd)
    out = layer(f).numpy()
    T = layer.T.numpy()
    M = (f @ T).reshape(n, B, Cd)
    o = np.zeros((n, B))
    for i, j in itertools.product(range(n), range(n)):
        o[i] += np.exp(-np.abs(M[i] - M[j]).sum(-1))
    assert out.shape == (n, a + B)
    np.testing.assert_allclose(out[:, :a], f)
    np.testing.assert_allclose(out[:, a:], o, rtol=1e-5)
    # identical examples: every c_b = 1, so o = n
    same = layer(np.repeat(f[:1], 3, axis=0)).numpy()
    np.testing.assert_allclose(same[:, a:], 3.0, rtol=1e-6)


def _np_mbstd(x, g, extra):
    n = x.shape[0]
    y = x.reshape(g, n // g, *x.shape[1:]).astype(np.float64)
    y = y - y.mean(0, keepdims=True)
    sd = np.sqrt((y ** 2).mean(0) + 1e-8)
    stats = [sd.mean(axis=(1, 2, 3))]
    if extra:
        stats.append(((y ** 3).mean(0) / sd ** 3).mean(axis=(1, 2, 3)))
        stats.append(((y ** 4).mean(0) / sd ** 4).mean(axis=(1, 2, 3)))
    st = np.stack(stats, -1)                      # [M, S]
    return np.concatenate([x, np.broadcast_to(st[np.arange(n) % (n // g)][:, None, None, :],
                                              (n, *x.shape[1:3], st.shape[1]))], axis=-1)


@pytest.mark.parametrize("n,extra", [(8, False), (8, True), (6, False), (4, True)])
def test_minibatch_stddev_matches_numpy(n, extra):
    x = np.random.default_rng(n).normal(size=(n, 3, 3, 5)).astype(np.float32) * 2 + 1
    got = R.minibatch_stddev(tf.constant(x), group_size=4, extra_stats=extra).numpy()
    g = 4 if n % 4 == 0 else 3                    # N = 6: largest group size <= 4 dividing it
    expected = _np_mbstd(x, g, extra)
    assert got.shape == (n, 3, 3, 5 + (3 if extra else 1))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # unknown batch size at trace time (dynamic group size) and XLA give the same values
    dyn = tf.function(lambda t: R.minibatch_stddev(t, 4, extra), input_signature=[tf.TensorSpec([None, 3, 3, 5])])
    np.testing.assert_allclose(dyn(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    xla = tf.function(lambda t: R.minibatch_stddev(t, 4, extra), jit_compile=True)
    np.testing.assert_allclose(xla(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_minibatch_stddev_known_values():
    # group of 4 with values a, a, b, b everywhere: std = |a - b| / 2, skew 0, kurtosis 1.
    x = np.array([1.0, 1.0, 3.0, 3.0], np.float32).reshape(4, 1, 1, 1) * np.ones((4, 2, 2, 2), np.float32)
    got = R.minibatch_stddev(x, 4, extra_stats=True).numpy()
    np.testing.assert_allclose(got[..., 2], 1.0, rtol=1e-5)
    np.testing.assert_allclose(got[..., 3], 0.0, atol=1e-5)
    np.testing.assert_allclose(got[..., 4], 1.0, rtol=1e-4)


def test_historical_averaging_arithmetic():
    v = [tf.Variable([1.0, 2.0]), tf.Variable([[3.0]])]
    ha = R.HistoricalAveraging(v)
    assert ha.loss(v).numpy() == 0.0                      # nothing seen yet
    history = []
    for step in range(3):
        history.append([x.numpy().copy() for x in v])
        ha.update(v)
        v[0].assign_add([1.0, -1.0])
        v[1].assign([[3.0 + 2 * (step + 1)]])
        mean = [np.mean([h[i] for h in history], axis=0) for i in range(2)]
        expected = sum(((x.numpy() - m) ** 2).sum() for x, m in zip(v, mean))
        assert ha.loss(v).numpy() == pytest.approx(expected, rel=1e-6)
    # after 3 updates: averages of [1,2],[2,1],[3,0] and 3,5,7
    np.testing.assert_allclose(ha.averages[0].numpy(), [2.0, 1.0])
    np.testing.assert_allclose(ha.averages[1].numpy(), [[5.0]])
    with pytest.raises(ValueError, match="tracks 2 variables"):
        ha.loss(v[:1])


def test_instance_noise_schedule():
    assert R.instance_noise_std(0, 0.2, 100) == pytest.approx(0.2)
    assert R.instance_noise_std(25, 0.2, 100) == pytest.approx(0.15)
    assert R.instance_noise_std(100, 0.2, 100) == 0.0
    assert R.instance_noise_std(500, 0.2, 100) == 0.0
    assert R.instance_noise_std(10, 0.2, 0) == 0.0
    assert float(R.instance_noise_std(tf.constant(50), 0.2, 100)) == pytest.approx(0.1)


def test_apply_instance_noise():
    x = tf.zeros([4, 16, 16, 3])
    a = R.apply_instance_noise(x, 0.5, tf.constant([1, 2])).numpy()
    b = R.apply_instance_noise(x, 0.5, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(a, b)                  # stateless seed -> deterministic
    assert a.std() == pytest.approx(0.5, rel=0.1) and abs(a.mean()) < 0.05
    c = R.apply_instance_noise(x, 0.5, tf.random.Generator.from_seed(3)).numpy()
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(R.apply_instance_noise(x + 1, 0.0, tf.constant([1, 2])).numpy(), 1.0)


def test_repelling_loss_matches_numpy():
    f = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
    n = f.shape[0]
    total = 0.0
    for i, j in itertools.product(range(n), range(n)):
        if i != j:
            total += (f[i] @ f[j] / (np.linalg.norm(f[i]) * np.linalg.norm(f[j]))) ** 2
    assert R.repelling_loss(f).numpy() == pytest.approx(total / (n * (n - 1)), rel=1e-4)
    # collapsed batch (all parallel) -> 1; orthogonal -> 0
    assert R.repelling_loss(np.tile(f[:1], (4, 1)) * np.arange(1, 5)[:, None]).numpy() == pytest.approx(1.0, rel=1e-5)
    assert R.repelling_loss(np.eye(4, dtype=np.float32)).numpy() == pytest.approx(0.0, abs=1e-7)
    assert R.repelling_loss(f.reshape(5, 2, 3)).numpy() == pytest.approx(total / (n * (n - 1)), rel=1e-4)


def test_minibatch_discrimination_under_mixed_precision():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = R.MinibatchDiscrimination(3, 2)
        out = layer(tf.ones([4, 5], tf.bfloat16))
        assert out.dtype == tf.bfloat16 and out.shape == (4, 8)
        assert math.isclose(float(out[0, -1]), 4.0, rel_tol=1e-2)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
