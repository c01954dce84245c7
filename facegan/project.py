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
with a prior term lambda (|z|^2 / Z - 1)^2 keeping z on the Gaussian shell).

The loss, per image, uses what is available offline (all in [-1, 1] pixel space):

- pixel MSE (weight 1);
- `--ssim-weight` x (1 - MS-SSIM), the 5-scale MS-SSIM of Wang et al. 2003 (11-px Gaussian
  window, their scale weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333) where the resolution allows
  it: tf.image.ssim_multiscale needs a side > (11 - 1) x 2^4 = 160 px, so up to 128 px (the 32 px
  models here) it falls back to single-scale SSIM (`structural_term`); the report names which;
- `--discriminator-weight` x the distance between the trained discriminator's features of the
  reconstruction and of the photo (`--discriminator RUN_DIR`, or `auto`: the run folder the
  export's metadata records). D is rebuilt from the run's config and restored from its checkpoint
  (the one the export was made from when the metadata names it, else the newest). Layers: the
  last activation at each spatial resolution of D (`discriminator_feature_layers`), up to the
  first layer that mixes the batch's images (StyleGAN2's minibatch stddev) or leaves the grid
  (Flatten); the distance is LPIPS's form without learned weights (unit-normalise each position's
  channel vector, squared difference summed over channels, averaged over positions, then over
  layers);
- `--lpips-weight` x LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
  as a Perceptual Metric", v0.1 over VGG16) when its weights are given by path
  (`--lpips-weights FILE.npz`, format in `load_lpips`; nothing is downloaded): the same
  normalised squared difference at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, weighted per
  channel by the linear layers, averaged over positions and summed over the five layers.

Writes to --out: `latent.npy` (z [Z], w [w_dim] or W+ [num_ws, w_dim]), `target.png`,
`reconstruction.png`, `side_by_side.png` (target | reconstruction) and `projection.json` with
PSNR, SSIM and MS-SSIM of the reconstruction (uint8 images, as metrics/ms_ssim.py computes them),
the loss's terms and weights, and the loss (and each term) per logged step. Progress prints the loss.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

# Wang et al. 2003's 5 scale weights and 11-px window, as the MS-SSIM metric uses them.
from facegan.metrics.ms_ssim import FILTER_SIZE as MS_SSIM_FILTER, WEIGHTS as MS_SSIM_WEIGHTS

EXAMPLES = """example:
  facegan project --model models/faces/1 --image face.jpg --out proj --steps 300
  facegan project --model models/stylegan/3 --image face.jpg --space wplus --crop celeba --out proj_wplus
  facegan project --model runs/sg2/export --image face.jpg --discriminator auto --lpips-weights lpips_vgg.npz \
      --out proj_perceptual"""

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
    if not same_image(mine_img, served):
        raise ValueError(f"{export_dir}: the rebuilt generator does not reproduce the export's images")
    return net, gen


def same_image(a: np.ndarray, b: np.ndarray, *, min_psnr: float = 40.0) -> bool:
    """Whether two uint8 renderings of one latent are the same image up to arithmetic: PSNR of one
    against the other >= `min_psnr` dB. The rebuilt generator computes in float32 while the export
    of a mixed_bfloat16 run computes in bf16 (and the saved graph fuses kernels differently): on a
    StyleGAN2 trained 80 kimg in bf16, 16 latents differ by 0.61 levels on average and 12 at most
    (about 49 dB), where other weights give a different image (tens of levels, below 30 dB)."""
    from facegan.metrics.paired import psnr
    if np.shape(a) != np.shape(b):
        return False
    return float(psnr(np.asarray(a)[None], np.asarray(b)[None])[0]) >= min_psnr   # the batch as one image


# -- the loss's terms -----------------------------------------------------------------------------------


def structural_term(resolution: int) -> str:
    """"ms_ssim" where the 5-scale MS-SSIM fits (side > (11 - 1) * 2^4 = 160 px), else "ssim"."""
    return "ms_ssim" if int(resolution) > (MS_SSIM_FILTER - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) else "ssim"


def structural_distance(y, x, kind: str):
    """[N]: 1 - SSIM or 1 - MS-SSIM of images in [-1, 1]."""
    import tensorflow as tf
    if kind == "ms_ssim":
        return 1.0 - tf.image.ssim_multiscale(y, x, max_val=2.0, power_factors=MS_SSIM_WEIGHTS,
                                              filter_size=MS_SSIM_FILTER, filter_sigma=1.5)
    return 1.0 - tf.image.ssim(y, x, max_val=2.0, filter_size=min(MS_SSIM_FILTER, int(y.shape[1])), filter_sigma=1.5)


