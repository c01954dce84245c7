"""`facegan project`: find the latent that reproduces a face (GAN inversion by optimisation).

    facegan project --model models/faces/1 --image face.jpg --out proj/ [--steps 300] [--space w|wplus|z]

The photo goes through ingestion's own code (facegan/ingest/image_ops.py: decode
with EXIF orientation and RGB conversion, the `--crop` policy, LANCZOS resize to the model's
resolution), exactly as training images did. The generator is rebuilt from the export's training
config (metadata `config`) and given the SavedModel's weights (restored by object path from its
checkpoint), checked against the served `generate` signature before any step (within 3/255:
eager and graph kernels round differently) (the SavedModel's own functions end in a uint8 cast, which
has no gradient).

As NVlabs' StyleGAN2 projector (Karras et al. 2020, §5 and `projector.py`): the latent starts at
the mean (w_avg in W, 0 in z) and Adam (lr `--lr`, 0.1 there) minimises the distance between the
generated and the target image; the learning rate ramps up over the first 5% of the steps and
down (cosine) over the last 25%. Spaces: `w` (one w for every layer), `wplus` (one w per layer:
W+, Abdal et al. 2019, "Image2StyleGAN"), `z` (the only one for DCGAN-family generators, and
with a prior term lambda (|z|^2 / Z - 1)^2 keeping z on the Gaussian shell). The loss uses what
is available offline: pixel MSE plus (1 - SSIM) (weight `--ssim-weight`), both in [-1, 1] pixel
space; LPIPS and the discriminator's features are not used (no LPIPS weights ship here, and an
export holds the generator only).

Writes to --out: `latent.npy` (z [Z], w [w_dim] or W+ [num_ws, w_dim]), `target.png`,
`reconstruction.png`, `side_by_side.png` (target | reconstruction) and `projection.json` with
PSNR, SSIM and MS-SSIM of the reconstruction (uint8 images, as metrics/ms_ssim.py computes them)
and the loss per logged step. Progress prints the loss.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict

import numpy as np

EXAMPLES = """example:
  facegan project --model models/faces/1 --image face.jpg --out proj --steps 300
  facegan project --model models/stylegan/3 --image face.jpg --space wplus --crop celeba --out proj_wplus"""

SPACES = ("w", "wplus", "z")


def load_target(path: str, resolution: int, crop: str) -> np.ndarray:
    """uint8 [R, R, 3] from an image file, by ingestion's decode -> crop -> LANCZOS resize."""
    from facegan.ingest import image_ops as IM
    with open(path, "rb") as f:
        data = f.read()
    rgb, _ = IM.decode(data, min_side=1)
    return IM.square_crop_resize(rgb, resolution, crop=crop)


def rebuild_generator(export_dir: str):
    """(Keras generator with the export's weights, metadata); ValueError when it cannot be rebuilt."""
    import tensorflow as tf
    from facegan.generator import load_generator
    from facegan.trainer.config import Config
    from facegan.trainer.networks import build_networks
    gen = load_generator(export_dir)
    meta = gen.metadata
    if gen.kind != "unconditional":
        raise ValueError(f"{export_dir}: projection needs an unconditional generator; this one is {gen.kind}")
    if "config" not in meta:
        raise ValueError(f"{export_dir}: the export has no training config in its metadata (exported outside "
                         "facegan train), so its generator cannot be rebuilt for gradients")
    cfg = Config.from_dict(meta["config"])
    net = build_networks(cfg).generator
    z = tf.zeros([1, gen.z_dim])
    net(z, training=False)
    # The SavedModel's variables are a checkpoint whose root is the export module, and the
    # generator is its `generator` attribute: restore by object path (names and order may differ).
    tf.train.Checkpoint(generator=net).restore(os.path.join(export_dir, "variables", "variables")).expect_partial()
    # The rebuilt network must be the served one: same pixels as the `generate` signature.
    zs = np.random.default_rng(0).standard_normal((2, gen.z_dim)).astype(np.float32)
    from facegan.generator import to_uint8
    mine_img = to_uint8(net(tf.constant(zs), training=False)).numpy()
    served = gen.generate(zs, 1.0)   # psi 1: the same network call as the export's
    # Eager vs the saved graph's kernels: a rounding step or two, never a different image.
    if np.abs(mine_img.astype(int) - served).max() > 3:
        raise ValueError(f"{export_dir}: the rebuilt generator does not reproduce the export's images")
    return net, gen


