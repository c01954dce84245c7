"""Per-file ingestion transforms as plain functions (no Beam, no TFX, no TensorFlow).

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
import json
import os
import re
import struct
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from facegan import examples_io, schema
from facegan.components.image_example_gen import paired as P

# ---------------------------------------------------------------------------------------------
# Rejection reasons (the rejection report and the summary use exactly these strings).
ZERO_BYTE = "zero_byte"          # the file is empty
TRUNCATED = "truncated"          # a recognised image whose data ends early
NOT_AN_IMAGE = "not_an_image"    # PIL cannot identify any image format
UNREADABLE = "unreadable"        # I/O error, broken archive, or a recognised image that fails to decode
TOO_SMALL = "too_small"          # shorter side below `min_side`
OVERSIZED = "oversized"          # more pixels than `max_pixels` (decompression bomb guard)
NOT_A_FILE = "not_a_file"        # archive member: a link to nothing inside the archive, device, fifo
DUPLICATE = "duplicate"          # same sha256 as an earlier file: written once (not a rejection)
REJECTION_REASONS = (ZERO_BYTE, TRUNCATED, NOT_AN_IMAGE, UNREADABLE, TOO_SMALL, OVERSIZED,
                     NOT_A_FILE)

CROPS = ("center", "celeba", "none")
DEFAULT_BACKGROUND = (255, 255, 255)
DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 89_478_485      # PIL.Image.MAX_IMAGE_PIXELS (1024*1024*1024 // 4 // 3)
DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_MAX_REJECTED_FRACTION = 0.5
ARCHIVE_SEP = "!"                     # archive member sources: `faces.zip!dir/0001.jpg`

# CelebA img_align_celeba frames are 178x218 with the face centred; the square rows 20..198
# (rows 10..99 of the 89x109 half-size set) holds the face. Stored as fractions of the frame.
CELEBA_FRAME = (178, 218)
CELEBA_FACE_BOX = (0 / 178, 20 / 218, 178 / 178, 198 / 218)   # (left, top, right, bottom)


def _filters():
    from PIL import Image
    R = Image.Resampling
    return {"lanczos": R.LANCZOS, "bicubic": R.BICUBIC, "bilinear": R.BILINEAR,
            "box": R.BOX, "hamming": R.HAMMING, "nearest": R.NEAREST}


FILTERS = ("lanczos", "bicubic", "bilinear", "box", "hamming", "nearest")
DEFAULT_FILTER = "lanczos"


class IngestError(ValueError):
    """Bad configuration or input that stops ingestion (the message names what is wrong).

    Messages name configuration fields by their parameter names (`input_base`, `eval_fraction`);
    a front end rewrites them to its own flags with `for_flags`. `field`: the field at fault.
    """

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


def for_flags(err: Exception, flags: Dict[str, str]) -> str:
    """The message with each configuration field name (`input_base`, `eval_fraction`) replaced by
    the user's flag (`--input`, `--eval-fraction`); names inside paths are left alone."""
    msg = str(err)
    for name in sorted(flags, key=len, reverse=True):
        msg = re.sub(rf"(?<![\w/.\-]){re.escape(name)}(?![\w/.\-])", flags[name], msg)
    return msg