def normalized_distance(fy, fx, channel_weights=None):
    """[N]: LPIPS's distance of one layer: each position's channel vector unit-normalised, the
    squared difference (times per-channel weights, LPIPS's linear layer) summed over channels and
    averaged over positions."""
    import tensorflow as tf

    def unit(f):
        return f / (tf.sqrt(tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)) + 1e-10)
    d = tf.square(unit(tf.cast(fy, tf.float32)) - unit(tf.cast(fx, tf.float32)))
    if channel_weights is not None:
        d = d * channel_weights
    return tf.reduce_mean(tf.reduce_sum(d, axis=-1), axis=[1, 2])


class FeatureTerm:
    """A weighted feature distance: `features(images [-1, 1]) -> [feature maps]`, and the
    per-image distance of two feature lists (`reduce`: mean or sum over layers)."""

    def __init__(self, name: str, weight: float, features, reduce: str = "mean", channel_weights=None,
                 info: Optional[dict] = None):
        self.name, self.weight, self.features, self.reduce = name, float(weight), features, reduce
        self.channel_weights = channel_weights
        self.info = dict(info or {})

    def distance(self, fy, fx):
        import tensorflow as tf
        ws = self.channel_weights or [None] * len(fy)
        per_layer = tf.stack([normalized_distance(a, b, w) for a, b, w in zip(fy, fx, ws)], axis=0)
        return tf.reduce_mean(per_layer, 0) if self.reduce == "mean" else tf.reduce_sum(per_layer, 0)


# -- the discriminator's features ----------------------------------------------------------------------
_BATCH_MIXING = ("MinibatchStddev", "MinibatchDiscrimination")


def discriminator_feature_layers(d) -> List:
    """D's layers whose outputs the projection compares: the last one at each spatial resolution
    (rank-4 outputs, the input excluded), up to the first layer that mixes the batch's images
    (minibatch stddev / discrimination: a lone image would see itself) or flattens the grid."""
    import tensorflow as tf
    chosen, size = [], None
    for layer in d.layers:
        if type(layer).__name__ in _BATCH_MIXING or isinstance(layer, tf.keras.layers.Flatten):
            break
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        shape = layer.output.shape
        if shape.rank != 4:
            continue
        if chosen and shape[1] == size:
            chosen[-1] = layer                      # a later layer at the same resolution
        else:
            chosen.append(layer)
            size = shape[1]
    if not chosen:
        raise ValueError(f"discriminator {d.name} has no spatial layers before it mixes or flattens the batch")
    return chosen


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def load_discriminator(run_dir: str, export_meta: dict, weight: float) -> FeatureTerm:
    """The feature term of a run folder's trained D (`run_dir` "auto": the folder the export's
    metadata records). ValueError in one line naming the folder and what is wrong."""
    import tensorflow as tf
    from facegan.trainer.config import Config
    from facegan.trainer.networks import build_networks
    recorded = (export_meta.get("checkpoint") or {})
    if run_dir == "auto":
        run_dir = recorded.get("run_dir") or export_meta.get("run_dir")
        if not run_dir:
            raise ValueError("--discriminator auto: the export's metadata records no run folder; "
                             "give --discriminator RUN_DIR (the training run's output folder)")
    flag = f"--discriminator {run_dir}"
    if not os.path.isdir(run_dir):
        raise ValueError(f"{flag}: no such run folder")
    config_path = os.path.join(run_dir, "config.json")
    try:
        cfg = Config.from_dict(_read_json(config_path) if os.path.isfile(config_path) else export_meta["config"])
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{flag}: no usable training config ({config_path}: {e})") from None
    want = export_meta.get("config") or {}
    for section, field in (("network", "architecture"), ("network", "resolution")):
        mine, theirs = getattr(getattr(cfg, section), field), (want.get(section) or {}).get(field)
        if theirs is not None and mine != theirs:
            raise ValueError(f"{flag}: the run's {section}.{field} is {mine}, the export's {theirs}: "
                             "not the run this generator was trained in")
    ckpt = None
    if recorded.get("path") and os.path.abspath(recorded.get("run_dir") or "") == os.path.abspath(run_dir) \
            and tf.io.gfile.exists(str(recorded["path"]) + ".index"):
        ckpt = recorded["path"]                     # the checkpoint the export was made from
    ckpt = ckpt or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not ckpt:
        raise ValueError(f"{flag}: no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    d = build_networks(cfg).discriminator
    status = tf.train.Checkpoint(discriminator=d).restore(ckpt)
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError:
        raise ValueError(f"{flag}: checkpoint {ckpt} holds no discriminator matching the run's config") from None
    layers = discriminator_feature_layers(d)
    image_input = d.inputs[0] if isinstance(d.inputs, list) else d.inputs
    model = tf.keras.Model(image_input, [layer.output for layer in layers])

    def features(images):
        out = model(images, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]
    return FeatureTerm("discriminator", weight, features, reduce="mean",
                       # D's layer index and type (Keras' automatic names change from process to process)
                       info={"run_dir": os.path.abspath(run_dir), "checkpoint": ckpt,
                             "layers": [f"{d.layers.index(layer)}:{type(layer).__name__} "
                                        f"{layer.output.shape[1]}x{layer.output.shape[2]}x{layer.output.shape[3]}"
                                        for layer in layers]})


# -- LPIPS ----------------------------------------------------------------------------------------------
VGG16_BLOCKS = (2, 2, 3, 3, 3)          # convs per block; LPIPS taps each block's last ReLU
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer (on [-1, 1] RGB)
LPIPS_SCALE = (0.458, 0.448, 0.450)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)   # Keras VGG16's preprocess_input ("caffe")


