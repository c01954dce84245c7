"""Ingestion options and errors: the rejection reasons, the defaults, `IngestConfig` (every
option the CLI, the TFX component and the pipeline pass) and the one-line errors that name a field.

No Beam, TFX or TensorFlow imports.
"""
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from facegan import schema
from facegan.ingest import paired as P

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
