"""Paired data for image-to-image training, derived at ingestion (pix2pix/CycleGAN-style tasks): pure functions.

No paired face set is needed: each ingested face (the *target*) gets an *input* image made from it
by one named, documented transform. pix2pix then learns input -> face.

| transform   | input image                                                   | task               | parameters (default)            |
|-------------|---------------------------------------------------------------|--------------------|---------------------------------|
| `grayscale` | ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, rounded,   | colourisation      | none                            |
|             | copied to the three channels                                  |                    |                                 |
| `lowres`    | PIL bicubic down by `factor`, then bicubic back up (PIL's     | super-resolution   | factor (4; 4 or 8)              |
|             | bicubic is antialiased when shrinking); the input IS the      |                    |                                 |
|             | bicubic-upscale baseline a super-resolution model must beat   |                    |                                 |
| `edges`     | a sketch: black where the Sobel gradient magnitude of the     | sketch -> face     | threshold (32, of 0..255)       |
|             | luma (|G| / 4, so a full 0 -> 255 step gives 255) reaches     |                    |                                 |
|             | `threshold`, white elsewhere                                  |                    |                                 |
| `masked`    | one random square box filled with `fill`, side uniform in     | inpainting         | min_frac (0.25), max_frac       |
|             | [min_frac, max_frac] * R, position uniform; example seed      |                    | (0.5), fill (127)               |

A spec is `name` or `name:key=value,key=value` (e.g. `lowres:factor=8`); `parse_spec` validates it
and `canonical_spec` writes it back in one spelling. Randomness (only `masked` draws any) comes from
`example_seed(seed, image)`: a sha256 of the run's seed and the target's pixels, so the same face
gets the same box on any runner, worker or re-run, and different faces get independent boxes.

Examples features (facegan/schema.py): `input_image` (PNG of the input), `pair/transform` (name),
`pair/params` (JSON of the full parameters, defaults included), `pair/seed` (the example seed).
The ingest summary's `paired` entry repeats the spec and run seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Dict, Optional, Tuple

import numpy as np

from facegan import schema

INPUT_IMAGE = schema.INPUT_IMAGE
PAIR_TRANSFORM = schema.PAIR_PREFIX + "transform"
PAIR_PARAMS = schema.PAIR_PREFIX + "params"
PAIR_SEED = schema.PAIR_PREFIX + "seed"

# name -> {parameter: default}; the order of the table above
DEFAULTS: Dict[str, Dict[str, float]] = {
    "grayscale": {},
    "lowres": {"factor": 4},
    "edges": {"threshold": 32},
    "masked": {"min_frac": 0.25, "max_frac": 0.5, "fill": 127},
}
TRANSFORMS = tuple(DEFAULTS)


@dataclasses.dataclass(frozen=True)
class Pair:
    """The derived input of one example, with what made it."""
    image: np.ndarray                 # uint8 [R, R, 3]
    transform: str
    params: Tuple[Tuple[str, float], ...]
    seed: int                         # the example seed (see example_seed)

    def mirrored(self) -> "Pair":
        """The pair of the mirrored target: the input flipped the same way (for `masked` the box
        flips too, so the pair stays a valid inpainting example)."""
        return dataclasses.replace(self, image=np.ascontiguousarray(self.image[:, ::-1]))


def parse_spec(spec: str) -> Tuple[str, Dict[str, float]]:
    """'lowres:factor=8' -> ('lowres', {'factor': 8}); defaults filled in; ValueError naming the
    bad part."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip().lower()
    if name not in DEFAULTS:
        raise ValueError(f"paired transform {name!r} is not one of {', '.join(TRANSFORMS)}")
    params = dict(DEFAULTS[name])
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in params:
            known = ", ".join(DEFAULTS[name]) or "none"
            raise ValueError(f"paired transform {name}: {item!r} is not key=value with a known key "
                             f"(parameters: {known})")
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"paired transform {name}: {key} must be a number, got {value!r}") from None
    _check(name, params)
    return name, {k: (int(v) if float(v).is_integer() else float(v)) for k, v in params.items()}


