"""Reconstruction quality of `facegan project` on held-out real faces (run by hand, not in CI).

For the first `--num` faces of the Examples' eval split (never trained on), projects each into the
generator (facegan/project.py; all faces optimised together, each independently: Adam is
elementwise and the loss is a sum of per-image terms) in each `--spaces` space, and reports mean and
standard deviation of PSNR, SSIM and MS-SSIM of the reconstructions. As a floor, the same scores
of each face's nearest training image (pixel L2 over the whole train split): what a generator
that memorised its training set would reach without any projection.

    .venv/bin/python bench/projection.py --model models/faces/1 --data out/examples --num 50 --steps 300
    .venv/bin/python bench/projection.py --model runs/sg2/export --data out/examples --spaces w,wplus \
        --discriminator auto --discriminator-weight 0.1 --lpips-weights lpips_vgg.npz --lpips-weight 1

The loss flags are `facegan project`'s (--ssim-weight, --discriminator, --discriminator-weight,
--lpips-weights, --lpips-weight); the JSON records the terms and weights used.

Prints JSON (with the CPU of the machine, facegan.machine.cpu_info()).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _summary(rows):
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
            for k in ("psnr", "ssim", "ms_ssim")}


def nearest_training(targets: np.ndarray, data: str, batch: int = 512) -> np.ndarray:
    from facegan import examples_io
    t = targets.reshape(len(targets), -1).astype(np.float32)
    best_d = np.full(len(targets), np.inf)
    best = np.zeros_like(targets)
    for b in examples_io.iterate_images(data, "train", batch_size=batch, include_mirrored=False):
        x = b.reshape(len(b), -1).astype(np.float32)
        d = (t ** 2).sum(1)[:, None] - 2 * t @ x.T + (x ** 2).sum(1)[None]
        j = d.argmin(1)
        better = d[np.arange(len(t)), j] < best_d
        best_d[better] = d[np.arange(len(t)), j][better]
        best[better] = b[j[better]]
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--num", type=int, default=50)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--spaces", default=None, help="comma-separated (default: w,wplus for StyleGAN2, z otherwise)")
    from facegan import project as P
    P.add_loss_arguments(p)
    args = p.parse_args(argv)
    from facegan import examples_io
    from facegan.machine import cpu_info
    net, gen = P.rebuild_generator(args.model)
    try:
        terms = P.loss_terms(args, gen.metadata)
    except ValueError as e:
        raise SystemExit(f"bench/projection.py: {e}")
    targets = next(examples_io.iterate_images(args.data, "eval", batch_size=args.num, include_mirrored=False))
    if targets.shape[1] != gen.resolution:
        raise SystemExit(f"--data images are {targets.shape[1]} px, the model makes {gen.resolution} px")
    w_space = gen.metadata.get("truncation") == "w_space"
    spaces = args.spaces.split(",") if args.spaces else (["w", "wplus"] if w_space else ["z"])
    out = {"model": {k: gen.metadata.get(k) for k in ("architecture", "preset", "steps", "resolution")},
           "faces": int(len(targets)), "steps": args.steps, "machine": cpu_info(),
           "loss": P.loss_description(args.ssim_weight, P.structural_term(gen.resolution), terms, portable=True),
           "results": {}}
    for space in spaces:
        t0 = time.time()
        lr = 0.1 if space != "z" else 0.05
        res = P.project(net, gen, targets, space=space, steps=args.steps, lr=lr, ssim_weight=args.ssim_weight,
                        log_every=50, progress=lambda s: print(s, file=sys.stderr, flush=True), terms=terms)
        rows = [P.scores(t, r) for t, r in zip(targets, res["reconstruction"])]
        out["results"][space] = dict(_summary(rows), lr=lr, seconds=round(time.time() - t0, 1))
    near = nearest_training(targets, args.data)
    out["results"]["nearest_training_image"] = _summary([P.scores(t, r) for t, r in zip(targets, near)])
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