def _ssim(a, b):
    import tensorflow as tf
    return tf.image.ssim(a, b, max_val=2.0, filter_size=min(11, int(a.shape[1])), filter_sigma=1.5)


def project(net, gen, target: np.ndarray, *, space: str, steps: int, lr: float, ssim_weight: float,
            prior_weight: float = 1e-3, log_every: int = 25, progress=print, z_init=None) -> Dict:
    """Project target uint8 [R, R, 3] (or a batch [N, R, R, 3], each image independently).
    z_init: the starting z ([Z] or [N, Z]; default the prior's mean, 0)."""
    import tensorflow as tf
    w_space = gen.metadata.get("truncation") == "w_space"
    if space in ("w", "wplus") and not w_space:
        raise ValueError(f"--space {space}: this {gen.metadata.get('architecture', '?')} generator has no W space; "
                         "use --space z")
    single = target.ndim == 3                 # one image, or a batch projected independently
    targets = target[None] if single else target
    n = len(targets)
    x = tf.constant(targets.astype(np.float32) / 127.5 - 1.0)
    if space == "z":
        start = np.zeros([n, gen.z_dim], np.float32) if z_init is None else \
            np.broadcast_to(np.asarray(z_init, np.float32), (n, gen.z_dim))
        var = tf.Variable(start)
    elif space == "w":
        var = tf.Variable(tf.tile(tf.identity(net.w_avg)[None], [n, 1]))
    else:
        var = tf.Variable(tf.tile(tf.identity(net.w_avg)[None, None], [n, net.num_ws, 1]))

    def render():
        if space == "z":
            return net(var, training=False)
        ws = var if space == "wplus" else tf.tile(var[:, None], [1, net.num_ws, 1])
        return net.synthesis(ws)

    opt = tf.keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999)

    @tf.function
    def step(rate):
        opt.learning_rate.assign(rate)
        with tf.GradientTape() as tape:
            y = tf.cast(render(), tf.float32)
            # Per image, summed: Adam is elementwise, so a batch is n independent projections.
            mse = tf.reduce_mean(tf.square(y - x), axis=[1, 2, 3])
            loss = mse + ssim_weight * (1.0 - _ssim(y, x))
            if space == "z":
                loss += prior_weight * tf.square(tf.reduce_mean(tf.square(var), axis=1) - 1.0)
            total = tf.reduce_sum(loss)
        opt.apply_gradients([(tape.gradient(total, var), var)])
        return tf.reduce_mean(loss), tf.reduce_mean(mse)

    history = []
    t0 = time.time()
    for i in range(int(steps)):
        t = i / max(1, steps - 1)
        # NVlabs projector: lr ramp-up over the first 5 %, cosine ramp-down over the last 25 %.
        rate = lr * min(1.0, t / 0.05) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / 0.25)))
        rate = max(rate, lr * 1e-3)
        loss, mse = step(tf.constant(rate, tf.float32))
        if (i + 1) % log_every == 0 or i == 0 or i + 1 == steps:
            history.append({"step": i + 1, "loss": float(loss), "mse": float(mse)})
            progress(f"step {i + 1}/{steps}: loss {float(loss):.4f} (pixel MSE {float(mse):.4f}) "
                     f"{(i + 1) / (time.time() - t0):.1f} steps/s")
    from facegan.generator import to_uint8
    recon = to_uint8(render()).numpy()
    latent = var.numpy()
    return {"latent": latent[0] if single else latent, "reconstruction": recon[0] if single else recon,
            "history": history}


