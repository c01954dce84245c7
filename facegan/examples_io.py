"""Read and write the Examples artifact layout (see facegan/schema.py).

`<uri>/Split-<name>/*.gz` gzipped TFRecords of tf.Example. Used by ingestion (the Beam workers
write with `encode_example` + `TFRecordGzipWriter`), training (tf.data input), metrics
(real-image streams) and tests. TensorFlow is imported inside functions only, so importing this
module stays cheap and the ingestion workers never import it.

One encoder for the schema: `schema_features` builds the feature dict of one example and
`encode_example` serializes it in tf.Example wire format; `make_example` (the tf.train.Example
object tests and tools use) is that same encoding parsed back, so there is one definition.

Why a hand-written encoder and TFRecord writer instead of tf.train.Example + tf.io.TFRecordWriter:
the ingestion workers then never import TensorFlow. Measured with `bench/ingest.py`
(`encoder` entry; AMD EPYC, 2 cores, shared machine at load 11): `import tensorflow` took
51 s (11 s on a quiet machine) per worker process, i.e. more than the whole 11,100-image
ingest at the local runner's rate, while encoding one 64px example took 192 us here vs 257 us
through tf.train.Example (same bytes, asserted by the benchmark): faster per record and no
start-up. The writer frames records exactly as TensorFlow does (length, masked CRC-32C of the
length, data, masked CRC-32C of the data; one gzip stream per file); the tests compare both with
TensorFlow's own serialization and reader.

Readers refuse two kinds of bad input with one line naming the file: an output a run did not
finish (`INCOMPLETE_MARKER` at its root, written first by ingestion and removed last) and files
that are not TFRecords of tf.Examples with an `image` feature (`validate_files`).
"""
import glob
import os
import struct
import zlib
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from facegan import schema

# An output that an ingestion run has not finished (yet, or ever) carries this file at its root.
INCOMPLETE_MARKER = "INGEST_INCOMPLETE"


class ExamplesError(ValueError):
    """Input that is not a finished Examples output of the schema; the message names the file."""


def split_dir(examples_uri: str, split: str) -> str:
    return os.path.join(examples_uri, f"Split-{split}")


