"""FID, KID and IS distances against independent numpy/scipy references and TF-GAN (no TFX)."""
import numpy as np
import pytest
import scipy.linalg

from facegan.metrics.fid import MomentAccumulator, frechet_distance, frechet_distance_from_activations
from facegan.metrics.inception_score import inception_score_from_logits
from facegan.metrics.kid import kernel_distance, mmd2_unbiased


def ref_fid(a, b):
    """Textbook FID: np.cov (ddof=1) + scipy.linalg.sqrtm of the product (pytorch-fid style)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_independent_scipy_reference_to_1e6(rng):
    a = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    b = rng.normal(0.3, 1.2, size=(300, 32)) @ rng.normal(size=(32, 32))
    ours, ref = frechet_distance_from_activations(a, b), ref_fid(a, b)
    assert ref > 1.0
    assert abs(ours - ref) / ref < 1e-6


def test_fid_streaming_in_batches_equals_one_shot(rng):
    a = rng.normal(5.0, 2.0, size=(257, 16))   # large offset: the shift keeps float64 sums exact
    acc = MomentAccumulator(257)
    for i in range(0, 257, 50):
        acc.add(None, {"pool": a[i:i + 50]})
    r = acc.result()
    np.testing.assert_allclose(r["mu"], a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(r["sigma"], np.cov(a, rowvar=False), rtol=1e-9, atol=1e-12)


def test_fid_matches_tfgan(rng):
    tfgan = pytest.importorskip("tensorflow_gan")
    a = rng.normal(size=(300, 24))
    b = rng.normal(0.2, 1.1, size=(300, 24))
    ref = float(tfgan.eval.frechet_classifier_distance_from_activations(a, b))
    assert abs(frechet_distance_from_activations(a, b) - ref) / ref < 1e-6


def test_fid_two_gaussians_analytic(rng):
    # N(m1, diag(v1)) vs N(m2, diag(v2)): FD = |m1-m2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    d = 6
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    analytic = ((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    # exact parameters (rotated, so covariances are not diagonal in the basis used)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1, s2 = q @ np.diag(v1) @ q.T, q @ np.diag(v2) @ q.T
    assert frechet_distance(q @ m1, s1, q @ m2, s2) == pytest.approx(analytic, rel=1e-9)
    # and from samples: converges to the analytic value
    x = rng.normal(size=(200_000, d)) * np.sqrt(v1) + m1
    y = rng.normal(size=(200_000, d)) * np.sqrt(v2) + m2
    assert frechet_distance_from_activations(x, y) == pytest.approx(analytic, rel=0.02, abs=0.01)


def test_fid_identical_sets_is_zero(rng):
    a = rng.normal(size=(500, 64))
    assert abs(frechet_distance_from_activations(a, a.copy())) < 1e-8
    assert frechet_distance_from_activations(a, a + 1.0) == pytest.approx(64.0, rel=1e-8)


def ref_mmd2_unbiased(x, y):
    """Double loops over pairs, straight from Binkowski et al. eq. (3)."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_matches_loop_reference(rng):
    x = rng.normal(size=(15, 5)).astype(np.float32)
    y = rng.normal(0.5, 1.0, size=(12, 5)).astype(np.float32)
    assert mmd2_unbiased(x, y) == pytest.approx(ref_mmd2_unbiased(x.astype(np.float64), y.astype(np.float64)),
                                                rel=1e-5)


def test_kid_matches_tfgan_single_block(rng):
    tfgan = pytest.importorskip("tensorflow_gan")
    import tensorflow as tf
    x = rng.normal(size=(200, 16)).astype(np.float32)
    y = rng.normal(0.3, 1.0, size=(200, 16)).astype(np.float32)
    ref, _ = tfgan.eval.kernel_classifier_distance_and_std_from_activations(
        tf.constant(x, tf.float64), tf.constant(y, tf.float64), max_block_size=1000)
    ours = kernel_distance(x, y, num_subsets=1, subset_size=200)["mean"]
    assert ours == pytest.approx(float(ref), rel=1e-5)


