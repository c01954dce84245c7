"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"), usable with every architecture: D sees augment(x) for reals AND
fakes, with every augmentation applied with probability p, so the augmentations do not leak into G
when p < ~0.8 (ADA §2).

Augmentations (ADA Appendix B, the "bgc" pipeline plus cutout), differentiable w.r.t. the images
(every op is a linear map of the pixels for fixed random parameters; gradients flow through the
gather-based resampling to the input pixels):
  geometric, composed into one 3x3 matrix per image and applied with ONE bilinear resampling with
  reflect padding: xflip, rotate90, xint (integer translation, up to 0.125 of the size), scale
  (isotropic, log2 ~ N(0, 0.2^2)), rotate (arbitrary angle, applied before and after aniso with
  p_rot = 1 - sqrt(1 - p) each, as NVlabs), aniso (log2 ~ N(0, 0.2^2));
  color, composed into one 4x4 matrix on homogeneous RGB: brightness (+N(0, 0.2^2)), contrast
  (x 2^N(0, 0.5^2)), lumaflip (Householder reflection along the luma axis), hue (rotation about
  the luma axis by U(-pi, pi)), saturation (off-luma component x 2^N(0, 1));
  cutout: a square of half the image side at a uniform centre set to mid-gray.
Deviations: bilinear resampling (NVlabs uses a 12-tap wavelet upsampling before resampling);
no fractional translation; outputs are clipped to the input's value range (the spec: augmented
images stay in range), which zeroes the gradient only where a pixel is clipped.

