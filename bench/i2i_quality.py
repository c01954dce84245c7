"""Quality study rows for image-to-image: pix2pix vs the do-nothing baseline, on real faces.

For each paired task (default: 4x super-resolution `lowres:factor=4`, colourisation `grayscale`):
ingest `--images` CelebA faces (read in place from $FACEGAN_FACES_DIR or ../shared/data/faces,
into a temporary Examples artifact deleted afterwards) at `--resolution` with that transform, train
pix2pix for `--steps` steps (the `pix2pix` preset's losses and optimizer; widths and batch from the
flags), then score the held-out eval pairs with metrics/paired.py: L1 / PSNR / SSIM of the outputs
vs the targets, and of the input itself (for `lowres` that IS bicubic upscaling). Prints one JSON
object with the machine, the settings and per task {model, baseline, beats_baseline, swd}.

    python bench/i2i_quality.py [--tasks lowres:factor=4,grayscale] [--images 1200] [--steps 600]
                                [--grid DIR --generator EXPORT [--grid-n 8] [--seed 0]]

`--grid DIR` also writes one before/after PNG per task into DIR (`i2i_<task>.png`) whose inputs
are NOT real faces: CelebA's terms forbid publishing any portion of its images (or images derived
from them), so the "before" faces are samples of an unconditional generator trained on the faces
(`--generator`, any export of the generator contract's latent kind; `--seed` picks the latents),
resized to `--resolution` if needed and degraded by the task's own transform. Rows, one column
per sample: the degraded input (for `lowres` the low-resolution image itself, nearest-neighbour
enlarged so its pixels show), the bicubic upscale (`lowres` only: that IS the model's input and the
baseline), the pix2pix output, the generated face it was derived from. The JSON gets the same
L1 / PSNR / SSIM on these samples (model and baseline vs the generated face) under `grid`.
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


def generated_faces(export_dir, n, seed, resolution):
    """uint8 [n, resolution, resolution, 3] samples of a face generator (resized with PIL's
    antialiased bicubic when the generator's resolution differs)."""
    import numpy as np
    from PIL import Image
    from facegan.generator import load_generator
    faces = load_generator(export_dir).sample(n, seed=seed)
    if faces.shape[1] != resolution:
        faces = np.stack([np.asarray(Image.fromarray(f).resize((resolution, resolution), Image.BICUBIC))
                          for f in faces])
    return faces


def grid_rows(spec, faces, translate):
    """{row name: uint8 [N, R, R, 3]} of the before/after grid (see the module docstring)."""
    import numpy as np
    from PIL import Image
    from facegan.ingest import paired as P
    name, params = P.parse_spec(spec)
    inputs = np.stack([P.apply(f, spec).image for f in faces])
    rows = {}
    if name == "lowres":
        r, small = faces.shape[1], faces.shape[1] // int(params["factor"])
        rows["lowres"] = np.stack([np.asarray(Image.fromarray(f).resize((small, small), Image.BICUBIC)
                                              .resize((r, r), Image.NEAREST)) for f in faces])
        rows["bicubic"] = inputs
    else:
        rows["input"] = inputs
    rows["pix2pix"] = translate(inputs)
    rows["generated_face"] = faces
    return rows, inputs


def write_grid(spec, faces, translate, path):
    """Write the grid PNG at `path`; return its row names and the scores on these samples."""
    import numpy as np
    from facegan.images import save_grid
    from facegan.metrics.paired import SCORES
    rows, inputs = grid_rows(spec, faces, translate)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_grid(np.concatenate(list(rows.values())), path, cols=len(faces))
    score = lambda x: {k: round(float(fn(x, faces).mean()), 4) for k, fn in SCORES.items()}  # noqa: E731
    return {"path": path, "rows": list(rows), "samples": len(faces),
            "model_vs_generated": score(rows["pix2pix"]), "baseline_vs_generated": score(inputs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="lowres:factor=4;grayscale", help="paired specs separated by ';'")
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--grid", default="", help="directory for before/after PNGs on generated faces")
    ap.add_argument("--generator", default="", help="export of a face generator (with --grid)")
    ap.add_argument("--grid-n", type=int, default=8, help="samples per grid")
    ap.add_argument("--seed", type=int, default=0, help="latent seed of the grid's generated faces")
    args = ap.parse_args()
    if args.grid and not args.generator:
        ap.error("--grid needs --generator EXPORT: the grid shows generated faces, never real ones")

    from facegan.machine import cpu_info
    from facegan.ingest import runner as R
    from facegan.ingest import options as O
    from facegan.metrics.paired import evaluate_paired
    from facegan.trainer import config, train_lib
    from facegan.generator.ops import from_uint8, to_uint8

    faces = os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))
    celeba = os.path.join(faces, "celeba89x109", "images")
    tmp = tempfile.mkdtemp(prefix="facegan-i2i-bench-")
    out = {"machine": cpu_info(), "settings": vars(args), "tasks": {}}
    faces_for_grid = generated_faces(args.generator, args.grid_n, args.seed, args.resolution) if args.grid else None
    try:
        inputs = os.path.join(tmp, "faces")
        os.makedirs(inputs)
        for name in sorted(os.listdir(celeba))[: args.images]:
            os.symlink(os.path.join(celeba, name), os.path.join(inputs, name))
        for spec in [s for s in args.tasks.split(";") if s]:
            t0 = time.monotonic()
            ex = os.path.join(tmp, "ex_" + spec.replace(":", "_").replace("=", ""))
            cfg_i = O.IngestConfig(resolution=args.resolution, crop="celeba", paired=spec)
            summary = R.run_ingest(inputs, ex, cfg_i, beam_args=[
                "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
            t1 = time.monotonic()
            cfg = config.get_preset("pix2pix", {
                "network.resolution": args.resolution, "network.filters": args.filters,
                "network.max_filters": 8 * args.filters, "optim.batch_size": args.batch, "run.steps": args.steps,
                "run.checkpoint_every": args.steps, "run.image_every": args.steps, "run.log_every": 50})
            res = train_lib.train(cfg, ex, os.path.join(tmp, "run"), progress=False)
            t2 = time.monotonic()
            g = res.gan.sampling_generator
            translate = lambda x: to_uint8(g(from_uint8(x), training=False)).numpy()  # noqa: E731
            scores = evaluate_paired(translate, ex)
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
            if faces_for_grid is not None:
                path = os.path.join(args.grid, "i2i_" + spec.split(":")[0] + ".png")
                out["tasks"][spec]["grid"] = dict(write_grid(spec, faces_for_grid, translate, path),
                                                  generator=args.generator, seed=args.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    # our progress and the JSON only; TensorFlow/absl/deprecation noise with --verbose (facegan/noise.py)
    from facegan import noise
    noise.configure_script(sys.argv)
    main()