def split_files(examples_uri: str, split: str) -> List[str]:
    """The TFRecord files of one split; raises FileNotFoundError naming the directory if none."""
    d = split_dir(examples_uri, split)
    if "://" in d:
        import tensorflow as tf
        files = sorted(tf.io.gfile.glob(os.path.join(d, "*")))
    else:
        files = sorted(f for f in glob.glob(os.path.join(d, "*")) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no TFRecord files in {d} (is {examples_uri} an Examples artifact "
                                f"with a '{split}' split?)")
    return files


def _is_remote(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf
        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def check_complete(path: str) -> None:
    """Raise ExamplesError if `path` (an Examples dir, a Split-<name> dir, a file or a file pattern
    inside one) belongs to an output that an ingestion run did not finish."""
    d = path.rstrip("/")
    for _ in range(3):                  # <uri>/Split-x/<file or pattern> -> <uri>/Split-x -> <uri>
        if d and _exists(os.path.join(d, INCOMPLETE_MARKER)):
            raise ExamplesError(
                f"{d}: unfinished ingestion output ({INCOMPLETE_MARKER} is present: the run that "
                f"wrote it failed or is still going); re-run `facegan ingest` into it")
        d = os.path.dirname(d)


def _read_head(path: str, n: int) -> bytes:
    """The first `n` bytes of the file's records (gunzipped when the file is gzip)."""
    if _is_remote(path):
        import tensorflow as tf
        opener = lambda: tf.io.gfile.GFile(path, "rb")  # noqa: E731
    else:
        opener = lambda: open(path, "rb")  # noqa: E731
    with opener() as f:
        raw = f.read(2)
        if raw != b"\x1f\x8b":
            return raw + f.read(n - len(raw))
        d = zlib.decompressobj(31)
        out = d.decompress(raw)
        while len(out) < n:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            out += d.decompress(chunk, n - len(out))
            if d.eof:
                break
        return out[:n]


def _wire_fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; ValueError when malformed."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _read_varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            ln, i = _read_varint(buf, i)
            if i + ln > n:
                raise ValueError("length past the end")
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"wire type {wt}")
        yield field, wt, v


def _read_varint(buf: bytes, i: int):
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def example_feature_names(record: bytes) -> List[str]:
    """Feature names of a serialized tf.Example (ValueError when it is not one)."""
    names = []
    for f, wt, v in _wire_fields(record):
        if f != 1 or wt != 2:
            raise ValueError("not a tf.Example")
        for f2, wt2, entry in _wire_fields(v):
            if f2 != 1 or wt2 != 2:
                raise ValueError("not a tf.Example")
            for f3, wt3, key in _wire_fields(entry):
                if f3 == 1 and wt3 == 2:
                    names.append(key.decode("utf-8", "replace"))
    return names


HEAD_BYTES = 1 << 20     # enough for the first record of any facegan dataset up to 1024px PNGs


def validate_files(files: Sequence[str]) -> None:
    """Raise ExamplesError naming the first file that is not a TFRecord of the Examples schema.

    Checks each file's first record: TFRecord framing (the masked CRC-32C of its length) and a
    tf.Example with an `image` feature. An empty file (or an empty gzip stream) is a valid
    TFRecord of no records. Cheap: reads at most the first record of each file.
    """
    for path in files:
        try:
            head = _read_head(path, 12)
        except (OSError, zlib.error, EOFError) as e:
            raise ExamplesError(f"{path}: cannot be read as a TFRecord file ({type(e).__name__}: "
                                f"{e}); expected gzipped TFRecords of tf.Example") from None
        if not head:
            continue
        what = None
        if len(head) < 12 or struct.unpack("<I", head[8:12])[0] != masked_crc32c(head[:8]):
            what = f"not a TFRecord file (starts with {head[:12]!r})"
        else:
            length = struct.unpack("<Q", head[:8])[0]
            rec = _read_head(path, 12 + min(length, HEAD_BYTES))[12:]
            try:
                names = example_feature_names(rec)
            except ValueError:
                names = None
            if length <= HEAD_BYTES and names is None:
                what = "a TFRecord file whose first record is not a tf.Example"
            elif names is not None and schema.IMAGE not in names and length <= HEAD_BYTES:
                what = f"record has no '{schema.IMAGE}' feature (has {sorted(names)[:8]})"
        if what:
            raise ExamplesError(f"{path}: {what}; expected gzipped TFRecords of tf.Example in "
                                f"facegan's schema (an Examples output of `facegan ingest`)")


# ---------------------------------------------------------------------------------------------
# Writing: the one tf.Example encoder of the schema and the gzipped TFRecord writer.

def _crc32c_fn():
    try:
        import google_crc32c          # C implementation (a TFX/Beam dependency)
        return google_crc32c.value
    except ImportError:               # crcmod, pure Python
        import crcmod.predefined
        return crcmod.predefined.mkPredefinedCrcFun("crc-32c")


_crc32c = _crc32c_fn()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (tensorflow/tsl/lib/hash/crc32c.h: Mask)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordGzipWriter:
    """Gzipped TFRecord file: per record uint64 length, masked crc of it, data, masked crc.

    Writes to a binary file object it owns (closed by `close`). Records are compressed in ~1 MB
    chunks: one compress call per chunk instead of several small ones per record.
    """

    FLUSH_BYTES = 1 << 20

    def __init__(self, fileobj, path: str = ""):
        self.path, self.n = path, 0
        self._f = fileobj
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)   # 31: gzip
        self._buf: List[bytes] = []
        self._size = 0

    def write(self, record: bytes):
        head = struct.pack("<Q", len(record))
        self._buf += [head, struct.pack("<I", masked_crc32c(head)), record,
                      struct.pack("<I", masked_crc32c(record))]
        self._size += len(record) + 16
        self.n += 1
        if self._size >= self.FLUSH_BYTES:
            self._flush()

    def _flush(self):
        if self._buf:
            self._f.write(self._z.compress(b"".join(self._buf)))
            self._buf, self._size = [], 0

    def close(self):
        self._flush()
        self._f.write(self._z.flush())
        self._f.close()


def _varint_slow(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_VARINT_SMALL = [_varint_slow(n) for n in range(1 << 14)]   # lengths, tags, small ints


def _varint(n: int) -> bytes:
    return _VARINT_SMALL[n] if 0 <= n < 16384 else _varint_slow(n)


def _ld(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _feature(value) -> bytes:
    values = value if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (bool, int, np.integer)) for v in values) and values:
        return _ld(3, _ld(1, b"".join(_varint(int(v)) for v in values)))
    if all(isinstance(v, (float, np.floating, int, np.integer)) for v in values) and values:
        return _ld(2, _ld(1, struct.pack(f"<{len(values)}f", *[float(v) for v in values])))
    return _ld(1, b"".join(_ld(1, v if isinstance(v, bytes) else str(v).encode("utf-8"))
                           for v in values))


def encode_example(features: Dict[str, object]) -> bytes:
    """Serialize {name: int | float | bytes | str | list of one kind} as a tf.train.Example.

    tf.Example wire format: Example{features=1: Features{feature=1: map<string, Feature>}};
    Feature oneof bytes_list=1 / float_list=2 / int64_list=3, each {value=1 repeated}. Map
    entries sorted by key: byte-identical to TF's deterministic serialization (tested).
    """
    entries = b"".join(_ld(1, _ld(1, k.encode("utf-8")) + _ld(2, _feature(v)))
                       for k, v in sorted(features.items()))
    return _ld(1, entries)