Randomness: only from an explicit stateless `seed` ([2] int); per-example parameters are drawn
for `rows = (global_batch, offset)` and sliced, so a replica's examples get the same parameters
whatever the replica count (the project's replica-independence rule).

Modes (`AdaptiveAugment`):
  "ada"         p starts at `p` (0) and every `interval` (4) minibatches moves by
                sign(r_t - target) * (batch * interval) / speed_images, r_t = E[sign(D(real))]
                over those minibatches, target 0.6, clipped to [0, 1] (ADA §3; NVlabs
                ada_kimg = 500 -> speed_images = 500_000);
  "fixed"       p constant;
  "diffaugment" always on (p = 1) with a DiffAugment policy (Zhao et al. 2020), e.g.
                "color,translation,cutout" -> brightness, saturation, contrast; xint; cutout
                (ADA's parameter distributions, not DiffAugment's);
  "none"        identity.
State (p, r_t, the pending sign sum / count, minibatch counter) lives in variables, so a
tf.train.Checkpoint of the module restores it exactly.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
AUGMENTATIONS = GEOMETRIC + COLOR + ("cutout",)
PIPELINES: Dict[str, Tuple[str, ...]] = {
    "bgc": GEOMETRIC + COLOR,                # ADA's default pipeline
    "bgcc": GEOMETRIC + COLOR + ("cutout",),  # + cutout
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso"),
    "color": COLOR,
}
DIFFAUGMENT_POLICIES: Dict[str, Tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("xint",),
    "cutout": ("cutout",),
}
MODES = ("ada", "fixed", "diffaugment", "none")

_V = 1.0 / math.sqrt(3.0)   # unit luma axis (1, 1, 1) / sqrt(3) in homogeneous RGB
_LUMA = np.array([_V, _V, _V, 0.0], np.float32)


def check_ops(ops: Sequence[str]) -> Tuple[str, ...]:
    bad = [o for o in ops if o not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"augment: unknown augmentation(s) {bad}; known: {', '.join(AUGMENTATIONS)}")
    return tuple(ops)


def policy_ops(policy: str) -> Tuple[str, ...]:
    """'color,translation,cutout' -> the ops of each DiffAugment policy, in order."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in names if p not in DIFFAUGMENT_POLICIES]
    if bad or not names:
        raise ValueError(f"augment: DiffAugment policy {policy!r} must be a comma list of "
                         f"{', '.join(DIFFAUGMENT_POLICIES)}")
    return tuple(o for p in names for o in DIFFAUGMENT_POLICIES[p])


# -- random draws -----------------------------------------------------------------------------
class _Draw:
    """Per-example stateless draws for rows [offset, offset + n) of a global batch."""

    def __init__(self, seed, n, rows):
        self.seed, self.n = seed, n
        self.total, self.offset = (n, 0) if rows is None else rows

    def _slice(self, full):
        return full[self.offset:self.offset + self.n]

    def uniform(self, key, *tail):
        return self._slice(tf.random.stateless_uniform([self.total, *tail], seed=self._key(key)))

    def normal(self, key):
        return self._slice(tf.random.stateless_normal([self.total], seed=self._key(key)))

    def _key(self, key):
        return tf.random.experimental.stateless_fold_in(self.seed, key)


def _gate(draw: _Draw, op_index: int, p, slot: int = 0):
    """[n] bool: apply op with probability p (independent per example, op and slot)."""
    return draw.uniform(1000 * op_index + 10 * slot) < tf.cast(p, tf.float32)


def _exp2(x):
    return tf.pow(2.0, x)


def _mat3(rows):
    return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)


def _translate2d(tx, ty):
    o, z = tf.ones_like(tx), tf.zeros_like(tx)
    return _mat3([[o, z, tx], [z, o, ty], [z, z, o]])


def _scale2d(sx, sy):
    o, z = tf.ones_like(sx), tf.zeros_like(sx)
    return _mat3([[sx, z, z], [z, sy, z], [z, z, o]])


def _rotate2d(c, s):
    o, z = tf.ones_like(c), tf.zeros_like(c)
    return _mat3([[c, -s, z], [s, c, z], [z, z, o]])


def _geometric_matrix(op, idx, draw, p, h, w):
    """Per-example inverse map (output pixel -> input pixel, centred coordinates) and gate."""
    key = 1000 * idx + 1
    if op == "xflip":
        on = _gate(draw, idx, p)
        i = tf.where(on & (draw.uniform(key) < 0.5), -1.0, 1.0)
        return _scale2d(i, tf.ones_like(i)), on
    if op == "rotate90":   # exact cos/sin of k * 90 degrees (no rounding error)
        on = _gate(draw, idx, p)
        k = tf.where(on, tf.cast(tf.floor(draw.uniform(key) * 4.0), tf.int32), 0)
        return _rotate2d(tf.gather([1.0, 0.0, -1.0, 0.0], k), tf.gather([0.0, 1.0, 0.0, -1.0], k)), on
    if op == "xint":
        on = _gate(draw, idx, p)
        t = (draw.uniform(key, 2) * 2.0 - 1.0) * 0.125
        t = tf.where(on[:, None], t, 0.0)
        return _translate2d(tf.round(t[:, 0] * w), tf.round(t[:, 1] * h)), on
    if op == "scale":
        on = _gate(draw, idx, p)
        s = tf.where(on, _exp2(draw.normal(key) * 0.2), 1.0)
        return _scale2d(s, s), on
    if op == "aniso":
        on = _gate(draw, idx, p)
        s = tf.where(on, _exp2(draw.normal(key) * 0.2), 1.0)
        return _scale2d(s, 1.0 / s), on
    raise AssertionError(op)


def _rotate(idx, slot, draw, p):
    p_rot = 1.0 - tf.sqrt(tf.maximum(1.0 - tf.cast(p, tf.float32), 0.0))
    on = _gate(draw, idx, p_rot, slot)
    a = tf.where(on, (draw.uniform(1000 * idx + 10 * slot + 1) * 2.0 - 1.0) * math.pi, 0.0)
    return _rotate2d(tf.cos(a), tf.sin(a)), on


def _reflect(c, size):
    """Reflect real coordinates into [0, size - 1] (symmetric, edge pixel not repeated)."""
    m = tf.cast(size - 1, tf.float32)
    if size == 1:
        return tf.zeros_like(c)
    c = tf.math.floormod(c, 2.0 * m)
    return m - tf.abs(m - c)


def resample(images, inv_matrix):
    """Bilinear resampling: out[n, y, x] = images[n] at inv_matrix[n] @ (x - cx, y - cy, 1) + c,
    reflect padding. Differentiable w.r.t. images (gather + weighted sum)."""
    n = tf.shape(images)[0]
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32) - cy, tf.range(w, dtype=tf.float32) - cx, indexing="ij")
    grid = tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), tf.ones([h * w])], axis=0)   # [3, HW]
    src = tf.matmul(inv_matrix, tf.tile(grid[None], [n, 1, 1]))                              # [N, 3, HW]
    sx, sy = _reflect(src[:, 0] + cx, w), _reflect(src[:, 1] + cy, h)
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0i, y0i = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1i, y1i = tf.minimum(x0i + 1, w - 1), tf.minimum(y0i + 1, h - 1)
    flat = tf.reshape(images, [n, h * w, c])

    def at(yi, xi):
        return tf.gather(flat, yi * w + xi, batch_dims=1)

    out = ((1 - fy) * ((1 - fx) * at(y0i, x0i) + fx * at(y0i, x1i))
           + fy * ((1 - fx) * at(y1i, x0i) + fx * at(y1i, x1i)))
    return tf.reshape(out, [n, h, w, c])


def _outer_luma():
    return tf.constant(np.outer(_LUMA, _LUMA))


def _e33():
    """[1, 4, 4] with a single 1 at the homogeneous corner."""
    return tf.pad(tf.ones([1, 1, 1]), [[0, 0], [3, 0], [3, 0]])


def _color_matrix(op, idx, draw, p):
    """Per-example 4x4 colour transform on homogeneous RGB in [-1, 1], and its gate."""
    on = _gate(draw, idx, p)
    key = 1000 * idx + 1
    eye = tf.eye(4)[None]
    if op == "brightness":
        b = tf.where(on, draw.normal(key) * 0.2, 0.0)
        return eye + tf.pad(tf.tile(b[:, None, None], [1, 3, 1]), [[0, 0], [0, 1], [3, 0]]), on
    if op == "contrast":
        c = tf.where(on, _exp2(draw.normal(key) * 0.5), 1.0)
        return tf.linalg.diag(tf.stack([c, c, c, tf.ones_like(c)], -1)), on
    if op == "lumaflip":
        i = tf.where(on & (draw.uniform(key) < 0.5), 1.0, 0.0)
        return eye - 2.0 * _outer_luma()[None] * i[:, None, None], on
    if op == "hue":    # Rodrigues rotation about the luma axis
        a = tf.where(on, (draw.uniform(key) * 2.0 - 1.0) * math.pi, 0.0)
        kx = tf.constant([[0.0, -_V, _V], [_V, 0.0, -_V], [-_V, _V, 0.0]])   # cross-product matrix of v
        vv = _outer_luma()[:3, :3]
        cos, sin = tf.cos(a)[:, None, None], tf.sin(a)[:, None, None]
        r3 = cos * tf.eye(3)[None] + sin * kx[None] + (1.0 - cos) * vv[None]
        return tf.pad(r3, [[0, 0], [0, 1], [0, 1]]) + _e33(), on
    if op == "saturation":
        s = tf.where(on, _exp2(draw.normal(key) * 1.0), 1.0)
        vv = _outer_luma()[None]
        return vv + (eye - _e33() - vv) * s[:, None, None] + _e33(), on
    raise AssertionError(op)


def _cutout_mask(idx, draw, p, h, w, size=0.5):
    on = _gate(draw, idx, p)
    centre = draw.uniform(1000 * idx + 1, 2)                                   # [n, 2] in [0, 1)
    ys = (tf.range(h, dtype=tf.float32) + 0.5) / h
    xs = (tf.range(w, dtype=tf.float32) + 0.5) / w
    inside_x = tf.abs(xs[None, :] - centre[:, 0:1]) < size / 2                  # [n, W]
    inside_y = tf.abs(ys[None, :] - centre[:, 1:2]) < size / 2                  # [n, H]
    cut = inside_y[:, :, None] & inside_x[:, None, :] & on[:, None, None]
    return tf.cast(~cut, tf.float32)[..., None], on


@tf.autograph.experimental.do_not_convert     # no data-dependent python control flow; tracing 10x faster
def augment(images, p, seed, ops: Sequence[str] = PIPELINES["bgc"], value_range=(-1.0, 1.0),
            rows: Optional[Tuple[int, int]] = None):
    """Augment a batch [N, H, W, C=3] (any float dtype, or uint8) with every op in `ops` applied
    independently per example with probability p (p: python float or scalar tensor).

    `seed`: stateless [2] int key; `rows = (global_batch, offset)` draws the parameters of a
    replica's slice of the global batch. Output has the input's dtype and stays within
    `value_range`; examples no op was applied to are returned bit-identical (p = 0 is the identity)."""
    ops = check_ops(ops)
    orig = tf.convert_to_tensor(images)
    n = tf.shape(orig)[0]
    h, w = orig.shape[1], orig.shape[2]
    lo, hi = float(value_range[0]), float(value_range[1])
    x = (tf.cast(orig, tf.float32) - lo) * (2.0 / (hi - lo)) - 1.0              # work in [-1, 1]
    draw = _Draw(seed, n, rows)
    any_on = tf.zeros([n], tf.bool)

    geo, geo_on = tf.eye(3)[None], tf.zeros([n], tf.bool)
    for op in GEOMETRIC:
        if op not in ops:
            continue
        idx = AUGMENTATIONS.index(op)
        if op == "rotate":    # before and after aniso (NVlabs' order: rotate, aniso, rotate)
            m, on = _rotate(idx, 0, draw, p)
            m2, on2 = _rotate(idx, 1, draw, p)
            m, on = tf.matmul(m, m2), on | on2
            geo, geo_on = tf.matmul(geo, m), geo_on | on
            continue
        m, on = _geometric_matrix(op, idx, draw, p, h, w)
        geo, geo_on = tf.matmul(geo, m), geo_on | on
    if any(op in ops for op in GEOMETRIC):
        x = tf.where(geo_on[:, None, None, None], resample(x, geo), x)
        any_on |= geo_on

    col, col_on = tf.eye(4)[None], tf.zeros([n], tf.bool)
    for op in COLOR:
        if op in ops:
            m, on = _color_matrix(op, AUGMENTATIONS.index(op), draw, p)
            col, col_on = tf.matmul(m, col), col_on | on
    if any(op in ops for op in COLOR):
        rgb = tf.einsum("nij,nhwj->nhwi", col[:, :3, :3], x) + col[:, None, None, :3, 3]
        x = tf.where(col_on[:, None, None, None], rgb, x)
        any_on |= col_on

    if "cutout" in ops:
        mask, on = _cutout_mask(AUGMENTATIONS.index("cutout"), draw, p, h, w)
        x = x * mask
        any_on |= on

    out = tf.clip_by_value((x + 1.0) * ((hi - lo) / 2.0) + lo, lo, hi)
    if orig.dtype.is_integer:
        out = tf.round(out)
    return tf.where(any_on[:, None, None, None], tf.cast(out, orig.dtype), orig)


def diffaugment(images, seed, policy: str = "color,translation,cutout", value_range=(-1.0, 1.0), rows=None):
    """DiffAugment-style always-on augmentation (Zhao et al. 2020): every op of `policy`, p = 1."""
    return augment(images, 1.0, seed, policy_ops(policy), value_range, rows)


# -- the adaptive controller ------------------------------------------------------------------
def sign_stats(real_logits) -> Tuple[tf.Tensor, tf.Tensor]:
    """(sum of sign(D(real)), count) for one (per-replica) minibatch; the loop SUM-reduces both."""
    x = tf.reshape(tf.cast(real_logits, tf.float32), [-1])
    return tf.reduce_sum(tf.sign(x)), tf.cast(tf.size(x), tf.float32)


def adjust_p(p, rt, target: float, images_per_update: float, speed_images: float):
    """ADA §3: p <- clip(p + sign(r_t - target) * images_per_update / speed_images, 0, 1)."""
    step = tf.sign(tf.cast(rt, tf.float32) - target) * (float(images_per_update) / float(speed_images))
    return tf.clip_by_value(tf.cast(p, tf.float32) + step, 0.0, 1.0)


class AdaptiveAugment(tf.Module):
    """ADA state and application. Per minibatch: `images = ada(images, seed, rows)` for reals and
    fakes (different seeds), then `ada.observe(sign_sum, count, global_batch)` with the
    cross-replica SUM of `sign_stats(D(real))` (cross-replica context / eager)."""

    def __init__(self, mode: str = "ada", p: float = 0.0, target: float = 0.6, interval: int = 4,
                 speed_images: float = 500_000, ops: Sequence[str] = PIPELINES["bgc"],
                 policy: str = "color,translation,cutout", value_range=(-1.0, 1.0), name="ada"):
        super().__init__(name=name)
        if mode not in MODES:
            raise ValueError(f"augment: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augment: p must be in [0, 1], got {p}")
        if int(interval) < 1 or speed_images <= 0:
            raise ValueError(f"augment: interval must be >= 1 and speed_images > 0, got {interval}, {speed_images}")
        self.mode, self.target, self.interval = mode, float(target), int(interval)
        self.speed_images, self.value_range = float(speed_images), value_range
        self.ops = policy_ops(policy) if mode == "diffaugment" else check_ops(ops)
        p0 = {"diffaugment": 1.0, "none": 0.0}.get(mode, p)
        self.p = tf.Variable(p0, trainable=False, dtype=tf.float32, name="p")
        self.rt = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="rt")
        self.sign_sum = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="sign_sum")
        self.count = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="count")
        self.minibatches = tf.Variable(0, trainable=False, dtype=tf.int64, name="minibatches")

    def __call__(self, images, seed, rows=None):
        if self.mode == "none":
            return images
        return augment(images, self.p, seed, self.ops, self.value_range, rows)

    def observe(self, sign_sum, count, global_batch: int):
        """Accumulate one minibatch's statistics; every `interval` minibatches set r_t and (mode
        "ada") move p. Returns p."""
        self.sign_sum.assign_add(tf.cast(sign_sum, tf.float32))
        self.count.assign_add(tf.cast(count, tf.float32))
        self.minibatches.assign_add(1)
        if self.mode in ("ada", "fixed"):
            due = tf.equal(self.minibatches % self.interval, 0)
            tf.cond(due, lambda: self._update(global_batch), lambda: tf.no_op())
        return self.p

    def _update(self, global_batch):
        rt = self.sign_sum / tf.maximum(self.count, 1.0)
        ops = [self.rt.assign(rt), self.sign_sum.assign(0.0), self.count.assign(0.0)]
        if self.mode == "ada":
            ops.append(self.p.assign(adjust_p(self.p, rt, self.target, global_batch * self.interval,
                                              self.speed_images)))
        return tf.group(ops)

    def metrics(self) -> Dict[str, tf.Tensor]:
        """For TensorBoard: {"ada/p", "ada/rt"}."""
        return {"ada/p": tf.identity(self.p), "ada/rt": tf.identity(self.rt)}
