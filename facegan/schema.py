"""The Examples schema and value conventions shared by ingestion, training, evaluation, serving.

Written down once here; every stage imports these names instead of spelling strings.

One tf.Example per ingested image (and one more per mirrored copy):

| feature                 | type          | meaning                                                     |
|-------------------------|---------------|-------------------------------------------------------------|
| `image`                 | bytes         | PNG (lossless, 8-bit RGB) at the target resolution          |
| `image_<R>`             | bytes         | PNG at a lower stored resolution R (e.g. `image_4`..), when |
|                         |               | multi-resolution storage is on (progressive growing)        |
| `height`, `width`       | int64         | of `image` (== target resolution; images are square)        |
| `orig_height/width`     | int64         | of the decoded source image, before crop/resize             |
| `source`                | bytes (utf-8) | source path; archive members as `archive.zip!member.jpg`    |
| `sha256`                | bytes (hex)   | sha256 of the original file's bytes (duplicates, splits)    |
| `mirrored`              | int64 0/1     | 1 for the horizontally mirrored copy                        |
| `attr/<name>`           | int64/float/bytes | optional labels: CelebA table -> int64 {0,1}; JSON      |
|                         |               | attributes -> int64 (bool/int), float, or bytes (strings)   |
| `input_image`           | bytes         | optional: PNG of the input derived from `image` for         |
|                         |               | image-to-image training (ingest `--paired`, see             |
|                         |               | facegan/ingest/paired.py)                                   |
| `pair/transform`,       | bytes, bytes, | with `input_image`: the transform's name, its full          |
| `pair/params`,          | int64         | parameters (JSON) and the example's seed                    |
| `pair/seed`             |               |                                                             |

Splits: `Split-train`, `Split-eval` (gzipped TFRecords), assigned by content hash.
Extra files at the Examples artifact root: `ingest_summary.json`, `rejections.jsonl`,
`sample_grid.png`.

Value conventions: uint8 [0, 255] RGB at every boundary (files, TFRecords, SavedModel
signatures, metric inputs); float [-1, 1] only inside networks (`to_network` / `from_network`
in trainer code).

Generator SavedModel: the contract (three kinds, signatures, metadata asset, the one loader) is
facegan/generator/; the signature and asset names below are its constants.
"""

IMAGE = "image"
HEIGHT = "height"
WIDTH = "width"
ORIG_HEIGHT = "orig_height"
ORIG_WIDTH = "orig_width"
SOURCE = "source"
SHA256 = "sha256"
MIRRORED = "mirrored"
ATTR_PREFIX = "attr/"
INPUT_IMAGE = "input_image"      # image-to-image: the derived input; `image` is the target
PAIR_PREFIX = "pair/"
# Provenance: a re-ingested `facegan sample --out-dir` set carries attr/provenance =
# "synthetic" (from its manifest); the evaluator's real side never holds such Examples.
PROVENANCE_KEY = ATTR_PREFIX + "provenance"
SYNTHETIC = "synthetic"

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"

SUMMARY_FILE = "ingest_summary.json"
REJECTIONS_FILE = "rejections.jsonl"
GRID_FILE = "sample_grid.png"

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_SAMPLE = "sample"
SIGNATURE_GENERATE = "generate"
METADATA_ASSET = "facegan_metadata.json"

MIN_RESOLUTION = 4
MAX_RESOLUTION = 1024


def image_key(resolution: int, target: int) -> str:
    """Feature name holding the PNG at `resolution` for a dataset ingested at `target`."""
    return IMAGE if resolution == target else f"{IMAGE}_{resolution}"


def attr_key(name: str) -> str:
    return ATTR_PREFIX + name


def check_resolution(resolution, name: str = "resolution") -> int:
    """A power of two within [8, 1024] for ingestion targets; raises ValueError naming the field."""
    try:
        r = int(resolution)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer power of two, got {resolution!r}") from None
    if r != resolution or r < 8 or r > MAX_RESOLUTION or r & (r - 1):
        raise ValueError(f"{name} must be a power of two between 8 and {MAX_RESOLUTION}, got {resolution!r}")
    return r