def vgg16_layer_names() -> List[str]:
    return [f"block{b + 1}_conv{c + 1}" for b, n in enumerate(VGG16_BLOCKS) for c in range(n)]


def load_lpips(path: str, weight: float) -> FeatureTerm:
    """LPIPS from one .npz file (nothing downloaded). The file holds:

    - `block{b}_conv{c}/kernel` float [3, 3, C_in, C_out] and `block{b}_conv{c}/bias` [C_out] for
      VGG16's 13 convolutions (Keras' layer names and HWIO kernel layout: a Keras VGG16's
      `layer.kernel` / `layer.bias`; a torchvision kernel [C_out, C_in, 3, 3] transposed by
      (2, 3, 1, 0)); C_in of block1_conv1 is 3 (RGB), each next C_in the previous C_out;
    - `lin0` ... `lin4` float [C]: LPIPS's linear-layer weights (lpips v0.1's `linN.model.1.weight`
      flattened), C the channels of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
    - optional `preprocess`: "lpips" (default: RGB in [-1, 1] scaled by LPIPS's ScalingLayer, for
      torchvision's VGG16, on which LPIPS's linear layers were trained) or "caffe" (Keras VGG16's:
      BGR in [0, 255] minus the ImageNet mean).

    Max pooling uses SAME padding, so models smaller than 16 px still reach relu5_3."""
    import tensorflow as tf
    flag = f"--lpips-weights {path}"
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except (OSError, ValueError) as e:
        raise ValueError(f"{flag}: not a .npz file ({type(e).__name__}: {e})") from None
    preprocess = str(data["preprocess"]) if "preprocess" in keys else "lpips"
    if preprocess not in ("lpips", "caffe"):
        raise ValueError(f"{flag}: preprocess {preprocess!r} must be 'lpips' or 'caffe'")
    convs, taps, c_in = [], [], 3
    names = vgg16_layer_names()
    for name in names:
        for part in ("kernel", "bias"):
            if f"{name}/{part}" not in keys:
                raise ValueError(f"{flag}: missing {name}/{part} (VGG16's 13 convolutions, Keras names)")
        k, b = np.asarray(data[f"{name}/kernel"], np.float32), np.asarray(data[f"{name}/bias"], np.float32)
        if k.ndim != 4 or k.shape[:3] != (3, 3, c_in) or b.shape != (k.shape[3],):
            raise ValueError(f"{flag}: {name}/kernel {list(k.shape)} and bias {list(b.shape)} must be "
                             f"[3, 3, {c_in}, C] and [C]")
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(b))):
            raise ValueError(f"{flag}: {name} holds NaN or Inf")
        convs.append((tf.constant(k), tf.constant(b)))
        c_in = k.shape[3]
    ends = np.cumsum(VGG16_BLOCKS) - 1                  # index of each block's last conv
    lins = []
    for i, end in enumerate(ends):
        key, channels = f"lin{i}", convs[end][0].shape[3]
        if key not in keys:
            raise ValueError(f"{flag}: missing {key} (LPIPS's linear weights for {names[end]})")
        lin = np.asarray(data[key], np.float32).reshape(-1)
        if lin.shape != (channels,) or not np.all(np.isfinite(lin)):
            raise ValueError(f"{flag}: {key} must be {channels} finite weights ({names[end]}'s channels), "
                             f"got shape {list(np.shape(data[key]))}")
        lins.append(tf.constant(lin))
    taps = set(int(e) for e in ends)

    def features(images):
        x = tf.cast(images, tf.float32)
        if preprocess == "lpips":
            x = (x - tf.constant(LPIPS_SHIFT)) / tf.constant(LPIPS_SCALE)
        else:
            x = (x + 1.0) * 127.5
            x = x[..., ::-1] - tf.constant(CAFFE_MEAN_BGR)
        out = []
        for i, (k, b) in enumerate(convs):
            x = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME") + b)
            if i in taps:
                out.append(x)
                if len(out) < len(VGG16_BLOCKS):
                    x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        return out
    return FeatureTerm("lpips", weight, features, reduce="sum", channel_weights=lins,
                       info={"weights": os.path.abspath(path), "preprocess": preprocess})