class Rejected(Exception):
    """A file that cannot become an example; `reason` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------------------
# Configuration

def parse_resolutions(value, target: int) -> Tuple[int, ...]:
    """'4,8,16' / [4, 8] / '' -> sorted tuple of powers of two in [4, target); target excluded."""
    if value is None or value == "" or value == ():
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    out = set()
    for v in items:
        try:
            r = int(v)
        except (TypeError, ValueError):
            raise IngestError(f"extra_resolutions: {v!r} is not an integer") from None
        if r < schema.MIN_RESOLUTION or r & (r - 1):
            raise IngestError(f"extra_resolutions: {r} must be a power of two >= {schema.MIN_RESOLUTION}")
        if r > target:
            raise IngestError(f"extra_resolutions: {r} is larger than the target resolution {target}")
        if r != target:
            out.add(r)
    return tuple(sorted(out))


def parse_background(value) -> Tuple[int, int, int]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    else:
        parts = list(value)
    try:
        rgb = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise IngestError(f"background must be three integers 0..255 like '255,255,255', got {value!r}")
    return rgb


@dataclass(frozen=True)
class IngestConfig:
    """Everything that decides what an example looks like; validated on construction."""
    resolution: int
    crop: str = "center"
    filter: str = DEFAULT_FILTER
    mirror: bool = False
    extra_resolutions: Tuple[int, ...] = ()
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    background: Tuple[int, int, int] = DEFAULT_BACKGROUND
    labels: Optional[str] = None
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION
    grid_size: int = 64
    paired: str = ""                   # paired.py spec, e.g. "lowres:factor=4" ("" = no pairs)
    paired_seed: int = 0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        try:
            set_("resolution", schema.check_resolution(self.resolution))
        except ValueError as e:
            raise IngestError(str(e)) from None
        if self.crop not in CROPS:
            raise IngestError(f"crop must be one of {', '.join(CROPS)}; got {self.crop!r}")
        if self.filter not in FILTERS:
            raise IngestError(f"filter must be one of {', '.join(FILTERS)}; got {self.filter!r}")
        set_("extra_resolutions", parse_resolutions(self.extra_resolutions, self.resolution))
        set_("background", parse_background(self.background))
        if not 0.0 <= float(self.eval_fraction) < 1.0:
            raise IngestError(f"eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        if not 0.0 <= float(self.max_rejected_fraction) <= 1.0:
            raise IngestError(f"max_rejected_fraction must be in [0, 1], got {self.max_rejected_fraction!r}")
        if int(self.min_side) < 1:
            raise IngestError(f"min_side must be >= 1, got {self.min_side!r}")
        if int(self.max_pixels) < 1:
            raise IngestError(f"max_pixels must be >= 1, got {self.max_pixels!r}")
        set_("mirror", bool(self.mirror))
        set_("eval_fraction", float(self.eval_fraction))
        set_("max_rejected_fraction", float(self.max_rejected_fraction))
        set_("min_side", int(self.min_side))
        set_("max_pixels", int(self.max_pixels))
        set_("labels", self.labels or None)   # existence is checked at run time (load_labels)
        try:
            set_("paired", P.canonical_spec(self.paired))
        except ValueError as e:
            raise IngestError(str(e), field="paired") from None

    def to_json(self) -> Dict:
        d = dict(self.__dict__)
        d["extra_resolutions"] = list(self.extra_resolutions)
        d["background"] = list(self.background)
        return d


# ---------------------------------------------------------------------------------------------
# Enumerating inputs

def is_remote(path: str) -> bool:
    return "://" in path


def is_archive(path: str) -> bool:
    p = path.lower()
    return p.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


@dataclass
class InputListing:
    """What `list_inputs` found: the units to read, plus what it did not follow (reported)."""
    units: List[str]
    symlink_loops: List[str] = field(default_factory=list)     # "link -> target (an ancestor)"
    aliases: List[str] = field(default_factory=list)           # second paths to a counted file/dir


def list_inputs(input_base: str, skip: Sequence[str] = ()) -> InputListing:
    """The input units under `input_base`, each real directory and file once.

    Symlinks are followed, but a directory is entered only once (by its real path): a link back
    to one of its own ancestors is a loop, reported once with its path and not followed; a second
    link to a directory or file already counted is an alias, reported and not counted again.
    Every other regular file counts (a stray .txt is reported as not_an_image, nothing is
    dropped silently) except those in `skip` (e.g. the labels table) and OS sidecar dot-files.
    Raises IngestError naming the path when it is missing or empty.
    """
    if not input_base:
        raise IngestError("input_base is empty: give a directory, an archive or an image file",
                          field="input_base")
    skip_abs = {os.path.abspath(s) for s in skip if s and not is_remote(s)}
    if is_remote(input_base):
        from apache_beam.io.filesystems import FileSystems
        pattern = input_base if is_archive(input_base) else input_base.rstrip("/") + "/**"
        try:
            files = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
        except Exception as e:  # noqa: BLE001 - any filesystem error means the path is unusable
            raise IngestError(f"input_base {input_base} cannot be listed: {e}",
                              field="input_base") from e
        if not files:
            raise IngestError(f"input_base {input_base} is missing or contains no files",
                              field="input_base")
        return InputListing(files)
    if not os.path.exists(input_base):
        raise IngestError(f"input_base {input_base} does not exist", field="input_base")
    if os.path.isfile(input_base):
        return InputListing([input_base])
    out = InputListing([])
    seen_dirs, seen_files = set(), set()

    def walk(d: str, ancestors: Tuple[str, ...]):
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            out.units.append(d)               # read later: rejected as unreadable, with the error
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            path = os.path.join(d, e.name)
            try:
                is_dir = e.is_dir()           # follows symlinks
            except OSError:
                is_dir = False
            real = os.path.realpath(path)
            if is_dir:
                if real in ancestors:
                    out.symlink_loops.append(f"{path} -> {real}")
                elif real in seen_dirs:
                    out.aliases.append(path)
                else:
                    seen_dirs.add(real)
                    walk(path, ancestors + (real,))
            elif os.path.abspath(path) in skip_abs:
                continue
            elif real in seen_files:
                out.aliases.append(path)
            else:
                seen_files.add(real)
                out.units.append(path)

    root = os.path.realpath(input_base)
    seen_dirs.add(root)
    walk(input_base, (root,))
    if not out.units:
        raise IngestError(f"input_base {input_base} is an empty directory (no files found)",
                          field="input_base")
    out.units.sort()
    return out


def input_fingerprint(input_base: str, labels: Optional[str] = None) -> str:
    """A fingerprint of the input: every unit's path, size and mtime (ns) plus the labels file's,
    as TFX's file-based ExampleGen fingerprints its input (`io_utils.generate_fingerprint`:
    names, sizes, mtimes), hashed with sha256 so that any rename, edit, addition or removal
    changes it. Cheap: one stat per file, no file content read."""
    units = list_inputs(input_base, skip=[labels] if labels else []).units
    h = hashlib.sha256()
    total = 0
    stats = _remote_stats(units) if is_remote(input_base) else None
    for u in units + ([labels] if labels else []):
        if stats is not None and u in stats:
            size, mtime = stats[u]
        else:
            try:
                st = os.stat(u)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
        total += max(size, 0)
        h.update(f"{u}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return f"files:{len(units)},bytes:{total},sha256:{h.hexdigest()}"


def _remote_stats(paths: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    from apache_beam.io.filesystems import FileSystems
    out = {}
    for r in FileSystems.match(list(paths)):
        for m in r.metadata_list:
            out[m.path] = (int(m.size_in_bytes), int(1e9 * (m.last_updated_in_seconds or 0)))
    return out


def enumerate_inputs(input_base: str, skip: Sequence[str] = ()) -> List[str]:
    """Sorted input units under `input_base` (see `list_inputs`)."""
    return list_inputs(input_base, skip).units


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def iter_archive(path: str, data: Optional[bytes] = None) -> Iterator[Tuple[str, object]]:
    """Yield (`archive!member`, bytes or Rejected) for each member of a zip/tar/tar.gz that is not
    a directory, in stored order: every member is seen and accounted for.

    A symlink or hard link member whose target is a file inside the archive yields that file's
    bytes under the link's name (then the sha256 makes it a duplicate); a link to anything else,
    a device or a fifo yields Rejected(NOT_A_FILE). Raises Rejected(UNREADABLE) if the archive
    itself cannot be opened.
    """
    data = read_bytes(path) if data is None else data
    buf = io.BytesIO(data)
    src = lambda name: f"{path}{ARCHIVE_SEP}{name}"  # noqa: E731
    try:
        if path.lower().endswith(".zip"):
            with zipfile.ZipFile(buf) as zf:
                names = set(zf.namelist())
                for info in zf.infolist():
                    if info.is_dir() or os.path.basename(info.filename).startswith("."):
                        continue
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:       # S_IFLNK
                        target = zf.read(info).decode("utf-8", "replace")
                        t = os.path.normpath(os.path.join(os.path.dirname(info.filename), target))
                        if t in names and not t.endswith("/"):
                            yield src(info.filename), zf.read(t)
                        else:
                            yield src(info.filename), Rejected(
                                NOT_A_FILE, f"symlink to {target}, not a file inside the archive")
                        continue
                    yield src(info.filename), zf.read(info)
        else:
            with tarfile.open(fileobj=buf, mode="r:*") as tf:
                for m in tf:
                    if m.isdir() or os.path.basename(m.name).startswith("."):
                        continue
                    if m.isfile():
                        f = tf.extractfile(m)
                        yield src(m.name), (f.read() if f else b"")
                    elif m.issym() or m.islnk():
                        kind = "symlink" if m.issym() else "hard link"
                        try:
                            f = tf.extractfile(m)     # resolves links inside the archive
                        except (KeyError, tarfile.TarError):
                            f = None
                        if f is None:
                            yield src(m.name), Rejected(
                                NOT_A_FILE, f"{kind} to {m.linkname}, not a file inside the archive")
                        else:
                            yield src(m.name), f.read()
                    else:
                        yield src(m.name), Rejected(
                            NOT_A_FILE, f"not a regular file (tar type {m.type!r})")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise Rejected(UNREADABLE, f"broken archive: {type(e).__name__}: {e}") from e


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


# ---------------------------------------------------------------------------------------------
# Labels

def normalize_attr_name(name: str) -> str:
    """'Hair Colour' -> 'hair_color', 'Eyes-Color' -> 'eyes_color' (feature-name safe)."""
    n = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).strip()).strip("_").lower()
    return n.replace("colour", "color")


_FILE_KEYS = ("file", "filename", "file_name", "image", "image_id", "path", "name")


def parse_celeba_attrs(path: str) -> Tuple[List[str], Dict[str, Dict[str, int]]]:
    """CelebA `list_attr_celeba.txt` -> (attribute names, {file name: {name: 0/1}}).

    Format: line 1 the image count, line 2 the attribute names, then `file v1 v2 ...` with
    values -1/1 (0 accepted as 0). The Kaggle CSV variant (`image_id,5_o_Clock_Shadow,...`
    header, no count line) is accepted too. Errors name the file and line.
    """
    with open(path, "r", encoding="utf-8") as f:
        lines = [ln.rstrip("\n\r") for ln in f]
    lines = [ln for ln in lines if ln.strip()]
    is_csv = path.lower().endswith(".csv") or (lines and "," in lines[0])
    split = (lambda s: [t.strip() for t in s.split(",")]) if is_csv else (lambda s: s.split())
    if not lines:
        raise IngestError(f"labels {path}: empty file")
    start, declared = 0, None
    first = split(lines[0])
    if len(first) == 1 and first[0].isdigit():
        declared, start = int(first[0]), 1
    if start >= len(lines):
        raise IngestError(f"labels {path}: no header line of attribute names")
    header = split(lines[start])
    rows = lines[start + 1:]
    if header and header[0].lower() in _FILE_KEYS:   # Kaggle CSV: header names the file column
        header = header[1:]
    names = [normalize_attr_name(h) for h in header]
    if not names:
        raise IngestError(f"labels {path}: header line {start + 1} names no attributes")
    table = {}
    for i, ln in enumerate(rows, start=start + 2):
        parts = split(ln)
        if len(parts) != len(names) + 1:
            raise IngestError(f"labels {path} line {i}: expected a file name and {len(names)} "
                              f"values, got {len(parts)} fields")
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            raise IngestError(f"labels {path} line {i}: values must be -1, 0 or 1: {ln[:80]!r}") from None
        if any(v not in (-1, 0, 1) for v in vals):
            raise IngestError(f"labels {path} line {i}: values must be -1, 0 or 1: {ln[:80]!r}")
        table[parts[0]] = {n: int(v == 1) for n, v in zip(names, vals)}
    if declared is not None and declared != len(table):
        raise IngestError(f"labels {path}: line 1 declares {declared} images but {len(table)} rows follow")
    return names, table


def _flatten_json_attrs(obj: Dict, prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in obj.items():
        name = normalize_attr_name(prefix + "_" + str(k) if prefix else k)
        if isinstance(v, dict):
            out.update(_flatten_json_attrs(v, name))
        elif v is None:
            continue
        elif isinstance(v, bool):
            out[name] = int(v)
        elif isinstance(v, (int, float, str)):
            out[name] = v
        elif isinstance(v, list):
            out[name] = ",".join(str(x) for x in v)
        else:
            out[name] = str(v)
    return out


def load_json_attrs(path: str) -> Dict[str, Dict[str, object]]:
    """Per-image JSON attributes (Curto & Zarza style) -> {image key: {attr: value}}.

    `path` is a directory of `<image stem>.json` files (searched recursively), or one JSON file
    holding either {"<image file>": {attrs}} or [{"file": "<image file>", attrs...}, ...].
    Attribute names are normalised (`Hair Colour` -> `hair_color`); nested objects flatten with
    '_' (`facial_hair: {beard: true}` -> `facial_hair_beard`). Values: bool -> 0/1, int, float,
    string; then each attribute gets one type over the whole set (int < float < string), so
    every example carries the same feature type (TFX statistics and schemas need that).
    """
    raw: Dict[str, Dict] = {}

    def load(p):
        try:
            with open(p, "r", encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise IngestError(f"labels: cannot read JSON {p}: {e}") from e

    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for n in sorted(names):
                if n.lower().endswith(".json"):
                    obj = load(os.path.join(root, n))
                    if not isinstance(obj, dict):
                        raise IngestError(f"labels: {os.path.join(root, n)} must hold a JSON object")
                    raw[os.path.splitext(n)[0]] = obj.get("attributes", obj) \
                        if isinstance(obj.get("attributes"), dict) else obj
    else:
        obj = load(path)
        if isinstance(obj, dict):
            raw = {k: v for k, v in obj.items()}
        elif isinstance(obj, list):
            for i, rec in enumerate(obj):
                key = next((rec[k] for k in _FILE_KEYS if isinstance(rec, dict) and k in rec), None)
                if key is None:
                    raise IngestError(f"labels {path}: record {i} names no image "
                                      f"(one of {', '.join(_FILE_KEYS)})")
                raw[str(key)] = {k: v for k, v in rec.items() if k not in _FILE_KEYS}
        for k, v in raw.items():
            if not isinstance(v, dict):
                raise IngestError(f"labels {path}: entry {k!r} must be a JSON object of attributes")
    table = {k: _flatten_json_attrs(v) for k, v in raw.items()}
    # one type per attribute over the set
    rank = {int: 0, float: 1, str: 2}
    kind: Dict[str, int] = {}
    for attrs in table.values():
        for n, v in attrs.items():
            kind[n] = max(kind.get(n, 0), rank[type(v)] if type(v) in rank else 2)
    conv = {0: int, 1: float, 2: str}
    return {k: {n: conv[kind[n]](v) for n, v in attrs.items()} for k, attrs in table.items()}


class LabelTable:
    """Labels for image sources, looked up by file name (`000001.jpg`) then stem (`000001`)."""

    def __init__(self, table: Dict[str, Dict[str, object]], kind: str, path: str = ""):
        self.kind, self.path = kind, path
        self._by_name = dict(table)
        self._by_stem = {os.path.splitext(os.path.basename(k))[0]: v for k, v in table.items()}

    def __len__(self):
        return len(self._by_name)

    def lookup(self, source: str) -> Optional[Dict[str, object]]:
        base = source.rsplit(ARCHIVE_SEP, 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]
        hit = self._by_name.get(base)
        if hit is None:
            hit = self._by_stem.get(os.path.splitext(base)[0])
        return hit


def load_labels(path: Optional[str]) -> Optional[LabelTable]:
    """A CelebA table (.txt/.csv) or JSON attributes (a .json file or a directory of them)."""
    if not path:
        return None
    if not os.path.exists(path):
        raise IngestError(f"labels: {path} does not exist")
    if os.path.isdir(path) or path.lower().endswith(".json"):
        return LabelTable(load_json_attrs(path), "json", path)
    return LabelTable(parse_celeba_attrs(path)[1], "celeba", path)
