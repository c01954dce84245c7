"""Quality study rows for image-to-image (issue 12): pix2pix vs the do-nothing baseline, on real faces.

For each paired task (default: 4x super-resolution `lowres:factor=4`, colourisation `grayscale`):
ingest `--images` CelebA faces (read in place from $FACEGAN_FACES_DIR or ../shared/data/faces,
into a temporary Examples artifact deleted afterwards) at `--resolution` with that transform, train
pix2pix for `--steps` steps (the `pix2pix` preset's losses and optimizer; widths and batch from the
flags), then score the held-out eval pairs with metrics/paired.py: L1 / PSNR / SSIM of the outputs
vs the targets, and of the input itself (for `lowres` that IS bicubic upscaling). Prints one JSON
object with the machine, the settings and per task {model, baseline, beats_baseline, swd}.

    python bench/i2i_quality.py [--tasks lowres:factor=4,grayscale] [--images 1200] [--steps 600]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="lowres:factor=4;grayscale", help="paired specs separated by ';'")
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--filters", type=int, default=32)
    args = ap.parse_args()

    from facegan.machine import cpu_info
    from facegan.components.image_example_gen import beam_pipeline
    from facegan.components.image_example_gen import transforms as T
    from facegan.metrics.paired import evaluate_paired
    from facegan.trainer import config, train_lib
    from facegan.generator.ops import from_uint8, to_uint8

    faces = os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))
    celeba = os.path.join(faces, "celeba89x109", "images")
    tmp = tempfile.mkdtemp(prefix="facegan-i2i-bench-")
    out = {"machine": cpu_info(), "settings": vars(args), "tasks": {}}
    try:
        inputs = os.path.join(tmp, "faces")
        os.makedirs(inputs)
        for name in sorted(os.listdir(celeba))[: args.images]:
            os.symlink(os.path.join(celeba, name), os.path.join(inputs, name))
        for spec in [s for s in args.tasks.split(";") if s]:
            t0 = time.monotonic()
            ex = os.path.join(tmp, "ex_" + spec.replace(":", "_").replace("=", ""))
            cfg_i = T.IngestConfig(resolution=args.resolution, crop="celeba", paired=spec)
            summary = beam_pipeline.run_ingest(inputs, ex, cfg_i, beam_args=[
                "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
            t1 = time.monotonic()
            cfg = config.get_preset("pix2pix", {
                "network.resolution": args.resolution, "network.filters": args.filters,
                "network.max_filters": 8 * args.filters, "optim.batch_size": args.batch, "run.steps": args.steps,
                "run.checkpoint_every": args.steps, "run.image_every": args.steps, "run.log_every": 50})
            res = train_lib.train(cfg, ex, os.path.join(tmp, "run"), progress=False)
            t2 = time.monotonic()
            g = res.gan.sampling_generator
            scores = evaluate_paired(lambda x: to_uint8(g(from_uint8(x), training=False)).numpy(), ex)
            shutil.rmtree(os.path.join(tmp, "run"))
            out["tasks"][spec] = {
                "train_images": summary["splits"]["train"]["examples"], "eval_pairs": scores["num_pairs"],
                "model": {k: round(scores[k], 4) for k in ("l1", "psnr", "ssim")},
                "baseline": {k: round(scores["baseline"][k], 4) for k in ("l1", "psnr", "ssim")},
                "baseline_is": "bicubic upscale" if spec.startswith("lowres") else "the input unchanged",
                "beats_baseline": scores["beats_baseline"],
                "swd_outputs_vs_faces": round(scores["swd"]["avg"], 3) if scores.get("swd") else None,
                "seconds": {"ingest": round(t1 - t0, 1), "train": round(t2 - t1, 1),
                            "train_images_per_s": round(args.steps * args.batch / (t2 - t1), 1)}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