def test_kid_unbiased_zero_in_expectation_and_positive_for_different(rng):
    d = 8
    ests, biased = [], []
    for _ in range(300):
        x, y = rng.normal(size=(20, d)), rng.normal(size=(20, d))
        ests.append(mmd2_unbiased(x, y))
        k = lambda a, b: (a @ b.T / d + 1) ** 3
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())   # V-statistic
    ests, biased = np.array(ests), np.array(biased)
    se = ests.std(ddof=1) / np.sqrt(len(ests))
    assert abs(ests.mean()) < 3 * se                     # unbiased: expectation 0
    assert biased.mean() > 10 * se                       # the biased estimator is visibly not
    x, y = rng.normal(size=(400, d)), rng.normal(size=(400, d))
    same = kernel_distance(x, y, num_subsets=20, subset_size=100)
    diff = kernel_distance(x, rng.normal(0.7, 1.0, size=(400, d)), num_subsets=20, subset_size=100)
    assert abs(same["mean"]) < 3 * same["std"] / np.sqrt(20) + 1e-3
    assert diff["mean"] > 10 * abs(same["mean"]) and diff["mean"] > 3 * diff["stderr"]
    assert same["std"] > 0 and same["num_subsets"] == 20 and same["subset_size"] == 100


def test_kid_identical_sets_near_zero(rng):
    x = rng.normal(size=(300, 16))
    r = kernel_distance(x, x.copy(), num_subsets=10, subset_size=100)
    assert abs(r["mean"]) < 0.05 * kernel_distance(x, x + 0.5, num_subsets=10, subset_size=100)["mean"]


def ref_inception_score(logits, splits):
    scores, n = [], len(logits)
    for i in range(splits):  # the original code's split boundaries
        part = np.asarray(logits, np.float64)[i * n // splits:(i + 1) * n // splits]
        p = np.exp(part - part.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        py = p.mean(0)
        kl = (p * (np.log(p + 1e-300) - np.log(py + 1e-300))).sum(1)
        scores.append(np.exp(kl.mean()))
    return np.mean(scores), np.std(scores)


def test_inception_score_hand_made_logits(rng):
    assert inception_score_from_logits(np.zeros((100, 7)))["mean"] == pytest.approx(1.0, abs=1e-12)
    k = 5
    onehot = np.full((10 * k * 4, 50), -1e4)
    onehot[np.arange(len(onehot)), np.arange(len(onehot)) % k] = 0.0     # k classes in every split
    r = inception_score_from_logits(onehot)
    assert r["mean"] == pytest.approx(k, rel=1e-9) and r["std"] == pytest.approx(0, abs=1e-9)
    assert r["splits"] == 10
    logits = rng.normal(0, 3, size=(103, 20))
    mean, std = ref_inception_score(logits, 10)
    ours = inception_score_from_logits(logits)
    assert ours["mean"] == pytest.approx(mean, rel=1e-9) and ours["std"] == pytest.approx(std, rel=1e-7)


def test_inception_score_streamed_across_split_boundaries(rng):
    from facegan.metrics.inception_score import SplitLogitsAccumulator, score_from_sums
    logits = rng.normal(0, 3, size=(211, 12))
    acc = SplitLogitsAccumulator(200)
    for i in range(0, 211, 37):                 # batches straddle splits; extra images ignored
        acc.add(None, {"logits": logits[i:i + 37]})
    mean, std = ref_inception_score(logits[:200], 10)
    r = score_from_sums(**acc.result())
    assert r["mean"] == pytest.approx(mean, rel=1e-9) and r["std"] == pytest.approx(std, rel=1e-7)


def test_inception_score_matches_tfgan_one_split(rng):
    tfgan = pytest.importorskip("tensorflow_gan")
    logits = rng.normal(0, 2, size=(64, 30))
    ref = float(tfgan.eval.classifier_score_from_logits(logits))
    assert inception_score_from_logits(logits, splits=1)["mean"] == pytest.approx(ref, rel=1e-9)
