"""Memorization check: are generated samples copies of training images?

For K generated images we stream the training split once and keep, per sample, its `k` nearest
training images in two spaces:
- feature space: L2 between the extractor's pool features (semantic near-duplicates);
- pixel space: L2 between images box-downscaled to `pixel_size` (default 64) on [0, 255]
  (RMSE reported: literal copies).
The PNG sheet has one row per sample: generated | k feature-space NNs | gap | k pixel-space NNs
(k = 5 by default, as HDCGAN's figure shows 5 neighbours per sample),
like the nearest-neighbour figure of the HDCGAN paper (Curto et al. 2017) and DCGAN/PGGAN.

Score (lower is better, 0 = nothing looks copied):
- with `reference_batches` (real images held out of training, e.g. the eval split):
  `copy_fraction` = fraction of samples whose feature-space NN distance is below the
  `quantile` (default 5%) of the same distance for the held-out real images, i.e. closer to the
  training set than genuinely novel faces usually are; `nn_ratio` = median sample NN distance /
  median held-out NN distance (< 1: samples hug the training set);
- always: `exact_copy_fraction` = fraction of samples within `copy_rmse` (default 4 grey levels)
  RMSE of a training image in pixel space.
`score` is `copy_fraction` when a reference is given, else `exact_copy_fraction`.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, Iterable, Optional

import numpy as np

from facegan.images import save_grid
from facegan.progress import Progress

NEIGHBOURS = 5   # per space and sample, as in HDCGAN's nearest-neighbour figure (Curto et al.)


def _box_resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, size, size, 3]: integer box downscale or PIL bilinear."""
    n, h, w, c = images.shape
    x = images.astype(np.float32)
    if h == size and w == size:
        return x
    if h % size == 0 and w % size == 0:
        fh, fw = h // size, w // size
        return x.reshape(n, size, fh, size, fw, c).mean(axis=(2, 4))
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR), np.float32)
                     for im in images])


def _to_size(images: np.ndarray, hw) -> np.ndarray:
    if images.shape[1:3] == tuple(hw):
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((hw[1], hw[0]), Image.BILINEAR)) for im in images])


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


class _TopK:
    def __init__(self, n: int, k: int, keep_images: bool, image_shape=None):
        self.d = np.full((n, k), np.inf)
        self.idx = np.full((n, k), -1, np.int64)
        self.images = np.zeros((n, k) + tuple(image_shape), np.uint8) if keep_images else None

    def update(self, dist: np.ndarray, offset: int, batch_images=None):
        k = self.d.shape[1]
        cand_d = np.concatenate([self.d, dist], axis=1)
        cand_i = np.concatenate([self.idx, offset + np.arange(dist.shape[1])[None, :].repeat(len(dist), 0)], 1)
        order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(dist))[:, None]
        if self.images is not None:
            from_batch = (order >= k)[:, :, None, None, None]
            self.images = np.where(from_batch, batch_images[np.clip(order - k, 0, None)],
                                   self.images[rows, np.minimum(order, k - 1)])
        self.d = cand_d[rows, order]
        self.idx = cand_i[rows, order]