def projection_loss(y, x, *, ssim_weight: float, structural: str, terms=(), target_features=()):
    """(loss [N], {term: [N]}) of images y against targets x (both [-1, 1]); target_features: each
    term's features of x, computed once."""
    import tensorflow as tf
    parts = {"mse": tf.reduce_mean(tf.square(y - x), axis=[1, 2, 3])}
    loss = parts["mse"]
    if ssim_weight:
        parts[structural] = structural_distance(y, x, structural)
        loss = loss + ssim_weight * parts[structural]
    for term, fx in zip(terms, target_features):
        parts[term.name] = term.distance(term.features(y), fx)
        loss = loss + term.weight * parts[term.name]
    return loss, parts


def project(net, gen, target: np.ndarray, *, space: str, steps: int, lr: float, ssim_weight: float,
            prior_weight: float = 1e-3, log_every: int = 25, progress=print, z_init=None,
            terms: Sequence[FeatureTerm] = ()) -> Dict:
    """Project target uint8 [R, R, 3] (or a batch [N, R, R, 3], each image independently).
    z_init: the starting z ([Z] or [N, Z]; default the prior's mean, 0). terms: the feature terms
    (discriminator, LPIPS) beside the pixel and structural ones."""
    import tensorflow as tf
    w_space = gen.metadata.get("truncation") == "w_space"
    if space in ("w", "wplus") and not w_space:
        raise ValueError(f"--space {space}: this {gen.metadata.get('architecture', '?')} generator has no W space; "
                         "use --space z")
    single = target.ndim == 3                 # one image, or a batch projected independently
    targets = target[None] if single else target
    n = len(targets)
    x = tf.constant(targets.astype(np.float32) / 127.5 - 1.0)
    structural = structural_term(targets.shape[1])
    target_features = [[tf.stop_gradient(f) for f in term.features(x)] for term in terms]
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
            loss, parts = projection_loss(y, x, ssim_weight=ssim_weight, structural=structural, terms=terms,
                                          target_features=target_features)
            if space == "z":
                loss += prior_weight * tf.square(tf.reduce_mean(tf.square(var), axis=1) - 1.0)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, var)
        # MS-SSIM's power of a clipped (0) contrast term has an infinite derivative: skip those entries.
        grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
        opt.apply_gradients([(grad, var)])
        return tf.reduce_mean(loss), {k: tf.reduce_mean(v) for k, v in parts.items()}

    history = []
    t0 = time.time()
    for i in range(int(steps)):
        t = i / max(1, steps - 1)
        # NVlabs projector: lr ramp-up over the first 5 %, cosine ramp-down over the last 25 %.
        rate = lr * min(1.0, t / 0.05) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / 0.25)))
        rate = max(rate, lr * 1e-3)
        loss, parts = step(tf.constant(rate, tf.float32))
        if (i + 1) % log_every == 0 or i == 0 or i + 1 == steps:
            history.append({"step": i + 1, "loss": float(loss), **{k: float(v) for k, v in parts.items()}})
            progress(f"step {i + 1}/{steps}: loss {float(loss):.4f} ("
                     + ", ".join(f"{k} {float(v):.4f}" for k, v in parts.items())
                     + f") {(i + 1) / (time.time() - t0):.1f} steps/s")
    from facegan.generator import to_uint8
    recon = to_uint8(render()).numpy()
    latent = var.numpy()
    return {"latent": latent[0] if single else latent, "reconstruction": recon[0] if single else recon,
            "history": history, "structural": structural}