def _check(name, p):
    if name == "lowres" and p["factor"] not in (4, 8):
        raise ValueError(f"paired transform lowres: factor must be 4 or 8, got {p['factor']:g}")
    if name == "edges" and not 0 < p["threshold"] <= 255:
        raise ValueError(f"paired transform edges: threshold must be in (0, 255], got {p['threshold']:g}")
    if name == "masked":
        if not 0 < p["min_frac"] <= p["max_frac"] <= 1:
            raise ValueError(f"paired transform masked: need 0 < min_frac <= max_frac <= 1, "
                             f"got min_frac={p['min_frac']:g} max_frac={p['max_frac']:g}")
        if not 0 <= p["fill"] <= 255:
            raise ValueError(f"paired transform masked: fill must be in [0, 255], got {p['fill']:g}")


def canonical_spec(spec: Optional[str]) -> str:
    """One spelling of a spec ('' for none): name:key=value,... with every parameter."""
    if not spec:
        return ""
    name, params = parse_spec(spec)
    return name + (":" + ",".join(f"{k}={v:g}" for k, v in params.items()) if params else "")


def example_seed(seed: int, image: np.ndarray) -> int:
    """A 63-bit seed from the run's seed and the target's pixels (runner-independent)."""
    h = hashlib.sha256(int(seed).to_bytes(8, "little", signed=True) + np.ascontiguousarray(image).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


# -- the transforms (uint8 [R, R, 3] -> uint8 [R, R, 3]) ----------------------------------------
def luma(image: np.ndarray) -> np.ndarray:
    """float64 BT.601 luma of uint8 RGB."""
    return np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114])


def grayscale(image: np.ndarray) -> np.ndarray:
    y = np.clip(np.rint(luma(image)), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def lowres(image: np.ndarray, factor: int = 4) -> np.ndarray:
    from PIL import Image
    r = image.shape[0]
    small = max(1, r // int(factor))
    im = Image.fromarray(np.ascontiguousarray(image)).resize((small, small), Image.BICUBIC)
    return np.asarray(im.resize((image.shape[1], r), Image.BICUBIC), np.uint8)


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """|Sobel gradient| / 4 of a float image (edge-replicated borders): a 0 -> 255 step gives 255."""
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy) / 4.0


def edges(image: np.ndarray, threshold: float = 32) -> np.ndarray:
    line = sobel_magnitude(luma(image)) >= float(threshold)
    out = np.where(line, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=-1)


def mask_box(shape, seed: int, min_frac: float = 0.25, max_frac: float = 0.5) -> Tuple[int, int, int]:
    """(top, left, side) of the box for an image of `shape` from `seed` (numpy PCG64)."""
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(int(seed))
    side = int(round(rng.uniform(float(min_frac), float(max_frac)) * min(h, w)))
    side = max(1, min(side, h, w))
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side


def masked(image: np.ndarray, seed: int, min_frac: float = 0.25, max_frac: float = 0.5,
           fill: int = 127) -> np.ndarray:
    top, left, side = mask_box(image.shape, seed, min_frac, max_frac)
    out = np.array(image, np.uint8, copy=True)
    out[top:top + side, left:left + side] = int(fill)
    return out


def apply(image: np.ndarray, spec: str, seed: int = 0) -> Pair:
    """Derive the input of one target image by `spec` (run seed `seed`)."""
    name, params = parse_spec(spec)
    s = example_seed(seed, image)
    if name == "masked":
        out = masked(image, s, **params)
    else:
        out = {"grayscale": grayscale, "lowres": lowres, "edges": edges}[name](image, **params)
    return Pair(out, name, tuple(params.items()), s)


def features(pair: Optional[Pair]) -> Dict[str, object]:
    """The Examples features of a pair ({} without one)."""
    if pair is None:
        return {}
    from facegan.images import encode_png
    return {INPUT_IMAGE: encode_png(pair.image), PAIR_TRANSFORM: pair.transform,
            PAIR_PARAMS: json.dumps(dict(pair.params), sort_keys=True), PAIR_SEED: int(pair.seed)}


def summary(spec: str, seed: int) -> Optional[Dict[str, object]]:
    """The ingest summary's `paired` entry (None when no pairs are made)."""
    if not spec:
        return None
    name, params = parse_spec(spec)
    return {"transform": name, "params": params, "seed": int(seed), "spec": canonical_spec(spec),
            "feature": INPUT_IMAGE}
