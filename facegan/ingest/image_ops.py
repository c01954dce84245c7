"""Per-file image work as plain functions (no Beam, no TFX, no TensorFlow): hash, decode or
reject, crop, resize, the extra resolutions, the split and the Example features.

The Beam pipeline (beam_pipeline.py), the naive benchmark loop and the tests all call these, so
what is tested here is exactly what runs on the workers.

Per file:  read bytes -> sha256 -> decode (PIL) -> reject or -> EXIF orientation -> RGB
           -> crop policy -> resize to the target (named filter) -> optional 2x2 box chain for the
           extra resolutions -> PNG -> tf.Example (facegan/examples_io.py: `schema_features`, `encode_example`).

Choices that change the data (and so FID) are named and documented here:

- Resize filter (`FILTERS`, default `lanczos`): PIL's LANCZOS is a windowed sinc whose support
  scales with the downscale factor, i.e. it low-passes before subsampling. Aliased resizers (TF/
  PyTorch bilinear without antialiasing) shift FID by several points (Parmar et al., "On Aliased
  Resizing and Surprising Subtleties in GAN Evaluation", CVPR 2022); StyleGAN's dataset tools use
  PIL LANCZOS too. Always use the same filter for real images at train and evaluation time.
- Extra stored resolutions (progressive growing) are made by repeated 2x2 box averaging of the
  target image in float, quantised per level, as PGGAN's dataset_tool.py does (Karras et al.,
  ICLR 2018): the low-resolution reals then match the average-pool downsampling the network sees.
- Alpha is composited over a stated background (default white, `DEFAULT_BACKGROUND`).
- 16-bit greyscale (I;16, I) is scaled to 8 bits by v/257 (rounded), not clipped.
"""
import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from facegan import examples_io, schema
from facegan.ingest import paired as P
from facegan.ingest.options import (CROPS, DEFAULT_BACKGROUND, DEFAULT_FILTER, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE,
                                    NOT_AN_IMAGE, OVERSIZED, TOO_SMALL, TRUNCATED, UNREADABLE, ZERO_BYTE,
                                    IngestConfig, IngestError, Rejected)

# CelebA img_align_celeba frames are 178x218 with the face centred; the square rows 20..198
# (rows 10..99 of the 89x109 half-size set) holds the face. Stored as fractions of the frame.
CELEBA_FRAME = (178, 218)
CELEBA_FACE_BOX = (0 / 178, 20 / 218, 178 / 178, 198 / 218)   # (left, top, right, bottom)


def _filters():
    from PIL import Image
    R = Image.Resampling
    return {"lanczos": R.LANCZOS, "bicubic": R.BICUBIC, "bilinear": R.BILINEAR,
            "box": R.BOX, "hamming": R.HAMMING, "nearest": R.NEAREST}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Decoding

_TRUNCATION_MARKERS = ("truncated", "not enough image data", "premature end", "unexpected end",
                       "end of file", "eof")


def _looks_truncated(data: bytes, err: BaseException) -> bool:
    msg = str(err).lower()
    if isinstance(err, EOFError) or any(m in msg for m in _TRUNCATION_MARKERS):
        return True
    # WebP/RIFF declares its size in the header; libwebp only says "could not create decoder".
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 8:
        return struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    return False