def loss_description(ssim_weight: float, structural: str, terms: Sequence[FeatureTerm], portable: bool = False) -> Dict:
    """The loss's terms and weights as the report records them (portable: file names without their
    folders, for JSON that is committed)."""
    out = {"mse": 1.0}
    if ssim_weight:
        out[structural] = float(ssim_weight)
    for term in terms:
        info = {k: (os.path.basename(str(v)) if portable and k in ("run_dir", "checkpoint", "weights") else v)
                for k, v in term.info.items()}
        out[term.name] = dict(info, weight=term.weight)
    return out


def scores(target: np.ndarray, recon: np.ndarray) -> Dict[str, float]:
    """PSNR (dB; metrics/paired.py's, capped at PSNR_CAP for identical images so the report stays
    JSON), SSIM and MS-SSIM of uint8 images (MS-SSIM with as many scales as the size allows)."""
    import tensorflow as tf

    from facegan.metrics.paired import psnr
    a, b = tf.constant(target[None]), tf.constant(recon[None])
    out = {"psnr": float(psnr(recon[None], target[None])[0]),
           "ssim": float(tf.image.ssim(a, b, 255, filter_size=min(11, target.shape[0]))[0])}
    # tf's MS-SSIM needs side > (filter_size - 1) * 2^(scales - 1): keep the scales that fit.
    weights = MS_SSIM_WEIGHTS
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
    add_loss_arguments(parser)


def add_loss_arguments(parser: argparse.ArgumentParser):
    """The loss's flags (also bench/projection.py's)."""
    parser.add_argument("--ssim-weight", type=float, default=0.5,
                        help="weight of (1 - MS-SSIM) beside the pixel MSE (1 - SSIM up to 160 px, where the "
                             "5-scale MS-SSIM does not fit)")
    parser.add_argument("--discriminator", default=None, metavar="RUN_DIR|auto",
                        help="add the trained discriminator's feature distance: the training run folder holding "
                             "its checkpoint, or auto (the run folder the export's metadata records)")
    parser.add_argument("--discriminator-weight", type=float, default=0.1,
                        help="weight of the discriminator feature distance (with --discriminator)")
    parser.add_argument("--lpips-weights", default=None, metavar="FILE.npz",
                        help="add LPIPS with these weights (VGG16 convolutions + LPIPS linear layers in one .npz; "
                             "see docs/explore.md)")
    parser.add_argument("--lpips-weight", type=float, default=1.0, help="weight of LPIPS (with --lpips-weights)")


def loss_terms(args, export_meta: dict) -> List[FeatureTerm]:
    """The feature terms the flags ask for; ValueError in one line naming the flag."""
    for flag, value in (("--ssim-weight", args.ssim_weight), ("--discriminator-weight", args.discriminator_weight),
                        ("--lpips-weight", args.lpips_weight)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{flag} {value}: must be a finite number >= 0")
    terms = []
    if args.discriminator:
        terms.append(load_discriminator(args.discriminator, export_meta, args.discriminator_weight))
    if args.lpips_weights:
        terms.append(load_lpips(args.lpips_weights, args.lpips_weight))
    return terms


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
    from facegan.generator import read_metadata
    try:
        meta = read_metadata(args.model)
    except (ValueError, OSError) as e:
        print(f"facegan project: --model {args.model}: {e}", file=sys.stderr)
        return 2
    try:            # the loss's files first: a wrong one is refused before the generator is rebuilt
        terms = loss_terms(args, meta)
    except ValueError as e:
        print(f"facegan project: {e}", file=sys.stderr)
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
                      progress=lambda s: print(s, flush=True), terms=terms)
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
              "loss": loss_description(args.ssim_weight, res["structural"], terms),
              "resolution": gen.resolution, "scores": s, "history": res["history"]}
    with open(os.path.join(args.out, "projection.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"reconstruction: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}, MS-SSIM {s['ms_ssim']:.4f} "
          f"({s['ms_ssim_scales']} scales); wrote {args.out}/latent.npy, side_by_side.png, projection.json")
    return 0
