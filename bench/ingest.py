"""Benchmark: Beam ingestion (DirectRunner multi-processing) vs a naive single-process loop.

Prints one JSON object. Both paths ingest the same files (the shared real face sets, read in
place through a temp dir of symlinks) at the same settings (centre crop, LANCZOS, PNG, gzipped
TFRecord of tf.Example), in the same command, with a warm page cache.

Steady state vs start-up:
- Beam: two runs, a small one (`--small` files) and the full one. Worker start-up (subprocess
  interpreters importing Beam, gRPC channels) is the same for both, so the steady-state rate is
  (N_full - N_small) / (T_full - T_small) and start-up is T_small - N_small / rate. The rate over
  the "processing window" (first to last file done on the workers, from the progress counters)
  is reported too; it leaves out the read-and-hash stage and the shuffle.
- Naive: TensorFlow import is start-up; the loop is timed alone.

CPU view: on a shared machine the kernel's autogroup scheduler gives each login session one
fair share however many processes it runs, so two Beam workers may get no more CPU than one
naive loop. The JSON therefore also reports CPU ms per image (naive loop; Beam's processing
stage measured inside the workers from first file to last; all worker CPU of full minus small
run) and the speedup those imply on `--workers` free cores ("projected_*").

    python bench/ingest.py [--resolution 64] [--workers 2] [--small 600] [--limit 0]
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def faces_root():
    return os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))


def list_faces(limit):
    root = faces_root()
    sets = [os.path.join(root, "ffhq256", "images"), os.path.join(root, "celeba89x109", "images")]
    files = []
    for d in sets:
        if not os.path.isdir(d):
            sys.exit(f"bench/ingest.py: face set {d} not found; set FACEGAN_FACES_DIR")
        files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    if limit:
        # interleave the two sets so a limited run keeps their mix
        ff = [f for f in files if "ffhq256" in f]
        cc = [f for f in files if "celeba" in f]
        k = max(1, int(limit * len(ff) / len(files)))
        files = ff[:k] + cc[:limit - k]
    return files


def link_dir(files, path):
    os.makedirs(path)
    for i, f in enumerate(files):
        # keep the set name in the link name so sources stay readable
        os.symlink(f, os.path.join(path, f"{i:06d}_{os.path.basename(os.path.dirname(os.path.dirname(f)))}"
                                         f"_{os.path.basename(f)}"))
    return path


def naive(files, out, resolution):
    """The loop people write by hand: PIL decode, centre crop, LANCZOS resize, PNG, TFRecord."""
    t0 = time.perf_counter()
    import io

    import tensorflow as tf
    from PIL import Image
    t1 = time.perf_counter()

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    n = 0
    c1 = time.process_time()
    with tf.io.TFRecordWriter(out, options="GZIP") as w:
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            im = Image.open(io.BytesIO(data)).convert("RGB")
            wd, ht = im.size
            s = min(wd, ht)
            l, t = (wd - s) // 2, (ht - s) // 2
            im = im.resize((resolution, resolution), Image.LANCZOS, box=(l, t, l + s, t + s))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image": b(buf.getvalue()), "height": i(resolution), "width": i(resolution),
                "source": b(f.encode())}))
            w.write(ex.SerializeToString())
            n += 1
    t2 = time.perf_counter()
    cpu = time.process_time() - c1
    return {"images": n, "startup_s": round(t1 - t0, 2), "loop_s": round(t2 - t1, 2),
            "images_per_s": round(n / (t2 - t1), 1), "cpu_ms_per_image": round(1000 * cpu / n, 3)}


def _cpu():
    """(driver CPU s, finished children CPU s): Beam's worker subprocesses are reaped at the end."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def beam_run(input_dir, out, cfg, beam_args, n):
    from facegan.components.image_example_gen import beam_pipeline as B
    marks = {}

    def on_progress(done, total):
        now = time.perf_counter()
        if done > 0 and "first" not in marks:
            marks["first"] = now
        if total and done >= total and "last" not in marks:
            marks["last"] = now

    on_progress.records = []
    c0 = _cpu()
    t0 = time.perf_counter()
    s = B.run_ingest(input_dir, out, cfg, beam_args=beam_args, on_progress=on_progress)
    t1 = time.perf_counter()
    c1 = _cpu()
    assert s["examples_written"] + s["duplicates"] + s["rejected"] == s["files_seen"] == n, s
    recs = [r for r in on_progress.records if r.get("t0") is not None]
    # processing window from the workers' own clocks: first file started to last file done
    window = (max(r["t"] for r in recs) - min(r["t0"] for r in recs)) if recs else \
        marks.get("last", t1) - marks.get("first", t0)
    stage_cpu = sum(r["cpu"] - r["cpu0"] for r in recs)
    return {"images": n, "wall_s": round(t1 - t0, 2), "written": s["examples_written"],
            "processing_window_s": round(window, 2),
            "processing_window_images_per_s": round(n / window, 1) if window > 0 else None,
            "driver_cpu_s": round(c1[0] - c0[0], 2), "workers_cpu_s": round(c1[1] - c0[1], 2),
            "worker_processes_reporting": len(recs),
            "process_stage_cpu_ms_per_image": round(1000 * stage_cpu / n, 3) if recs else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--small", type=int, default=600, help="files in the start-up calibration run")
    ap.add_argument("--limit", type=int, default=0, help="use only this many files (0 = all)")
    args = ap.parse_args()

    files = list_faces(args.limit)
    small = files[:: max(1, len(files) // args.small)][: args.small]
    tmp = tempfile.mkdtemp(prefix="facegan-bench-ingest-")
    full_dir, small_dir = link_dir(files, os.path.join(tmp, "full")), link_dir(small, os.path.join(tmp, "small"))
    for f in files:                       # warm the page cache for every run alike
        with open(f, "rb") as fh:
            fh.read()

    t0 = time.perf_counter()
    from facegan.components.image_example_gen import beam_pipeline  # noqa: F401
    from facegan.components.image_example_gen import transforms as T
    beam_import_s = time.perf_counter() - t0
    cfg = T.IngestConfig(resolution=args.resolution, crop="center", filter="lanczos",
                         eval_fraction=0.1, grid_size=16)
    beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]

    nv = naive(files, os.path.join(tmp, "naive.tfrecord.gz"), args.resolution)
    bs = beam_run(small_dir, os.path.join(tmp, "beam_small"), cfg, beam_args, len(small))
    bf = beam_run(full_dir, os.path.join(tmp, "beam_full"), cfg, beam_args, len(files))
    dt = bf["wall_s"] - bs["wall_s"]
    steady = (len(files) - len(small)) / dt if dt > 0 else None
    result = {
        "benchmark": "ingest",
        "files": len(files),
        "resolution": args.resolution,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "naive": nv,
        "beam_small_run": bs,
        "beam_full_run": bf,
        "beam_driver_import_s": round(beam_import_s, 2),
        "beam_steady_images_per_s": round(steady, 1) if steady else None,
        "beam_startup_s": round(bs["wall_s"] - len(small) / steady, 2) if steady else None,
        "speedup_steady_vs_naive": round(steady / nv["images_per_s"], 2) if steady else None,
        "speedup_processing_window_vs_naive": round(
            bf["processing_window_images_per_s"] / nv["images_per_s"], 2)
        if bf["processing_window_images_per_s"] else None,
        "speedup_wall_full_run_vs_naive_with_startup": round(
            (nv["loop_s"] + nv["startup_s"]) / bf["wall_s"], 2),
        "goal_speedup": 1.5,
    }
    # Contention-independent view (the machine is shared): CPU per image of the processing
    # stage measured inside the workers (first file to last, so start-up is excluded) vs the
    # naive loop's CPU per image, and the speedup that implies when `workers` cores are free.
    # The driver's CPU during the full run (shuffle, bookkeeping; includes its fixed costs) is
    # spread over the images and charged too.
    w_ms = bf["process_stage_cpu_ms_per_image"]
    d_ms = 1000 * bf["driver_cpu_s"] / len(files)
    result["beam_worker_cpu_ms_per_image"] = w_ms
    result["beam_driver_cpu_ms_per_image"] = round(d_ms, 3)
    result["naive_cpu_ms_per_image"] = nv["cpu_ms_per_image"]
    cores = min(args.workers, os.cpu_count() or 1)     # workers and driver share these

    def projected(w):
        bottleneck = max((w + d_ms) / cores, w / args.workers, d_ms)
        return round(nv["cpu_ms_per_image"] / bottleneck, 2)

    if w_ms:
        result["projected_speedup_on_free_cores"] = projected(w_ms)
    # conservative variant: all worker CPU of the full run minus the small run (adds the
    # read-and-hash stage and any harness work; noisier since start-up CPU varies per run)
    w_all = 1000 * (bf["workers_cpu_s"] - bs["workers_cpu_s"]) / (len(files) - len(small))
    if w_all > 0:
        result["beam_all_stages_worker_cpu_ms_per_image"] = round(w_all, 3)
        result["projected_speedup_on_free_cores_all_stages"] = projected(w_all)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
