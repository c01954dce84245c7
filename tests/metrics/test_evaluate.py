"""evaluate(): registry validation, labelling, streaming, the real-statistics cache, the Inception
weights lookup and its error message, and the memorization check (no TFX; random extractors)."""
import os

import numpy as np
import pytest

from facegan import metrics
from facegan.metrics import METRICS, evaluate, memorization
from facegan.metrics import features as feat_lib
from facegan.metrics.fid import frechet_distance_from_activations
from facegan.metrics.kid import kernel_distance


def blobs(n, res=32, seed=0):
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res] / (res - 1)
    out = []
    for _ in range(n):
        cy, cx, s = r.uniform(0.3, 0.7), r.uniform(0.3, 0.7), r.uniform(0.1, 0.35)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        img = blob[..., None] * r.uniform(0, 255, 3) + (1 - blob[..., None]) * 40 + r.normal(0, 6, (res, res, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def batches(images, bs=16):
    return iter([images[i:i + bs] for i in range(0, len(images), bs)])


def test_registry_names_and_unknown_metric_error():
    assert {"fid", "kid", "is", "swd", "ms_ssim"} <= set(METRICS)
    with pytest.raises(ValueError) as e:
        evaluate(["fid", "fld"], None, None, extractor="random_tiny")
    msg = str(e.value)
    assert "'fld'" in msg and all(n in msg for n in ("fid", "kid", "is", "swd", "ms_ssim"))
    with pytest.raises(ValueError, match="its own function"):
        metrics.validate_metric_names("fid,memorization")
    assert [r.label for r in metrics.validate_metric_names("fid, swd,fid")] == ["fid", "swd"]
    req = metrics.validate_metric_names("fid:downscale=64")[0]
    assert (req.name, dict(req.options), req.label) == ("fid", {"downscale": 64}, "fid:downscale=64")
    for bad, needle in (("swd:downscale=64", "swd accepts: none"), ("fid:downscale=x", "needs a int"),
                        ("fid:size=3", "bad option 'size=3'; fid accepts: downscale=N")):
        with pytest.raises(ValueError, match=needle):
            metrics.validate_metric_names(bad)


def test_register_metric_adds_a_streamed_metric():
    from facegan.metrics.base import Accumulator, Metric
    from facegan.metrics.registry import MetricSpec, register_metric

    class MeanAcc(Accumulator):
        needs_images = True

        def __init__(self, n):
            super().__init__(n)
            self.s = 0.0

        def add(self, images, features):
            images = images[: self.n - self.count]
            self.s += float(images.astype(np.float64).mean(axis=(1, 2, 3)).sum())
            self.count += len(images)

        def result(self):
            return {"mean": self.s / self.count}

    class MeanDiff(Metric):
        def accumulator(self, n, role, seed=0):
            return MeanAcc(n)

        def compute(self, g, r, seed=0):
            return g["mean"] - r["mean"]

    register_metric(MetricSpec("test_mean_diff", MeanDiff, "lower", None, "images",
                               frozenset({"max"}), 10))
    try:
        a, b = blobs(10, seed=1), blobs(12, seed=2)
        r = evaluate(["test_mean_diff"], a, batches(b), num_images=10, progress=False)
        assert r["test_mean_diff10"] == pytest.approx(a.mean() - b[:10].astype(np.float64).mean(), rel=1e-9)
    finally:
        METRICS.pop("test_mean_diff")


def test_random_extractor_labels_results_and_fid_matches_reference_on_its_features():
    gen, real = blobs(40, seed=1), blobs(50, seed=2)
    r = evaluate(["fid", "kid", "is"], lambda n: batches(gen, 16), batches(real, 16),
                 num_images={"fid": 40, "kid": 40, "is": 40}, extractor="random_tiny", progress=False)
    assert r["comparable"] is False and r["extractor"] == "random_tiny"
    assert {"fid40_random", "kid40_random", "is40_random"} <= set(r)
    assert not any(k in r for k in ("fid40", "kid40", "is40"))
    ext = feat_lib.get_extractor("random_tiny")
    fg, fr = ext(gen)["pool"], ext(real[:40])["pool"]
    ref = frechet_distance_from_activations(fg.astype(np.float64), fr.astype(np.float64))
    assert ref > 0 and abs(r["fid40_random"] - ref) / ref < 1e-6
    assert r["kid40_random"]["mean"] == pytest.approx(kernel_distance(fg, fr, 100, 1000)["mean"], rel=1e-6)
    assert r["protocols"]["fid40_random"]["num_real"] == 40
    import json
    assert json.loads(json.dumps(r)) == r          # plain JSON types only (metrics.json, MLMD)
    # identical sets: FID and KID about zero
    same = evaluate(["fid", "kid"], gen, gen.copy(), num_images=40, extractor="random_tiny", progress=False)
    assert abs(same["fid40_random"]) < 1e-5 * ref   # 40 samples, 128-d: singular covariances
    # (unbiased KID of a set against itself is slightly negative: the cross term keeps the diagonal)
    darker = evaluate(["kid"], gen // 2, gen, num_images=40, extractor="random_tiny", progress=False)
    assert abs(same["kid40_random"]["mean"]) < 0.05 * darker["kid40_random"]["mean"]


def test_all_metrics_in_one_pass_over_each_stream():
    gen, real = blobs(30, seed=1), blobs(30, seed=2)
    pulled = {"gen": 0, "real": 0, "calls": []}

    def counted(images, key):
        for i in range(0, len(images), 8):
            pulled[key] += len(images[i:i + 8])
            yield images[i:i + 8]

    def gen_factory(n):
        pulled["calls"].append(n)
        return counted(gen, "gen")

    r = evaluate(["fid", "kid", "is", "swd", "ms_ssim"], gen_factory, counted(real, "real"),
                 num_images={"fid": 20, "kid": 16, "is": 10, "swd": 12, "ms_ssim": 10},
                 extractor="random_tiny", progress=False)
    assert pulled["calls"] == [20]                      # hungriest metric: fid 20 = ms_ssim 2 x 10
    assert pulled["gen"] == 24 and pulled["real"] == 24   # batches of 8: stops after the 3rd
    assert {"fid20_random", "kid16_random", "is10_random", "swd12", "ms_ssim10_pairs"} <= set(r)
    assert r["protocols"]["swd12"]["num_real"] == 12 and r["protocols"]["kid16_random"]["num_real"] == 16
    assert r["swd12"]["num_images"] == 12 and r["ms_ssim10_pairs"]["real_pairs"] == 10


def test_bad_inputs_fail_clearly():
    gen = blobs(8)
    with pytest.raises(ValueError, match="uint8"):
        evaluate(["swd"], gen.astype(np.float32), gen, num_images=8, progress=False)
    with pytest.raises(ValueError, match="ended after 8 images.*swd16 needs 16"):
        evaluate(["swd"], gen, gen, num_images=16, progress=False)
    with pytest.raises(ValueError, match="need real_batches"):
        evaluate(["swd"], gen, None, num_images=8, progress=False)
    with pytest.raises(ValueError, match="unknown metric.*'fdi'"):
        evaluate(["swd"], gen, gen, num_images={"fdi": 8}, progress=False)


def test_real_statistics_cache_hit_and_misses(tmp_path):
    gen, real = blobs(24, seed=1), blobs(24, seed=2)
    kw = dict(num_images={"fid": 24, "ms_ssim": 4}, cache_dir=str(tmp_path), progress=False)
    calls = []

    def real_factory():
        calls.append(1)
        return batches(real, 8)

    r1 = evaluate(["fid", "ms_ssim"], gen, real_factory, extractor="random_tiny", **kw)
    assert r1["cache"] == {"fid": "miss", "ms_ssim": "miss"}
    n_files = len(os.listdir(tmp_path))
    assert n_files == 2
    r2 = evaluate(["fid", "ms_ssim"], gen, real_factory, extractor="random_tiny", **kw)
    assert r2["cache"] == {"fid": "hit", "ms_ssim": "hit"}
    assert r2["fid24_random"] == pytest.approx(r1["fid24_random"], rel=1e-12)
    assert r2["ms_ssim4_pairs"]["real"] == pytest.approx(r1["ms_ssim4_pairs"]["real"], rel=1e-12)
    # changed content (one pixel) -> miss; the streamed-content hash notices
    real2 = real.copy()
    real2[3, 5, 5, 0] ^= 1
    r3 = evaluate(["fid", "ms_ssim"], gen, lambda: batches(real2, 8), extractor="random_tiny", **kw)
    assert r3["cache"] == {"fid": "miss", "ms_ssim": "miss"}
    # changed extractor (other weights) -> FID misses, MS-SSIM (no extractor) still hits
    other = feat_lib.get_extractor("random_tiny", seed=1)
    r4 = evaluate(["fid", "ms_ssim"], gen, real_factory, extractor=other, **kw)
    assert r4["cache"] == {"fid": "miss", "ms_ssim": "hit"}
    # an explicit content key: hit without reading the real images at all
    r5 = evaluate(["fid"], gen, batches(real, 8), extractor="random_tiny", real_cache_key="split-v1",
             num_images=24, cache_dir=str(tmp_path), progress=False)
    assert r5["cache"] == {"fid": "miss"}
    r6 = evaluate(["fid"], gen, iter(()), extractor="random_tiny", real_cache_key="split-v1",
                  num_images=24, cache_dir=str(tmp_path), progress=False)
    assert r6["cache"] == {"fid": "hit"} and r6["fid24_random"] == pytest.approx(r1["fid24_random"], rel=1e-9)
    r7 = evaluate(["fid"], gen, batches(real2, 8), extractor="random_tiny", real_cache_key="split-v2",
                  num_images=24, cache_dir=str(tmp_path), progress=False)
    assert r7["cache"] == {"fid": "miss"}
    # a one-shot iterator without a key cannot be checked: caching is off, never stale
    r8 = evaluate(["fid"], gen, batches(real, 8), extractor="random_tiny", num_images=24,
                  cache_dir=str(tmp_path), progress=False)
    assert r8["cache"]["fid"].startswith("disabled")


@pytest.mark.parametrize("spill", [False, True])
def test_swd_real_side_held_for_the_run_gives_the_uncached_numbers(monkeypatch, spill):
    """SWD's real side (random neighbourhood positions from the seed) is too large for the npz
    cache; a RealMemo holds it between evaluations: the second call is a hit and every number
    equals recomputing it from the images (==, not approx), for each seed; a spilled (memmap)
    descriptor store stays readable while held and is removed when the memo closes."""
    from facegan.metrics import cache as cache_lib
    from facegan.metrics import swd as swd_lib
    if spill:
        monkeypatch.setattr(swd_lib.DescriptorStore.__init__, "__defaults__", (0,))   # spill_bytes
    gen1, gen2, real = blobs(12, seed=1), blobs(12, seed=3), blobs(12, seed=2)
    kw = dict(num_images=12, real_cache_key="split-v1", progress=False)
    memo = cache_lib.RealMemo()
    reads = []

    def real_once():
        reads.append(1)
        return batches(real, 8)

    for seed in (0, 5):
        for gen in (gen1, gen2):   # the generator changes between evaluations; the reals do not
            held = evaluate(["swd"], gen, real_once, seed=seed, real_memo=memo, **kw)
            fresh = evaluate(["swd"], gen, batches(real, 8), seed=seed, progress=False, num_images=12)
            assert held["swd12"] == fresh["swd12"], seed
            assert held["protocols"]["swd12"]["num_real"] == fresh["protocols"]["swd12"]["num_real"] == 12
            assert held["cache"] == {"swd": "miss (held in memory)" if gen is gen1 else "hit (memory)"}
    assert len(reads) == 2 and len(memo) == 2     # reals read once per seed (positions depend on it)
    stores = [s for key in list(memo._held) for s in memo.get(key)["stores"]]
    assert all((s.tmpdir is not None) == spill for s in stores)
    memo.close()
    assert len(memo) == 0 and all(s.tmpdir is None for s in stores)


def test_examples_split_key_tracks_file_content(tmp_path):
    import shutil
    from tests.testlib.examples import write_synthetic_examples
    from facegan.metrics.cache import examples_split_key
    a = write_synthetic_examples(str(tmp_path / "a"), n_train=2, n_eval=3, resolution=16, seed=0)
    c = write_synthetic_examples(str(tmp_path / "c"), n_train=2, n_eval=3, resolution=16, seed=1)
    copy = shutil.copytree(a, str(tmp_path / "copy"))
    key = examples_split_key(a, "eval")
    assert key == examples_split_key(a, "eval") == examples_split_key(copy, "eval")
    assert key != examples_split_key(c, "eval")
    assert key != examples_split_key(a, "train")
    f = os.path.join(copy, "Split-eval", os.listdir(os.path.join(copy, "Split-eval"))[0])
    with open(f, "r+b") as fh:          # one flipped byte -> another key
        fh.seek(40)
        b = fh.read(1)
        fh.seek(40)
        fh.write(bytes([b[0] ^ 1]))
    assert examples_split_key(copy, "eval") != key


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(feat_lib.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(url, dest, file_hash):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(feat_lib, "_download", offline)
    return tmp_path


def test_missing_inception_weights_error_says_how_to_provide_them(no_weights):
    gen = blobs(4)
    for names in (["fid"], ["kid"], ["is"]):
        with pytest.raises(metrics.WeightsUnavailableError) as e:
            evaluate(names, gen, gen, num_images=4, progress=False)
        msg = str(e.value)
        assert feat_lib.WEIGHTS_ENV in msg and feat_lib.INCEPTION_TOP_URL in msg
        assert "Name or service not known" in msg and "extractor='random'" in msg
    # metrics without an extractor still run
    assert "swd4" in evaluate(["swd"], gen, gen, num_images=4, progress=False)


def test_bad_weights_file_is_named(no_weights):
    bad = no_weights / "weights.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match=str(bad)):
        feat_lib.get_extractor(str(bad))
    with pytest.raises(metrics.WeightsUnavailableError, match="does not exist"):
        feat_lib.get_extractor(str(no_weights / "missing.h5"))


def test_memorization_flags_copies_and_writes_sheet(tmp_path):
    from facegan.images import decode_png
    train = blobs(40, seed=10)
    held_out = blobs(30, seed=11)
    novel = blobs(4, seed=12)
    gen = np.concatenate([train[[3, 17, 25, 38]], novel])
    res = memorization(gen, batches(train, 16), str(tmp_path / "sheet.png"), extractor="random_tiny",
                       reference_batches=batches(held_out, 16), k=2, progress=False)
    assert res["copies"][:4] == [True] * 4
    assert res["exact_copies"] == [True] * 4 + [False] * 4
    assert res["feature_nn_index"][:4] == [3, 17, 25, 38] and res["pixel_nn_index"][:4] == [3, 17, 25, 38]
    assert 0.5 <= res["score"] <= 0.75 and res["exact_copy_fraction"] == 0.5
    assert res["pixel_nn_rmse"][0] == 0.0 and min(res["pixel_nn_rmse"][4:]) > 4.0
    sheet = decode_png((tmp_path / "sheet.png").read_bytes())
    assert sheet.shape == (8 * 34 + 2, 6 * 34 + 2, 3)       # 8 rows x (gen + 2 + gap + 2), pad 2
    # first row: the generated copy, then its nearest neighbour = itself
    np.testing.assert_array_equal(sheet[2:34, 2:34], gen[0])
    np.testing.assert_array_equal(sheet[2:34, 36:68], train[3])
    no_ref = memorization(gen, batches(train, 16), None, extractor="random_tiny", progress=False)
    assert no_ref["score"] == 0.5 and "copy_fraction" not in no_ref
    capped = memorization(gen, batches(train, 16), None, extractor="random_tiny", max_train=20, progress=False)
    assert capped["num_train"] == 20 and capped["exact_copies"][:4] == [True, True, False, False]


def test_a_real_split_smaller_than_the_protocol_says_all_of_it_is_used(capsys):
    gen, real = blobs(16, seed=1), blobs(12, seed=2)
    r = evaluate(["swd"], gen, batches(real, 8), num_images=16, progress=True)
    err = capsys.readouterr().err
    assert "real: the stream holds 12 images, fewer than the 16 the protocol asks for at most; " \
           "all 12 are used" in err
    assert "generated: done, 16 images" in err
    assert r["protocols"]["swd16"]["num_real"] == 12


def write_tiny_fid_graph(path, dim=8, classes=5, size=11):
    """A frozen GraphDef shaped like the 2015 FID Inception graph (same node names, own resize and
    (x-128)/128 scaling inside the graph), with tiny random constant weights."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        img = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="Cast")
        x = tf.expand_dims(img, 0, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [size, size], name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        w = tf.constant(rng.standard_normal((3, 3, 3, dim)).astype(np.float32))
        x = tf.nn.relu(tf.nn.conv2d(x, w, 2, "SAME"))
        pool = tf.nn.avg_pool2d(x, ksize=int(x.shape[1]), strides=1, padding="VALID", name="pool_3")
        flat = tf.reshape(pool, [1, dim], name="pool_3/_reshape")   # batch 1, as in the 2015 graph
        wl = tf.constant(rng.standard_normal((dim, classes)).astype(np.float32))
        logits = tf.matmul(flat, wl, name="softmax/logits/MatMul")
        tf.nn.softmax(tf.nn.bias_add(logits, tf.ones([classes])), name="softmax")
    with open(path, "wb") as f:
        f.write(g.as_graph_def().SerializeToString())
    return g


def test_fid_inception_graph_from_a_path_batches_like_the_per_image_graph(tmp_path):
    import tensorflow as tf
    path = str(tmp_path / "classify_image_graph_def.pb")
    g = write_tiny_fid_graph(path)
    imgs = blobs(10, res=20, seed=3)
    # Reference: the graph run image by image in a TF1 session, fed where TTUR feeds it.
    with tf.compat.v1.Session(graph=g) as sess:
        ref = [sess.run(["pool_3:0", "softmax/logits/MatMul:0"], {"Cast:0": im.astype(np.float32)})
               for im in imgs]
    ref_pool = np.concatenate([p.reshape(1, -1) for p, _ in ref])
    ref_logits = np.concatenate([lg for _, lg in ref])
    ext = feat_lib.get_extractor(path, batch_size=2)          # batches of 2 (+1) through one graph
    out = ext(imgs)
    np.testing.assert_allclose(out["pool"], ref_pool, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["logits"], ref_logits, rtol=1e-5, atol=1e-5)   # no bias (IS code)
    assert ext.name == "inception2015" and ext.comparable and ext.has_logits and ext.dim == 8
    assert feat_lib.weights_fingerprint(path) in ext.fingerprint
    real = blobs(10, res=20, seed=4)
    r = evaluate(["fid", "is"], imgs, real, num_images=10, extractor=path, progress=False)
    assert r["comparable"] is True and {"fid10", "is10"} <= set(r)        # a real FID, no _random
    assert r["fid10"] == pytest.approx(frechet_distance_from_activations(
        ref_pool.astype(np.float64), ext(real)["pool"].astype(np.float64)), rel=1e-6)
    assert r["protocols"]["fid10"]["extractor_name"] == "inception2015"
    assert r["protocols"]["fid10"]["resize"] == feat_lib.GRAPH_RESIZE
    # A .pb without the FID graph's nodes is named, with what is missing.
    bad = tmp_path / "other.pb"
    bad.write_bytes(tf.Graph().as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match=r"other.pb lacks node\(s\) \['ExpandDims', 'pool_3'\]"):
        feat_lib.get_extractor(str(bad))
    (tmp_path / "junk.pb").write_bytes(b"\xff\xfe not a graph")
    with pytest.raises(ValueError, match="junk.pb is not a readable frozen GraphDef"):
        feat_lib.get_extractor(str(tmp_path / "junk.pb"))


def test_hdcgan_downscale_option_feeds_64px_views_and_labels_the_key():
    from PIL import Image
    gen, real = blobs(16, res=32, seed=1), blobs(16, res=32, seed=2)
    r = evaluate(["fid", "fid:downscale=8"], gen, real, num_images=16, extractor="random_tiny",
                 progress=False)
    assert {"fid16_random", "fid16_downscale8_random"} <= set(r)
    ext = feat_lib.get_extractor("random_tiny")

    def small(x):   # independent: PIL bicubic, image by image
        return np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.BICUBIC)) for im in x])

    ref = frechet_distance_from_activations(ext(small(gen))["pool"].astype(np.float64),
                                            ext(small(real))["pool"].astype(np.float64))
    assert r["fid16_downscale8_random"] == pytest.approx(ref, rel=1e-6)
    assert r["fid16_downscale8_random"] != pytest.approx(r["fid16_random"], rel=1e-3)
    p = r["protocols"]["fid16_downscale8_random"]
    assert p["request"] == "fid:downscale=8" and p["downscale"] == 8
    assert p["resize"].startswith("downscale to 8x8 (PIL bicubic), then tf.image.resize")


def _lfw_subset_uint8():
    from skimage.data import lfw_subset   # bundled with scikit-image: 100 faces, 100 non-faces
    x = (lfw_subset() * 255).round().astype(np.uint8)
    return np.repeat(x[..., None], 3, axis=-1)


def test_face_detection_is_registered_and_separates_faces_from_noise():
    """Measured (metrics/face_detection.py docstring): bundled LFW faces 0.82, its non-faces 0.04,
    uniform noise 0.00-0.01; real CelebA/FFHQ 0.93. Margins are set well inside those gaps."""
    from facegan.metrics.registry import METRICS
    spec = METRICS["face_detection"]
    assert spec.direction == "higher" and spec.headline == "detected_fraction" and spec.needs == "images"
    lfw = _lfw_subset_uint8()
    faces, nonfaces = lfw[:100], lfw[100:]
    noise = np.random.default_rng(0).integers(0, 256, (100, 64, 64, 3), dtype=np.uint8)
    r = evaluate(["face_detection"], faces, nonfaces, num_images=100, progress=False)
    res = r["face_detection100"]
    # A direct skimage Cascade call on the float images (same cascade settings) found 82 faces
    # and 7 non-faces; the detector is deterministic.
    assert res["detected_fraction"] == pytest.approx(0.82, abs=0.02)
    assert res["real"]["detected_fraction"] < 0.10
    assert 0.3 < res["face_size_mean"] < 1.0 and res["detections_per_image"] >= res["detected_fraction"]
    r_noise = evaluate(["face_detection"], noise, faces, num_images=100, progress=False)
    assert res["detected_fraction"] - r_noise["face_detection100"]["detected_fraction"] > 0.6
    from facegan.metrics import blessing
    d = blessing.decide(r_noise, {"face_detection": {"min": 0.5}})
    assert not [x for x in d.rules if x.rule == "face_detection >= 0.5"][0].passed


def test_face_detection_on_real_faces_beats_noise_and_blur(celeba_dir):
    from facegan.metrics.face_detection import FaceAccumulator, _validation_sets, summary
    sets = _validation_sets(str(celeba_dir), 64, 64)
    frac = {}
    for name, imgs in sets.items():
        acc = FaceAccumulator(len(imgs))
        acc.add(imgs, None)
        frac[name] = summary(acc.result())["detected_fraction"]
    # Measured on 1,000: real 0.93, noise 0.001, blurred 0.27 (binomial sd at n=64 <= 0.06).
    assert frac["real"] - frac["noise"] > 0.6
    assert frac["real"] - frac["blurred"] > 0.3


def test_weights_download_goes_through_keras_get_file_and_checks_the_hash(tmp_path, monkeypatch):
    """The download is Keras' get_file with file_hash (md5): a good file lands in Keras' cache, a
    corrupt one is refused and the refusal is in the how-to message (file:// stands in for http)."""
    import hashlib
    src = tmp_path / "served.h5"
    src.write_bytes(b"pretend weights " * 64)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "keras" / "models" / "w.h5"
    got = feat_lib._download(src.as_uri(), str(dest), md5)
    assert got == str(dest) and dest.read_bytes() == src.read_bytes()
    with pytest.raises(ValueError, match="(?i)corrupt|incomplete"):
        feat_lib._download(src.as_uri(), str(tmp_path / "keras" / "models" / "bad.h5"), "0" * 32)
    # resolve_inception_weights reports a failed download (here: the wrong hash) in its message
    monkeypatch.delenv(feat_lib.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k2"))
    monkeypatch.setattr(feat_lib, "INCEPTION_TOP_URL", src.as_uri())
    with pytest.raises(metrics.WeightsUnavailableError, match="failed: ValueError"):
        feat_lib.resolve_inception_weights()