def to_rgb(im, background=DEFAULT_BACKGROUND):
    """Any PIL mode -> 'RGB'. Alpha (LA, RGBA, PA, P/L/RGB with tRNS) is composited on `background`."""
    from PIL import Image
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        a = np.clip(np.rint(np.clip(a, 0, 65535) / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        a = np.asarray(im, np.float64)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "1":
        im = im.convert("L")
    return im.convert("RGB")


def decode(data: bytes, min_side: int = DEFAULT_MIN_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS,
           background=DEFAULT_BACKGROUND):
    """Bytes -> (PIL RGB image after EXIF orientation, (orig_h, orig_w)); raises Rejected."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if len(data) == 0:
        raise Rejected(ZERO_BYTE, "file is empty (0 bytes)")
    # `max_pixels` is the one limit: PIL refuses images above 2 * MAX_IMAGE_PIXELS before we can
    # look at the size, so raise its limit to ours (never lower it for other PIL users).
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # DecompressionBombWarning, corrupt-EXIF chatter
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            # PIL's message quotes its own limit (2 x MAX_IMAGE_PIXELS), not the one the user set
            m = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(m.group(1))} pixels" if m else "more pixels than PIL will open"
            raise Rejected(OVERSIZED, f"{size} > max_pixels {max_pixels} (--max-pixels)") from e
        except UnidentifiedImageError as e:
            raise Rejected(NOT_AN_IMAGE, f"no image format recognised ({len(data)} bytes, "
                                         f"starts {data[:8]!r})") from e
        except Exception as e:  # noqa: BLE001 - a header PIL recognises but cannot parse
            if _looks_truncated(data, e):
                raise Rejected(TRUNCATED, f"{type(e).__name__}: {e}") from e
            raise Rejected(UNREADABLE, f"{type(e).__name__}: {e}") from e
        w, h = im.size
        if w * h > max_pixels:
            raise Rejected(OVERSIZED, f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels} "
                                      f"(--max-pixels)")
        try:
            im.load()
        except Exception as e:  # noqa: BLE001
            if _looks_truncated(data, e):
                raise Rejected(TRUNCATED, f"{im.format} {w}x{h}: {type(e).__name__}: {e}") from e
            raise Rejected(UNREADABLE, f"{im.format} {w}x{h}: {type(e).__name__}: {e}") from e
        if min(w, h) < min_side:
            raise Rejected(TOO_SMALL, f"{w}x{h}: shorter side {min(w, h)} < min_side {min_side}")
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation
            pass
        try:
            rgb = to_rgb(im, background)
        except Exception as e:  # noqa: BLE001
            raise Rejected(UNREADABLE, f"mode {im.mode} cannot be converted to RGB: {e}") from e
    return rgb, (rgb.size[1], rgb.size[0])


# ---------------------------------------------------------------------------------------------
# Crop and resize

def crop_box(width: int, height: int, policy: str) -> Tuple[float, float, float, float]:
    """The square (left, top, right, bottom) in source pixels a crop policy takes.

    center: the largest centred square. celeba: the square centred on the face box of an aligned
    CelebA frame (CELEBA_FACE_BOX scaled to the image; for 178x218 and 89x109 portraits this is
    rows 20..198 / 10..99, which coincides with the centre square), shrunk to fit the image.
    none: the whole image padded to a square (the box extends past the image; see `square_crop`).
    """
    if policy == "center":
        s = min(width, height)
        left, top = (width - s) // 2, (height - s) // 2
        return (left, top, left + s, top + s)
    if policy == "celeba":
        l, t, r, b = (CELEBA_FACE_BOX[0] * width, CELEBA_FACE_BOX[1] * height,
                      CELEBA_FACE_BOX[2] * width, CELEBA_FACE_BOX[3] * height)
        s = int(round(min(r - l, b - t, width, height)))
        cx, cy = (l + r) / 2, (t + b) / 2
        left = int(round(min(max(cx - s / 2, 0), width - s)))
        top = int(round(min(max(cy - s / 2, 0), height - s)))
        return (left, top, left + s, top + s)
    if policy == "none":
        s = max(width, height)
        left, top = -((s - width) // 2), -((s - height) // 2)
        return (left, top, left + s, top + s)
    raise IngestError(f"crop must be one of {', '.join(CROPS)}; got {policy!r}")


def square_crop_resize(rgb, resolution: int, crop: str = "center", filter: str = DEFAULT_FILTER,
                       background=DEFAULT_BACKGROUND) -> np.ndarray:
    """PIL RGB image -> uint8 [R, R, 3] by the crop policy and the named resize filter."""
    from PIL import Image
    w, h = rgb.size
    box = crop_box(w, h, crop)
    if crop == "none" and (w != h):
        s = box[2] - box[0]
        canvas = Image.new("RGB", (s, s), tuple(background))
        canvas.paste(rgb, (-box[0], -box[1]))
        rgb, box = canvas, (0, 0, s, s)
    resample = _filters()[filter]
    if box == (0, 0, resolution, resolution) and (w, h) == (resolution, resolution):
        out = rgb
    else:
        # resize(box=...) crops and resamples in one pass (no intermediate copy).
        out = rgb.resize((resolution, resolution), resample, box=box)
    return np.asarray(out, dtype=np.uint8)


def box_downsample_chain(image: np.ndarray, resolutions: Sequence[int]) -> Dict[int, np.ndarray]:
    """PGGAN-style pyramid: repeated 2x2 averages of the float image, each level rounded to uint8."""
    out = {}
    if not resolutions:
        return out
    want = set(resolutions)
    img = image.astype(np.float32)
    r = image.shape[0]
    while r > min(want):
        img = (img[0::2, 0::2] + img[0::2, 1::2] + img[1::2, 0::2] + img[1::2, 1::2]) * 0.25
        r //= 2
        if r in want:
            out[r] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


@dataclass
class Processed:
    image: np.ndarray                               # uint8 [R, R, 3]
    extra: Dict[int, np.ndarray] = field(default_factory=dict)
    orig_height: int = 0
    orig_width: int = 0
    paired: Optional[P.Pair] = None                 # the derived input (paired.py), if asked for


def process_bytes(data: bytes, cfg: IngestConfig) -> Processed:
    """Bytes of one file -> the processed image(s); raises Rejected with a reason."""
    rgb, (oh, ow) = decode(data, cfg.min_side, cfg.max_pixels, cfg.background)
    img = square_crop_resize(rgb, cfg.resolution, cfg.crop, cfg.filter, cfg.background)
    pair = P.apply(img, cfg.paired, cfg.paired_seed) if cfg.paired else None
    return Processed(img, box_downsample_chain(img, cfg.extra_resolutions), oh, ow, pair)


def mirror(p: Processed) -> Processed:
    """Horizontal flip of every stored resolution (flip commutes with the 2x2 box chain)."""
    return Processed(np.ascontiguousarray(p.image[:, ::-1]),
                     {r: np.ascontiguousarray(a[:, ::-1]) for r, a in p.extra.items()},
                     p.orig_height, p.orig_width, p.paired.mirrored() if p.paired else None)


# ---------------------------------------------------------------------------------------------
# Splits

def assign_split(sha256: str, eval_fraction: float) -> str:
    """Deterministic split from the content hash: eval iff the first 64 bits / 2**64 < fraction."""
    return schema.EVAL_SPLIT if int(sha256[:16], 16) / 2.0 ** 64 < eval_fraction else schema.TRAIN_SPLIT


# ---------------------------------------------------------------------------------------------
# tf.Example: the schema's one encoder lives in facegan/examples_io.py (TensorFlow-free, so the
# workers stay light: no 11 s TF import each).

encode_example = examples_io.encode_example


def example_features(p: Processed, source: str, sha256: str, mirrored: bool,
                     attrs: Optional[Dict] = None) -> Dict[str, object]:
    feats = examples_io.schema_features(p.image, source, sha256, mirrored, p.extra,
                                       (p.orig_height, p.orig_width), attrs)
    feats.update(P.features(p.paired))   # image-to-image pairs (paired.py), when asked for
    return feats


def channel_sums(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """(sum, sum of squares, pixel count) per RGB channel, float64, for the dataset mean/std."""
    # channel-major float64 (contiguous rows sum fast; exact: sums stay far below 2**53)
    a = np.ascontiguousarray(image.reshape(-1, 3).T).astype(np.float64)
    return a.sum(1), (a * a).sum(1), a.shape[1]