def scores(target: np.ndarray, recon: np.ndarray) -> Dict[str, float]:
    """PSNR (dB), SSIM and MS-SSIM of uint8 images (MS-SSIM with as many scales as the size allows)."""
    import tensorflow as tf
    a, b = tf.constant(target[None]), tf.constant(recon[None])
    mse = float(np.mean((target.astype(np.float64) - recon) ** 2))
    out = {"psnr": float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse),
           "ssim": float(tf.image.ssim(a, b, 255, filter_size=min(11, target.shape[0]))[0])}
    # tf's MS-SSIM needs side > (filter_size - 1) * 2^(scales - 1): keep the scales that fit.
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    size = min(11, target.shape[0] // 4)
    scales = max(1, min(5, int(math.log2(target.shape[0] / max(1, size - 1))) + 1 if size > 1 else 1))
    while scales > 1 and target.shape[0] <= (size - 1) * 2 ** (scales - 1):
        scales -= 1
    w = np.asarray(weights[:scales]) / np.sum(weights[:scales])
    out["ms_ssim"] = float(tf.image.ssim_multiscale(tf.cast(a, tf.float32), tf.cast(b, tf.float32), 255,
                                                    power_factors=tuple(w), filter_size=size)[0])
    out["ms_ssim_scales"] = int(scales)
    return out


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--model", required=True, help="generator SavedModel version directory (exported by facegan train)")
    parser.add_argument("--image", required=True, help="the face photo (any format ingestion reads)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
    parser.add_argument("--space", choices=SPACES, default=None,
                        help="latent space: w / wplus (StyleGAN2) or z (default: w for StyleGAN2, z otherwise)")
    parser.add_argument("--crop", choices=("center", "celeba", "none"), default="center",
                        help="ingestion's crop policy (use the one the model's data was ingested with)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.1 in W, 0.05 in z)")
    parser.add_argument("--ssim-weight", type=float, default=0.5, help="weight of (1 - SSIM) beside the pixel MSE")


def main(args) -> int:
    from facegan.images import encode_png, make_grid
    if args.steps < 1:
        print(f"facegan project: --steps {args.steps}: must be >= 1", file=sys.stderr)
        return 2
    if not os.path.isfile(args.image):
        print(f"facegan project: --image {args.image}: no such file", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        print(f"facegan project: --model {args.model}: not a SavedModel version directory", file=sys.stderr)
        return 2
    try:
        net, gen = rebuild_generator(args.model)
    except (ValueError, OSError, KeyError) as e:
        print(f"facegan project: --model {args.model}: {e}", file=sys.stderr)
        return 2
    from facegan.ingest.options import Rejected
    try:
        target = load_target(args.image, gen.resolution, args.crop)
    except Rejected as e:
        print(f"facegan project: --image {args.image}: {e}", file=sys.stderr)
        return 2
    w_space = gen.metadata.get("truncation") == "w_space"
    space = args.space or ("w" if w_space else "z")
    lr = args.lr or (0.1 if space != "z" else 0.05)
    try:
        res = project(net, gen, target, space=space, steps=args.steps, lr=lr, ssim_weight=args.ssim_weight,
                      progress=lambda s: print(s, flush=True))
    except ValueError as e:
        print(f"facegan project: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "latent.npy"), res["latent"])
    for name, img in (("target", target), ("reconstruction", res["reconstruction"]),
                      ("side_by_side", make_grid(np.stack([target, res["reconstruction"]]), cols=2))):
        with open(os.path.join(args.out, f"{name}.png"), "wb") as f:
            f.write(encode_png(img))
    s = scores(target, res["reconstruction"])
    report = {"model": os.path.abspath(args.model), "image": os.path.abspath(args.image), "space": space,
              "steps": args.steps, "lr": lr, "ssim_weight": args.ssim_weight, "crop": args.crop,
              "resolution": gen.resolution, "scores": s, "history": res["history"]}
    with open(os.path.join(args.out, "projection.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"reconstruction: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}, MS-SSIM {s['ms_ssim']:.4f} "
          f"({s['ms_ssim_scales']} scales); wrote {args.out}/latent.npy, side_by_side.png, projection.json")
    return 0