def memorization(generated: np.ndarray, train_batches: Iterable[np.ndarray], out_png_path: Optional[str],
                 extractor="inception", reference_batches: Optional[Iterable[np.ndarray]] = None,
                 k: int = NEIGHBOURS, pixel_size: int = 64, quantile: float = 0.05, copy_rmse: float = 4.0,
                 max_reference: int = 1000, max_train: Optional[int] = None, progress: bool = True) -> Dict:
    """Nearest training images of each generated sample; writes the sheet; returns the score dict.

    `max_train` caps the training images compared (None: the whole stream), `max_reference` the
    held-out ones; `k` neighbours per space are shown on the sheet.
    """
    from facegan.metrics.features import get_extractor
    gen = np.asarray(generated)
    if gen.dtype != np.uint8 or gen.ndim != 4 or gen.shape[-1] != 3 or not len(gen):
        raise ValueError(f"memorization: generated must be uint8 [K, H, W, 3], got {gen.dtype} {gen.shape}")
    ext = get_extractor(extractor)
    hw = gen.shape[1:3]
    psize = min(pixel_size, hw[0], hw[1])
    out = sys.stderr if progress else open(os.devnull, "w")
    try:
        gfeat = ext(gen)["pool"]
        gpix = _box_resize(gen, psize).reshape(len(gen), -1)
        rfeat = None
        if reference_batches is not None:
            parts, got = [], 0
            for b in reference_batches:
                b = np.asarray(b)[: max_reference - got]
                parts.append(ext(b)["pool"])
                got += len(b)
                if got >= max_reference:
                    break
            if got < 2:
                raise ValueError(f"memorization: reference_batches gave {got} images; need at least 2")
            rfeat = np.concatenate(parts)
        top_f = _TopK(len(gen), k, True, gen.shape[1:])
        top_p = _TopK(len(gen), k, True, gen.shape[1:])
        ref_nn = np.full(len(rfeat), np.inf) if rfeat is not None else None
        bar = Progress(total=max_train, unit="images", label="memorization: train", stream=out)
        seen = 0
        for b in train_batches:
            b = np.asarray(b)
            if max_train is not None:
                b = b[: max_train - seen]
                if not len(b):
                    break
            if b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3:
                raise ValueError(f"memorization: train batches must be uint8 [B, H, W, 3], got {b.dtype} {b.shape}")
            tfeat = ext(b)["pool"]
            small = _to_size(b, hw)
            top_f.update(_sqdist(gfeat, tfeat), seen, small)
            top_p.update(_sqdist(gpix, _box_resize(b, psize).reshape(len(b), -1)), seen, small)
            if ref_nn is not None:
                ref_nn = np.minimum(ref_nn, _sqdist(rfeat, tfeat).min(axis=1))
            seen += len(b)
            bar.update(len(b))
        print(f"memorization: compared {len(gen)} samples with {seen} training images"
              + (f" ({max_train} at most)" if max_train is not None else " (the whole split)"),
              file=out, flush=True)
    finally:
        if not progress:
            out.close()
    if seen == 0:
        raise ValueError("memorization: the training stream is empty")
    feat_nn = np.sqrt(top_f.d[:, 0])
    pix_rmse = np.sqrt(top_p.d[:, 0] / gpix.shape[1])
    exact = pix_rmse <= copy_rmse
    result = {
        "num_generated": int(len(gen)), "num_train": int(seen), "k": int(k), "extractor": ext.name,
        "feature_nn_distance": feat_nn.tolist(), "pixel_nn_rmse": pix_rmse.tolist(),
        "feature_nn_index": top_f.idx[:, 0].tolist(), "pixel_nn_index": top_p.idx[:, 0].tolist(),
        "exact_copies": exact.tolist(), "exact_copy_fraction": float(exact.mean()),
        "copy_rmse": float(copy_rmse), "pixel_size": int(psize),
    }
    if ref_nn is not None:
        ref_d = np.sqrt(ref_nn)
        threshold = float(np.quantile(ref_d, quantile))
        flagged = feat_nn < threshold
        result.update({"num_reference": int(len(ref_d)), "quantile": float(quantile),
                       "threshold": threshold, "copies": flagged.tolist(),
                       "copy_fraction": float(flagged.mean()),
                       "nn_ratio": float(np.median(feat_nn) / max(np.median(ref_d), 1e-12))})
        result["score"] = result["copy_fraction"]
    else:
        result["score"] = result["exact_copy_fraction"]
    if out_png_path:
        result["sheet"] = write_sheet(gen, top_f.images, top_p.images, out_png_path)
    return result


def write_sheet(generated: np.ndarray, feat_nn: np.ndarray, pix_nn: np.ndarray, path: str) -> str:
    """Rows: generated | feature-space NNs | white gap | pixel-space NNs (uint8 PNG)."""
    n, k = feat_nn.shape[:2]
    gap = np.full((n, 1) + generated.shape[1:], 255, np.uint8)
    rows = np.concatenate([generated[:, None], feat_nn, gap, pix_nn], axis=1)   # [n, 2k+2, H, W, 3]
    if "://" not in path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return save_grid(rows.reshape((-1,) + generated.shape[1:]), path, cols=2 * k + 2)
