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
- SWD, PGGAN protocol (128 7x7 neighbourhoods per image per level, 4 x 128 directions) at 128x128.
  The headline `swd.s_per_10k` is MEASURED on `--swd-images-large` images per side (default
  10,000: faces plus flipped/rolled copies), one run, wall and CPU seconds: the cost grows faster
  than the image count (the sorts are n log n, descriptors past 256 MB spill to disk), so an
  extrapolation from a few hundred images under-states it (measured on this project's 2-core
  EPYC: 149-176 s extrapolated from 256 images vs 218 s measured at 10,000, same run). Beside
  it, on `--swd-images` faces per side: the current implementation against the previous one
  (`metrics/swd.py` at commit BASELINE_COMMIT, loaded from git into this process), timed
  alternately (`--repeats`, best of) -- their ratio is the comparison, their `*_extrapolated`
  seconds per 10k are linear extrapolations. With shared positions the two implementations draw
  the same random numbers, so their values must agree (`rel_diff_same_draws`); the protocol value
  (independent positions) is printed too. `numpy_sort` times numpy's float32 quicksort and
  `swd.sort_float32` on rows of the two lengths the runs sort (128 x images per side): the sort is
  most of SWD's cost, and its speed differs between CPU generations that report the same model
  name (the JSON's `machine.cpu_identity`), which is why figures from two sessions can differ
  three-fold. TF-GAN's `sliced_wasserstein_distance` configured to the same protocol
  (patches_per_image=128, random_sampling_count=4, random_projection_dim=128) normalizes per patch
  (not per channel) and also computes a real-vs-real distance, so its numbers differ from PGGAN's.
- MS-SSIM (PGGAN variant) at 256x256 and 128x128 on `--pairs` consecutive FFHQ pairs: current vs
  previous implementation (same protocol as SWD; values must agree), and `tf.image.ssim_multiscale`
  at 256x256 (it refuses 128x128 with five scales); the mean of both variants at 256 shows the
  channel-averaging difference documented in metrics/ms_ssim.py.

Every figure carries the CPU model and its avx512_bf16 / amx_bf16 / amx_tile flags and the load
average (the machine is shared: wall seconds depend on the load, CPU seconds much less; the
goals are judged on the current/previous ratio measured in the same run).

    python bench/metrics.py [--only swd,ms_ssim] [--swd-images 128] [--swd-images-large 10000] [--pairs 64]
                            [--repeats 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from facegan.machine import cpu_info  # noqa: E402  (CPU model, bf16/AMX flags, load)

PER = 10_000
BASELINE_COMMIT = "3d48ca1"   # main before the metrics-perf work: the "previous implementation"
GOALS_S_PER_10K = {"swd_128": 200.0, "ms_ssim_256": 60.0}   # the goals: SWD of 10k images at 128 px, MS-SSIM of 10k pairs at 256 px


def load_baseline(relpath: str):
    """`relpath` as it was at BASELINE_COMMIT, as a module (None outside a git checkout).

    Its `@register_metric` lines are dropped: the registry already holds the current classes.
    """
    try:
        src = subprocess.run(["git", "-C", REPO, "show", f"{BASELINE_COMMIT}:{relpath}"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType(f"baseline_{os.path.basename(relpath)[:-3]}")
    exec(compile(src.replace("@register_metric\n", ""), f"{BASELINE_COMMIT}:{relpath}", "exec"), mod.__dict__)
    return mod


def timed_cpu(fn):
    """(wall seconds, process CPU seconds over all threads, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def alternate(fns: dict, repeats: int):
    """Time each fn `repeats` times, interleaved (load drift hits all alike); best wall and CPU."""
    best = {k: [float("inf"), float("inf"), None] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            w, c, out = timed_cpu(fn)
            b = best[k]
            b[0], b[1], b[2] = min(b[0], w), min(b[1], c), out
    return best


def per10k(seconds, n):
    return round(seconds / n * PER, 2)


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


def _old_swd(mod, gen, real, seed=0, batch=64):
    """The previous implementation's SWD (its accumulators share positions by construction)."""
    n = min(len(gen), len(real))
    accs = [mod.SWDAccumulator(n, seed=[seed, 1]) for _ in range(2)]
    for acc, images in zip(accs, (gen, real)):
        for i in range(0, n, batch):
            acc.add(images[i:i + batch], None)
    out = mod.swd_from_results(accs[0].result(), accs[1].result(), seed)
    for acc in accs:
        acc.close()
    return out


def more_faces(faces, n):
    """n images from the faces: the faces, then mirrored and rolled copies (timing only)."""
    out, k = [], 0
    while sum(len(o) for o in out) < n:
        v = faces[:, :, ::-1] if k % 2 else faces
        out.append(np.roll(v, 3 * (k // 2), axis=(1, 2)) if k > 1 else v)
        k += 1
    return np.concatenate(out)[:n]


def bench_sort(lengths, elements=1 << 22, repeats=2) -> dict:
    """CPU ns per element of numpy's float32 quicksort and of swd.sort_float32 on random rows of
    each length (about `elements` values per timing, best of `repeats`), and whether they agree."""
    from facegan.metrics.swd import RADIX_MAX, sort_float32
    rng = np.random.default_rng(0)
    out = {"radix_max_row": RADIX_MAX}
    for n in lengths:
        x = rng.standard_normal((max(1, elements // n), n)).astype(np.float32)
        r = {}
        for name, fn in (("numpy_quicksort", lambda row: row.sort()), ("swd_sort_float32", sort_float32)):
            best = float("inf")
            for _ in range(repeats):
                y = x.copy()
                c = time.process_time()
                for row in y:
                    fn(row)
                best = min(best, time.process_time() - c)
            r[f"{name}_cpu_ns_per_element"] = round(best / x.size * 1e9, 2)
            if name == "swd_sort_float32":
                r["agree"] = bool(np.array_equal(y, np.sort(x, axis=1)))
        out[str(n)] = r
    return out


def bench_swd(faces128, n, n_large, repeats):
    from facegan.metrics.swd import DIR_REPEATS, DIRS_PER_REPEAT, NHOODS_PER_IMAGE, swd_of_images
    old = load_baseline("metrics/swd.py")
    real, fake = faces128[:n], faces128[n:2 * n]
    out = {}
    if n_large:
        big = more_faces(faces128, 2 * n_large)
        w, c, _ = timed_cpu(lambda: swd_of_images(big[n_large:], big[:n_large]))
        del big
        out.update({"s_per_10k": {"wall": per10k(w, n_large), "cpu": per10k(c, n_large)},
                    "s_per_10k_measured_at": n_large, "data": "faces + mirrored/rolled copies"})
    fns = {"new": lambda: swd_of_images(fake, real, shared_positions=True)}
    if old is not None:
        fns["old"] = lambda: _old_swd(old, fake, real)
    best = alternate(fns, repeats)
    w_new, c_new, v_shared = best["new"]
    _, _, v_protocol = timed_cpu(lambda: swd_of_images(fake, real))
    _, _, v_self = timed_cpu(lambda: swd_of_images(real, real.copy()))
    levels = len(v_shared["per_level"])
    out.update({
        "comparison": {"images_per_side": n, "resolution": int(real.shape[1]),
                       "new_wall_s_per_10k_extrapolated": per10k(w_new, n),
                       "new_cpu_s_per_10k_extrapolated": per10k(c_new, n)},
        "sorted_elements_per_run": {str(k): levels * DIR_REPEATS * DIRS_PER_REPEAT * 2 * k * NHOODS_PER_IMAGE
                                    for k in sorted({n, n_large} - {0})},
        "numpy_sort": bench_sort(sorted({n * NHOODS_PER_IMAGE, n_large * NHOODS_PER_IMAGE} - {0})),
        "value_new_shared_positions": v_shared["per_level"],
        "value_new_protocol_independent_positions": v_protocol["per_level"],
        "value_new_protocol_identical_sets_avg": v_self["avg"]})
    cmp = out["comparison"]
    if old is not None:
        w_old, c_old, v_old = best["old"]
        cmp.update({"old_wall_s_per_10k_extrapolated": per10k(w_old, n),
                    "old_cpu_s_per_10k_extrapolated": per10k(c_old, n),
                    "speedup_wall": round(w_old / w_new, 2), "speedup_cpu": round(c_old / c_new, 2)})
        out.update({"value_old": v_old["per_level"],
                    "rel_diff_same_draws": max(abs(v_shared["per_level"][k] / v_old["per_level"][k] - 1)
                                               for k in v_old["per_level"])})
    else:
        cmp["old"] = f"not measured: git show {BASELINE_COMMIT} failed (not a git checkout?)"
    if n_large:
        out["s_per_10k_over_extrapolation"] = round(out["s_per_10k"]["wall"] / cmp["new_wall_s_per_10k_extrapolated"], 2)
    out["goal_s_per_10k"] = GOALS_S_PER_10K["swd_128"]
    return out


def bench_swd_tfgan(faces128, n):
    import tensorflow as tf
    import tensorflow_gan as tfgan
    real, fake = faces128[:n], faces128[n:2 * n]

    def tf_swd():
        out = tfgan.eval.sliced_wasserstein_distance(
            tf.constant(real), tf.constant(fake), resolution_min=16, patches_per_image=128, patch_size=7,
            random_sampling_count=4, random_projection_dim=128)
        return [float(x[1]) * 1e3 if np.isfinite(float(x[1])) else None for x in out]   # None: NaN

    t_tf, v_tf = timed(tf_swd)
    return {"images_per_side": n, "tfgan_s_per_10k": t_tf / n * PER, "value_tfgan_per_level_x1e3": v_tf,
            "tfgan_nan_levels": [i for i, v in enumerate(v_tf) if v is None],
            "note": "TF-GAN normalizes per patch (NaN when a patch is flat, e.g. saturated background on a "
                    "Laplacian level) and also computes real-vs-real: different numbers, ~1.5x the sorts"}


def bench_ms_ssim(faces256, pairs, repeats):
    import tensorflow as tf
    from facegan.metrics.ms_ssim import ms_ssim, resize_to
    old = load_baseline("metrics/ms_ssim.py")
    a, b = faces256[0:2 * pairs:2], faces256[1:2 * pairs:2]
    a128, b128 = resize_to(a, 128), resize_to(b, 128)
    out = {"pairs": pairs, "scaled_linearly_from": pairs}
    for res, (x, y) in (("256", (a, b)), ("128", (a128, b128))):
        fns = {"new": lambda: ms_ssim(x, y)}
        if old is not None:
            fns["old"] = lambda: old.ms_ssim(x, y)
        for fn in fns.values():
            fn()                                       # compile/trace outside the timing
        best = alternate(fns, repeats)
        w_new, c_new, v_new = best["new"]
        r = {"new_wall_s_per_10k_pairs": per10k(w_new, pairs), "new_cpu_s_per_10k_pairs": per10k(c_new, pairs),
             "mean_new": float(v_new.mean())}
        if old is not None:
            w_old, c_old, v_old = best["old"]
            r.update({"old_wall_s_per_10k_pairs": per10k(w_old, pairs), "old_cpu_s_per_10k_pairs": per10k(c_old, pairs),
                      "speedup_wall": round(w_old / w_new, 2), "speedup_cpu": round(c_old / c_new, 2),
                      "max_abs_diff_new_vs_old": float(np.abs(v_new - v_old).max())})
        out[res] = r
    out["256"]["goal_s_per_10k_pairs"] = GOALS_S_PER_10K["ms_ssim_256"]
    fa, fb = tf.constant(a, tf.float32), tf.constant(b, tf.float32)
    tf.image.ssim_multiscale(fa[:2], fb[:2], 255.0)
    t_tf, v_tf = timed(lambda: tf.image.ssim_multiscale(fa, fb, 255.0).numpy())
    out["tf_image_256_s_per_10k_pairs"] = per10k(t_tf, pairs)
    out["mean_tf_image_256"] = float(v_tf.mean())
    out["pggan_vs_tf_image_rel_diff_256"] = float(abs(out["256"]["mean_new"] - v_tf.mean()) / v_tf.mean())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="extraction,fid_kid_is,swd,swd_tfgan,ms_ssim",
                    help="comma list of parts: extraction,fid_kid_is,swd,swd_tfgan,ms_ssim")
    ap.add_argument("--extract-images", type=int, default=32)
    ap.add_argument("--swd-images", type=int, default=128, help="faces per side for SWD (old vs new)")
    ap.add_argument("--swd-images-large", type=int, default=PER,
                    help="per side, current SWD only: the measured s_per_10k (0: skip)")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="alternating timings of old and new; best of")
    ap.add_argument("--kid-n", type=int, default=PER)
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    known = {"extraction", "fid_kid_is", "swd", "swd_tfgan", "ms_ssim"}
    if set(parts) - known:
        ap.error(f"--only: unknown part(s) {sorted(set(parts) - known)}; known: {sorted(known)}")
    t0 = time.perf_counter()
    import tensorflow as tf  # noqa: F401  (import cost outside every timing)
    import tensorflow_gan  # noqa: F401
    n_load = max(args.extract_images, 2 * args.swd_images, 2 * args.pairs)
    faces256 = load_faces(n_load, 256)
    faces128 = np.stack([np.asarray(f.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3)).round(), np.uint8)
                         for f in faces256])
    rng = np.random.default_rng(0)
    result = {
        "machine": cpu_info(),   # load_avg_1m: at the start
        "data": f"FFHQ {len(faces256)} faces at 256 (box-downscaled to 128 where noted), read in place",
        "units": "seconds per 10,000 images per side (pairs for MS-SSIM); SWD's s_per_10k is measured at "
                 "swd.s_per_10k_measured_at images per side, every other figure is measured on fewer and scaled "
                 "linearly",
        "baseline": f"previous implementation = metrics/*.py at commit {BASELINE_COMMIT}",
    }
    jobs = {"extraction": ("feature_extraction", lambda: bench_extraction(faces128[:args.extract_images], 32)),
            "fid_kid_is": (None, lambda: bench_fid_kid_is(args.kid_n, rng)),
            "swd": ("swd", lambda: bench_swd(faces128, args.swd_images, args.swd_images_large, args.repeats)),
            "swd_tfgan": ("swd_tfgan", lambda: bench_swd_tfgan(faces128, args.swd_images)),
            "ms_ssim": ("ms_ssim", lambda: bench_ms_ssim(faces256, args.pairs, args.repeats))}
    for part in parts:
        name, fn = jobs[part]
        t = time.perf_counter()
        out = fn()
        result.update(out) if name is None else result.__setitem__(name, out)
        print(f"bench/metrics.py: {part} done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    # our progress and the JSON only; TensorFlow/absl/deprecation noise with --verbose (facegan/noise.py)
    from facegan import noise
    noise.configure_script(sys.argv)
    main()