def schema_features(image: np.ndarray, source: str = "", sha256: str = "", mirrored: bool = False,
                    extra_images: Optional[Dict[int, np.ndarray]] = None,
                    orig_size: Optional[Sequence[int]] = None,
                    attrs: Optional[Dict] = None) -> Dict[str, object]:
    """The feature dict of one example in the schema (facegan/schema.py) from uint8 images."""
    from facegan.images import encode_png
    image = np.asarray(image, np.uint8)
    r = image.shape[0]
    feats = {schema.IMAGE: encode_png(image), schema.HEIGHT: r, schema.WIDTH: image.shape[1],
             schema.SOURCE: source, schema.SHA256: sha256, schema.MIRRORED: int(bool(mirrored))}
    if orig_size is not None:
        feats[schema.ORIG_HEIGHT], feats[schema.ORIG_WIDTH] = int(orig_size[0]), int(orig_size[1])
    for res, a in (extra_images or {}).items():
        feats[schema.image_key(res, r)] = encode_png(np.asarray(a, np.uint8))
    for name, v in (attrs or {}).items():
        feats[schema.attr_key(name)] = v
    return feats


def open_checked(files: Sequence[str]) -> List[str]:
    """The one check readers call before opening Examples files: finished output, right format."""
    files = list(files)
    for d in sorted({os.path.dirname(f) for f in files}):
        check_complete(d)
    validate_files(files)
    return files


def feature_spec(image_keys=(schema.IMAGE,)) -> Dict:
    import tensorflow as tf
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in image_keys}
    spec.update({
        schema.SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.SHA256: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.MIRRORED: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        schema.PROVENANCE_KEY: tf.io.VarLenFeature(tf.string),
    })
    return spec


def is_real(parsed):
    """TF predicate on a record parsed with `feature_spec`: False for synthetic provenance."""
    import tensorflow as tf
    values = parsed[schema.PROVENANCE_KEY].values
    return tf.logical_not(tf.reduce_any(tf.equal(values, schema.SYNTHETIC)))


def compression_type(path: str) -> str:
    """A TFRecord file's compression_type, read from its first bytes: "GZIP" or ""."""
    import tensorflow as tf
    with (tf.io.gfile.GFile(path, "rb") if _is_remote(path) else open(path, "rb")) as f:
        return "GZIP" if f.read(2) == b"\x1f\x8b" else ""


def count_synthetic(files: Sequence[str], include_mirrored: bool = False) -> int:
    """How many records of `files` have synthetic provenance (what the real side leaves out)."""
    import tensorflow as tf
    files = list(files)
    spec = {k: v for k, v in feature_spec(()).items() if k in (schema.MIRRORED, schema.PROVENANCE_KEY)}
    ds = tf.data.TFRecordDataset(files, compression_type=compression_type(files[0]))
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec))
    if not include_mirrored:
        ds = ds.filter(lambda e: tf.equal(e[schema.MIRRORED], 0))
    return int(ds.reduce(tf.constant(0, tf.int64),
                         lambda n, e: n + tf.cast(tf.logical_not(is_real(e)), tf.int64)).numpy())


