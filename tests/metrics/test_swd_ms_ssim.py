"""SWD (PGGAN protocol) and MS-SSIM against plain numpy/scipy references written here (no TFX)."""
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from facegan.metrics import swd as swd_lib
from facegan.metrics.registry import get_metric
from facegan.metrics.ms_ssim import PairsAccumulator, ms_ssim


def smooth_images(n, res, seed):
    """Random faces-like smooth images: blobs + fine texture (so every pyramid level has signal)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res] / (res - 1)
    out = []
    for _ in range(n):
        img = np.full((res, res, 3), 40.0)
        for _ in range(3):
            cy, cx, s = r.uniform(0.2, 0.8), r.uniform(0.2, 0.8), r.uniform(0.08, 0.3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            img += blob[..., None] * r.uniform(0, 200, 3)
        img += r.normal(0, 12, (res, res, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def blur(images, sigma):
    return np.clip(np.round(scipy.ndimage.gaussian_filter(images.astype(np.float64), (0, sigma, sigma, 0))),
                   0, 255).astype(np.uint8)


# -- SWD ------------------------------------------------------------------------------------------
_G = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256


def ref_pyramid(nhwc, levels):
    """PGGAN's scipy.ndimage pyramid, in NCHW as in their code."""
    x = np.float32(nhwc.transpose(0, 3, 1, 2))
    down = lambda m: scipy.ndimage.convolve(m, _G[None, None], mode="mirror")[:, :, ::2, ::2]

    def up(m):
        s = m.shape
        res = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), m.dtype)
        res[:, :, ::2, ::2] = m
        return scipy.ndimage.convolve(res, _G[None, None] * 4.0, mode="mirror")

    pyr = [x]
    for _ in range(1, levels):
        pyr.append(down(pyr[-1]))
        pyr[-2] = pyr[-2] - up(pyr[-1])
    return [p.transpose(0, 2, 3, 1) for p in pyr]


def test_laplacian_pyramid_matches_scipy_reference_and_reconstructs():
    imgs = smooth_images(3, 32, 0)
    assert swd_lib.pyramid_resolutions(32) == [32, 16]
    assert swd_lib.pyramid_resolutions(128) == [128, 64, 32, 16]
    ours = swd_lib.laplacian_pyramid(imgs, 3)
    ref = ref_pyramid(imgs, 3)
    assert [o.shape for o in ours] == [(3, 32, 32, 3), (3, 16, 16, 3), (3, 8, 8, 3)]
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(o, r, atol=2e-3)
    recon = ours[-1]
    for level in ours[-2::-1]:
        recon = swd_lib.pyr_up(recon) + level
    np.testing.assert_allclose(recon, imgs.astype(np.float32), atol=2e-3)


def test_descriptors_are_7x7_neighbourhoods_inside_the_image():
    level = np.arange(2 * 16 * 16 * 3, dtype=np.float32).reshape(2, 16, 16, 3)
    desc = swd_lib.sample_descriptors(level, np.random.default_rng(0), nhoods_per_image=5)
    assert desc.shape == (10, 147)
    # re-draw the same centres and cut the patches by plain slicing
    r = np.random.default_rng(0)
    ys, xs = r.integers(3, 13, size=10), r.integers(3, 13, size=10)
    for i in range(10):
        patch = level[i // 5, ys[i] - 3:ys[i] + 4, xs[i] - 3:xs[i] + 4]
        np.testing.assert_array_equal(desc[i], patch.reshape(-1))


def ref_sliced_wasserstein(a, b, rng, repeats, dirs_per_repeat):
    """PGGAN's finalize_descriptors + sliced_wasserstein (per-channel normalisation, sorted projections)."""
    def finalize(d):
        d = d.reshape(len(d), 49, 3).astype(np.float64)
        d = (d - d.mean(axis=(0, 1))) / d.std(axis=(0, 1))
        return d.reshape(len(d), -1)

    a, b = finalize(a), finalize(b)
    results = []
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
        dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    return np.mean(results)


@pytest.mark.parametrize("radix_max", [swd_lib.RADIX_MAX, 64])
def test_sort_float32_orders_as_numpy(monkeypatch, radix_max):
    """SWD's radix sort gives np.sort's order: negatives, signed zeros, denormals, infinities,
    ties; rows longer than RADIX_MAX (64 here) take np.sort."""
    monkeypatch.setattr(swd_lib, "RADIX_MAX", radix_max)
    r = np.random.default_rng(5)
    rows = [(r.standard_normal(5000) * 1e3).astype(np.float32),
            np.float32([0.0, -0.0, 1, -1, np.inf, -np.inf, 1e-45, -1e-45, 5, 5, -5, 3.4e38, -3.4e38]),
            r.integers(-3, 3, 300).astype(np.float32), np.zeros(5, np.float32), np.float32([2.5])]
    for x in rows:
        y = x.copy()
        swd_lib.sort_float32(y)
        np.testing.assert_array_equal(y, np.sort(x))
        assert (np.diff(y.astype(np.float64)) >= 0).all()
    y = np.float32([0.0, -0.0, 0.0, -0.0])
    swd_lib.sort_float32(y)    # the radix key puts -0.0 before +0.0
    assert np.signbit(y).tolist() == ([True, True, False, False] if radix_max > 4 else np.signbit(np.sort(y)).tolist())


@pytest.mark.parametrize("spill", [False, True])
def test_sliced_wasserstein_matches_reference(spill):
    r = np.random.default_rng(1)
    a = (r.normal(size=(3000, 147)) * 5 + 2).astype(np.float32)
    b = (r.normal(size=(3000, 147)) * 6 - 1 + r.standard_t(3, size=(3000, 147))).astype(np.float32)
    stores = []
    for d in (a, b):
        s = swd_lib.DescriptorStore(len(d), 147, spill_bytes=0 if spill else 1 << 30)
        s.append(d[:1000], 3)
        s.append(d[1000:], 3)
        stores.append(s)
    # small work budget: directions processed in chunks, as for millions of descriptors
    ours = swd_lib.sliced_wasserstein(stores[0], stores[1], np.random.default_rng(7), 2, 16,
                                      work_bytes=3000 * 4 * 2 * 5)
    ref = ref_sliced_wasserstein(a, b, np.random.default_rng(7), 2, 16)
    assert ref > 0.01
    assert ours == pytest.approx(ref, rel=1e-4)
    for s in stores:
        s.close()


def _swd(a, b, seed=0):
    from facegan.metrics import evaluate
    return evaluate(["swd"], a, b, num_images=len(a), progress=False, seed=seed)[f"swd{len(a)}"]


def test_swd_grows_with_blur():
    real = smooth_images(48, 32, 3)
    same = _swd(real.copy(), real)
    assert set(same["per_level"]) == {"32", "16"} and same["scale"] == "x1e3"
    import json
    assert json.loads(json.dumps(same)) == same
    other = _swd(smooth_images(48, 32, 4), real)       # same distribution, other images
    blurred = [_swd(blur(real, s), real) for s in (0.6, 1.2, 2.4)]
    avgs = [b["avg"] for b in blurred]
    assert avgs[0] < avgs[1] < avgs[2], avgs
    assert same["avg"] < other["avg"] < avgs[1], (same, other, avgs)
    # the finest level reacts most to blur
    assert blurred[2]["per_level"]["32"] > 3 * other["per_level"]["32"]


def ref_swd_levels(a, b, pos_rng_a, pos_rng_b, dir_rng, levels, nhoods=128):
    """Plain PGGAN SWD per level: scipy pyramid, slicing per centre, the reference finalize/sort."""
    out = []
    for la, lb in zip(ref_pyramid(a, levels), ref_pyramid(b, levels)):
        descs = []
        for level, rng in ((la, pos_rng_a), (lb, pos_rng_b)):
            n, h, w, _ = level.shape
            ys, xs = rng.integers(3, h - 3, size=n * nhoods), rng.integers(3, w - 3, size=n * nhoods)
            descs.append(np.stack([level[i // nhoods, y - 3:y + 4, x - 3:x + 4].reshape(-1)
                                   for i, (y, x) in enumerate(zip(ys, xs))]))
        out.append(ref_sliced_wasserstein(descs[1], descs[0], dir_rng, 4, 128) * 1e3)  # (real, generated)
    return out


def test_swd_sides_draw_positions_independently_by_default():
    """PGGAN draws each set's neighbourhoods at its own random positions (issue 14)."""
    imgs = smooth_images(6, 16, 9)
    seeds = {role: swd_lib.position_seed(0, role) for role in swd_lib.ROLES}
    assert seeds["generated"] != seeds["real"]
    assert swd_lib.position_seed(0, "real", True) == swd_lib.position_seed(0, "generated", True)
    with pytest.raises(ValueError, match="role"):
        swd_lib.position_seed(0, "fake")
    metric = get_metric("swd")   # the registered implementation (spec attached)
    assert metric.shared_positions is False and metric.protocol(6)["positions"] == "independent"
    accs = {role: metric.accumulator(6, role, seed=0) for role in swd_lib.ROLES}
    for acc in accs.values():
        acc.add(imgs, None)
    # the same images, cut at other positions: the two descriptor sets differ
    g, r = (accs[k].stores[0].data for k in swd_lib.ROLES)
    assert g.shape == r.shape and not np.array_equal(g, r)


def test_swd_identical_sets_positive_under_protocol_zero_with_shared_positions():
    imgs = smooth_images(8, 32, 11)
    protocol = swd_lib.swd_of_images(imgs, imgs.copy(), seed=3)
    ref = ref_swd_levels(imgs, imgs,
                         np.random.default_rng(swd_lib.position_seed(3, "generated")),
                         np.random.default_rng(swd_lib.position_seed(3, "real")),
                         np.random.default_rng([3, 2]), levels=2)
    assert min(ref) > 0                                   # different positions: a positive floor
    np.testing.assert_allclose([protocol["per_level"][k] for k in ("32", "16")], ref, rtol=1e-3)
    shared = swd_lib.swd_of_images(imgs, imgs.copy(), seed=3, shared_positions=True)
    assert shared["avg"] == 0.0 and all(v == 0.0 for v in shared["per_level"].values())
    # a different image set under shared positions agrees with the reference too
    other = smooth_images(8, 32, 12)
    ref_other = ref_swd_levels(other, imgs, np.random.default_rng(swd_lib.position_seed(3, "real", True)),
                               np.random.default_rng(swd_lib.position_seed(3, "real", True)),
                               np.random.default_rng([3, 2]), levels=2)
    got = swd_lib.swd_of_images(other, imgs, seed=3, shared_positions=True)
    np.testing.assert_allclose([got["per_level"][k] for k in ("32", "16")], ref_other, rtol=1e-3)


def test_swd_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="one size"):
        _swd(smooth_images(4, 32, 0), smooth_images(4, 16, 0))


# -- MS-SSIM ----------------------------------------------------------------------------------------
def ref_msssim_pggan(img1, img2):
    """Plain numpy/scipy PGGAN MS-SSIM (fftconvolve 'valid', filter shrunk to the image)."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    im1, im2 = img1.astype(np.float64), img2.astype(np.float64)
    mssim, mcs = [], []
    for _ in range(5):
        _, h, w, _ = im1.shape
        size = min(11, h, w)
        sigma = size * 1.5 / 11
        x, y = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
        g = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
        win = (g / g.sum()).reshape(1, size, size, 1)
        f = lambda z: scipy.signal.fftconvolve(z, win, mode="valid")
        mu1, mu2 = f(im1), f(im2)
        s11, s22, s12 = f(im1 * im1) - mu1 ** 2, f(im2 * im2) - mu2 ** 2, f(im1 * im2) - mu1 * mu2
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        v1, v2 = 2 * s12 + c2, s11 + s22 + c2
        mssim.append(np.mean((2 * mu1 * mu2 + c1) * v1 / ((mu1 ** 2 + mu2 ** 2 + c1) * v2), axis=(1, 2, 3)))
        mcs.append(np.mean(v1 / v2, axis=(1, 2, 3)))
        im1 = (im1[:, 0::2, 0::2] + im1[:, 1::2, 0::2] + im1[:, 0::2, 1::2] + im1[:, 1::2, 1::2]) / 4
        im2 = (im2[:, 0::2, 0::2] + im2[:, 1::2, 0::2] + im2[:, 0::2, 1::2] + im2[:, 1::2, 1::2]) / 4
    mssim, mcs = np.clip(mssim, 0, None), np.clip(mcs, 0, None)
    return np.prod(mcs[:-1] ** weights[:-1, None], axis=0) * mssim[-1] ** weights[-1]


def test_ms_ssim_identical_is_one_and_matches_pggan_reference():
    a, b = smooth_images(4, 128, 5), smooth_images(4, 128, 6)
    np.testing.assert_allclose(ms_ssim(a, a), 1.0, atol=1e-5)
    ours, ref = ms_ssim(a, b), ref_msssim_pggan(a, b)
    assert (ref < 0.9).all() and (ref > 0.01).all()
    np.testing.assert_allclose(ours, ref, rtol=2e-4)
    # noisy copies sit in between
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(ms_ssim(a, noisy), ref_msssim_pggan(a, noisy), rtol=2e-4)
    assert (ms_ssim(a, noisy) > ours).all()


def test_ms_ssim_chunks_pads_and_shrunk_filters_match_reference():
    """More pairs than one compiled chunk (threads + a padded tail), 48px: 11/11/11/6/3-tap filters."""
    from facegan.metrics.ms_ssim import CHUNK
    n = 2 * CHUNK + 3
    a, b = smooth_images(n, 48, 7), smooth_images(n, 48, 8)
    b[:4] = a[:4]                                     # identical pairs among them
    ours, ref = ms_ssim(a, b), ref_msssim_pggan(a, b)
    np.testing.assert_allclose(ours[:4], 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, ref, rtol=2e-4)
    np.testing.assert_allclose(ms_ssim(a[5:6], b[5:6]), ours[5:6], rtol=1e-6)   # padding changes nothing


def test_tf_ssim_multiscale_refuses_128_where_pggan_variant_works():
    tf = pytest.importorskip("tensorflow")
    a = smooth_images(2, 128, 1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.image.ssim_multiscale(a.astype(np.float32), a[::-1].astype(np.float32), 255.0)
    assert np.isfinite(ms_ssim(a, a[::-1])).all()


def test_pairs_accumulator_streams_consecutive_pairs_across_odd_batches():
    imgs = smooth_images(10, 128, 2)
    acc = PairsAccumulator(5)
    for chunk in (imgs[:3], imgs[3:4], imgs[4:9], imgs[9:]):
        acc.add(chunk, None)
    r = acc.result()
    assert int(r["pairs"]) == 5
    assert float(r["mean"]) == pytest.approx(ref_msssim_pggan(imgs[0::2], imgs[1::2]).mean(), rel=2e-4)


def test_ms_ssim_compile_prints_no_native_noise_when_quiet(tmp_path):
    """XLA's first compile prints absl's pre-InitializeLog warning on fd 2, which no environment
    variable mutes: quiet mode silences it around the compile; --verbose (noise.verbose) keeps it."""
    import subprocess
    import sys
    script = ("import sys\nfrom facegan import noise\n"
              "noise.quiet() if sys.argv[1] == 'quiet' else noise.verbose()\n"
              "import numpy as np\nfrom facegan.metrics.ms_ssim import ms_ssim\n"
              "a = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)\n"
              "print(float(ms_ssim(a, a).mean()))\n")
    # both processes at once: their TensorFlow start-ups overlap
    procs = {mode: subprocess.Popen([sys.executable, "-c", script, mode], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=tmp_path) for mode in ("quiet", "verbose")}
    runs = {}
    try:
        for mode, p in procs.items():
            out, err = p.communicate(timeout=300)
            runs[mode] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    for mode, run in runs.items():
        assert run.returncode == 0, run.stderr
        assert abs(float(run.stdout.strip().splitlines()[-1]) - 1.0) < 1e-5   # identical pairs: 1
    assert "InitializeLog" not in runs["quiet"].stderr
    assert "InitializeLog" in runs["verbose"].stderr