def image_dataset(examples_uri: str, split: str, key: str = schema.IMAGE, batch_size: int = 64,
                  include_mirrored: bool = True, limit: Optional[int] = None, include_synthetic: bool = False):
    """tf.data.Dataset of uint8 [B, H, W, 3] batches decoded from one split, in file order.

    Examples of synthetic provenance are left out unless `include_synthetic` (this is the real
    side of every metric; `count_synthetic` says how many were left out)."""
    import tensorflow as tf
    check_complete(examples_uri)            # the evaluator and metrics refuse unfinished outputs
    files = split_files(examples_uri, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    ds = ds.map(lambda s: tf.io.parse_single_example(s, feature_spec((key,))),
                num_parallel_calls=tf.data.AUTOTUNE)
    if not include_mirrored:
        ds = ds.filter(lambda e: tf.equal(e[schema.MIRRORED], 0))
    if not include_synthetic:
        ds = ds.filter(is_real)
    if limit:
        ds = ds.take(limit)
    ds = ds.map(lambda e: tf.ensure_shape(tf.io.decode_png(e[key], channels=3), [None, None, 3]),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def iterate_images(examples_uri: str, split: str, key: str = schema.IMAGE, batch_size: int = 64,
                   include_mirrored: bool = True, limit: Optional[int] = None,
                   include_synthetic: bool = False) -> Iterator[np.ndarray]:
    """numpy uint8 [B, H, W, 3] batches from one split (streams; never loads the whole split;
    synthetic provenance left out unless `include_synthetic`)."""
    for batch in image_dataset(examples_uri, split, key, batch_size, include_mirrored, limit, include_synthetic):
        yield batch.numpy()


def write_examples(path: str, examples) -> int:
    """Write tf.train.Example protos (or their serialized bytes) to one gzipped TFRecord file."""
    if _is_remote(path):
        import tensorflow as tf
        f = tf.io.gfile.GFile(path, "wb")
    else:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        f = open(path, "wb")
    w = TFRecordGzipWriter(f, path)
    for ex in examples:
        w.write(ex if isinstance(ex, bytes) else ex.SerializeToString())
    w.close()
    return w.n


def make_example(image: np.ndarray, source: str = "", sha256: str = "", mirrored: bool = False,
                 extra_images: Optional[Dict[int, np.ndarray]] = None, attrs: Optional[Dict] = None):
    """One tf.train.Example in the schema from a uint8 [R, R, 3] image (tests, tools): the
    ingestion encoding (`schema_features` + `encode_example`) parsed by TensorFlow."""
    import tensorflow as tf
    return tf.train.Example.FromString(encode_example(schema_features(
        image, source, sha256, mirrored, extra_images, attrs=attrs)))


def scan_attributes(files: Sequence[str], names: Sequence[str], rule: str = "refuse") -> Dict:
    """Check the Examples carry the attributes to condition on; one pass over the serialized
    records (images are not decoded).

    Returns {"names", "kinds" (feature kind per name), "rule", "total", "usable" (records with every
    attribute), "unlabelled", "positive_rate" {name: fraction of labelled records with value >= 0.5},
    "cells" {joint label cell (`label_cell`): labelled records in it}}.
    Raises ValueError naming: attributes no record carries (and the ones they do carry); string
    attributes; values outside [0, 1] (with the source); unlabelled records under rule "refuse"
    (how many and the first source, and the `condition.unlabelled` setting that skips them).
    """
    import tensorflow as tf
    names = list(names)
    kinds: Dict[str, str] = {}
    carried, total, usable, first_missing = set(), 0, 0, None
    positives = {n: 0 for n in names}
    cells: Dict[int, int] = {}
    raw = tf.data.TFRecordDataset(list(files), compression_type=compression_type(files[0]))
    for rec in raw.as_numpy_iterator():
        feats = tf.train.Example.FromString(rec).features.feature
        total += 1
        carried.update(k[len(schema.ATTR_PREFIX):] for k in feats if k.startswith(schema.ATTR_PREFIX))
        values = {}
        for n in names:
            f = feats.get(schema.attr_key(n))
            kind = f.WhichOneof("kind") if f is not None else None
            if kind is None or not getattr(f, kind).value:
                continue
            if kind == "bytes_list":
                raise ValueError(f"condition.attributes: attr/{n} holds strings in {files[0]}; conditioning "
                                 "needs 0/1 (or [0, 1]) numbers")
            if kinds.setdefault(n, kind) != kind:
                raise ValueError(f"condition.attributes: attr/{n} is {kinds[n]} in some records and {kind} in others")
            v = float(getattr(f, kind).value[0])
            if not 0.0 <= v <= 1.0:
                source = feats[schema.SOURCE].bytes_list.value[0].decode() if schema.SOURCE in feats else "?"
                raise ValueError(f"condition.attributes: attr/{n} = {v} for {source}; values must be in [0, 1]")
            values[n] = v
        if len(values) == len(names):
            usable += 1
            for n, v in values.items():
                positives[n] += v >= 0.5
            cell = sum(1 << a for a, n in enumerate(names) if values[n] >= 0.5)
            cells[cell] = cells.get(cell, 0) + 1
        elif first_missing is None:
            first_missing = feats[schema.SOURCE].bytes_list.value[0].decode() if schema.SOURCE in feats else "?"
    unknown = [n for n in names if n not in carried]
    if unknown:
        have = ", ".join(sorted(carried)) or "no attr/* features (ingest with --labels)"
        raise ValueError(f"condition.attributes: {', '.join(unknown)} not in the Examples ({files[0]}...); "
                         f"they carry: {have}")
    if usable < total and rule != "skip":
        raise ValueError(f"condition.attributes: {total - usable} of {total} Examples lack one of "
                         f"{', '.join(names)} (first: {first_missing}); set condition.unlabelled=skip to "
                         "train on the labelled ones")
    if usable == 0:
        raise ValueError(f"condition.attributes: no Example carries all of {', '.join(names)}")
    return {"names": names, "kinds": kinds, "rule": rule, "total": total, "usable": usable,
            "unlabelled": total - usable, "positive_rate": {n: positives[n] / usable for n in names},
            "cells": cells}
