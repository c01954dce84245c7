"""tf.data input for training: Examples artifact -> float [-1, 1] image batches.

Reads the gzipped TFRecords of one split (see facegan/schema.py), decodes PNGs in parallel,
shuffles deterministically per epoch, repeats and prefetches. For progressive growing it reads
the stored `image_<R>` feature of the current stage when ingestion wrote one, else resizes the
full-resolution image (area filter) on the fly.

Resumability: the stream is a pure function of (files, seed, position). Epoch e is shuffled with
the int seed `seed * 1_000_003 + e % EPOCH_CYCLE` (tf.data shuffle seeds must be Python ints, so
the order cycles every EPOCH_CYCLE epochs), so a run resumed at `position` images rebuilds the
stream from epoch `position // n` and skips `position % n` *serialized* records (read, never
decoded) — the resumed run sees exactly the images the straight run would have seen.

uint8 stays at the boundary: `to_network` / `from_network` are the only conversions.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from facegan.examples_io import scan_attributes  # noqa: F401  (the trainer's name for it)
from facegan import examples_io, schema
from facegan.generator.ops import from_uint8, to_uint8   # the one conversion, shared with the SavedModel graph

EPOCH_CYCLE = 16


def to_network(images):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return from_uint8(images)


def from_network(images):
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped)."""
    return to_uint8(images)


def resolve_files(data: Union[str, Sequence[str]], split: str = schema.TRAIN_SPLIT) -> List[str]:
    """TFRecord files from an Examples artifact dir, a Split-<name> dir, or file patterns.

    Raises FileNotFoundError naming what was looked at when nothing matches, and
    examples_io.ExamplesError (a ValueError) naming the file of an unfinished ingestion output or
    one that is not a TFRecord of the Examples schema.
    """
    if isinstance(data, str):
        if tf.io.gfile.isdir(examples_io.split_dir(data, split)):
            return examples_io.open_checked(examples_io.split_files(data, split))
        if tf.io.gfile.isdir(data):
            files = sorted(f for f in tf.io.gfile.glob(os.path.join(data, "*"))
                           if not tf.io.gfile.isdir(f) and not f.endswith((".json", ".jsonl", ".png")))
            if files:
                return examples_io.open_checked(files)
            raise FileNotFoundError(f"no TFRecord files in {data} and no Split-{split} directory under it")
        data = [data]
    files: List[str] = []
    for pattern in data:
        if tf.io.gfile.isdir(pattern):
            files.extend(resolve_files(pattern, split))
        else:
            files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {list(data)!r}")
    return examples_io.open_checked(files)


def _compression(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        magic = f.read(2)
    return "GZIP" if magic == b"\x1f\x8b" else ""


def inspect_files(files: Sequence[str]) -> Dict:
    """Read the first record: compression, target resolution and the stored resolutions.

    Returns {"compression": "GZIP"|"", "target": R, "keys": {resolution: feature name},
    "paired": whether records hold an `input_image` (image-to-image pairs)}.
    Raises ValueError naming the file if the record has no `image` feature.
    """
    compression = _compression(files[0])
    raw = next(iter(tf.data.TFRecordDataset(files[:1], compression_type=compression).take(1)), None)
    if raw is None:
        raise ValueError(f"{files[0]}: empty TFRecord file")
    ex = tf.train.Example.FromString(raw.numpy())
    feats = ex.features.feature
    if schema.IMAGE not in feats:
        raise ValueError(f"{files[0]}: record has no '{schema.IMAGE}' feature "
                         f"(has {sorted(feats)}); is this an Examples artifact of facegan's schema?")
    if schema.HEIGHT in feats:
        target = int(feats[schema.HEIGHT].int64_list.value[0])
    else:
        target = int(tf.io.decode_png(feats[schema.IMAGE].bytes_list.value[0]).shape[0])
    keys = {target: schema.IMAGE}
    paired = schema.INPUT_IMAGE in feats
    for name in feats:
        if name.startswith(schema.IMAGE + "_") and name[len(schema.IMAGE) + 1:].isdigit():
            keys[int(name[len(schema.IMAGE) + 1:])] = name
    return {"compression": compression, "target": target, "keys": keys, "paired": paired}


def count_records(files: Sequence[str], compression: Optional[str] = None) -> int:
    compression = _compression(files[0]) if compression is None else compression
    ds = tf.data.TFRecordDataset(list(files), compression_type=compression)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def train_dataset(files: Sequence[str], resolution: int, batch_size: int, *, seed: int = 0,
                  shuffle_buffer: int = 2048, position: int = 0, info: Optional[Dict] = None,
                  num_records: Optional[int] = None, labels: Optional[Dict] = None,
                  input_key: Optional[str] = None):
    """Infinite dataset of float32 [batch_size, R, R, 3] in [-1, 1], deterministic for a seed.

    `position` is the number of images already drawn (resume): the stream continues from there.
    `labels` (conditional training; `scan_attributes`' result): batches are (images, attributes float32
    [batch_size, A]); with labels["rule"] == "skip", records lacking an attribute are left out
    before shuffling, so positions count labelled records (num_records = labels["usable"]).
    `input_key` (image-to-image, e.g. schema.INPUT_IMAGE): batches are [batch_size, R, R, 6], that
    feature's image then the target `image` on the channel axis (stored at R: no resizing).
    """
    files = list(files)
    info = info or inspect_files(files)
    if input_key is None:
        ds = example_stream(files, resolution, seed=seed, shuffle_buffer=shuffle_buffer, position=position,
                            info=info, num_records=num_records, labels=labels)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    key, stored = _stored_key(files, resolution, info)
    if not info.get("paired", True) or stored != resolution:
        raise ValueError(f"{files[0]}: image-to-image training needs '{input_key}' pairs stored at "
                         f"{resolution}x{resolution}; re-ingest with --paired and --resolution {resolution}")
    raw = tf.data.TFRecordDataset(files, compression_type=info["compression"])
    ds = _shuffled_records(raw, files, info, seed, shuffle_buffer, position, num_records)
    spec = {key: tf.io.FixedLenFeature([], tf.string), input_key: tf.io.FixedLenFeature([], tf.string)}

    def decode_pair(serialized):
        ex = tf.io.parse_single_example(serialized, spec)
        imgs = [tf.ensure_shape(tf.io.decode_png(ex[k], channels=3), [stored, stored, 3]) for k in (input_key, key)]
        return to_network(tf.concat(imgs, -1))

    ds = ds.map(decode_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _stored_key(files: Sequence[str], resolution: int, info: Dict):
    """(feature holding the images for `resolution`, its stored resolution); refuses upsampling."""
    key = info["keys"].get(resolution, schema.IMAGE)
    if key == schema.IMAGE and resolution > info["target"]:
        raise ValueError(f"training resolution {resolution} is above the data's stored resolution "
                         f"{info['target']} ({files[0]}); re-ingest at >= {resolution}")
    return key, (resolution if key != schema.IMAGE else info["target"])


def _shuffled_records(raw, files, info, seed: int, shuffle_buffer: int, position: int,
                      num_records: Optional[int]):
    """Serialized records, shuffled per epoch from (seed, epoch), repeated, from `position` on."""
    start_epoch, skip = 0, 0
    if position:
        n = num_records or count_records(files, info["compression"])
        start_epoch, skip = divmod(int(position), n)

    def epoch(e):
        return raw.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e % EPOCH_CYCLE,
                           reshuffle_each_iteration=False)

    ds = epoch(start_epoch)
    for e in range(start_epoch + 1, start_epoch + EPOCH_CYCLE):
        ds = ds.concatenate(epoch(e))
    ds = ds.repeat()
    return ds.skip(skip) if skip else ds


def example_stream(files: Sequence[str], resolution: int, *, seed: int = 0, shuffle_buffer: int = 2048,
                   position: int = 0, info: Optional[Dict] = None, num_records: Optional[int] = None,
                   labels: Optional[Dict] = None, cell: Optional[int] = None):
    """The unbatched stream behind `train_dataset`: images (or (image, attributes) with `labels`).

    `cell` (attribute balancing): only records whose binarized label vector is that joint cell
    (`label_cell`); `num_records` must then be the cell's size (labels["cells"][cell]).
    """
    files = list(files)
    info = info or inspect_files(files)
    key, stored = _stored_key(files, resolution, info)
    raw = tf.data.TFRecordDataset(files, compression_type=info["compression"])
    if labels is not None:
        raw = raw.filter(_has_labels(labels)) if labels["rule"] == "skip" else raw
        num_records = labels["usable"]
        if cell is not None:
            parse = _parse_labels(labels)
            raw = raw.filter(lambda s: tf.equal(label_cell(parse(s)), cell))
            num_records = labels["cells"][cell]
    ds = _shuffled_records(raw, files, info, seed, shuffle_buffer, position, num_records)
    spec = {key: tf.io.FixedLenFeature([], tf.string)}

    def decode(serialized):
        img = tf.io.decode_png(tf.io.parse_single_example(serialized, spec)[key], channels=3)
        img = tf.ensure_shape(img, [stored, stored, 3])
        x = to_network(img)
        if stored != resolution:   # no stored copy at this stage: average-pool style resize
            x = tf.image.resize(x, [resolution, resolution], method="area")
        return x

    if labels is not None:
        image_decode, parse_labels = decode, _parse_labels(labels)

        def decode(serialized):   # noqa: F811 - the labelled variant wraps the image decoder
            return image_decode(serialized), parse_labels(serialized)

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# -- mixing sources and balancing attributes ------------------------------------------------------
# A mixed stream draws element i from sub-stream choice(i), a pure function of (seed, tag, i): block
# b = i // CHOICE_BLOCK of the choices is `stateless_uniform([CHOICE_BLOCK], [seed * 8 + tag, b])`
# mapped through the cumulative weights. Resuming at `position` counts each sub-stream's draws in
# [0, position) (one vectorized pass per block) and resumes every sub-stream at its own count, so
# a mixed stream resumes exactly like a plain one.
CHOICE_BLOCK = 4096
TAG_SYNTHETIC, TAG_BALANCE = 1, 2


def _block_choices(weights, seed: int, tag: int):
    cdf = tf.constant(np.cumsum(np.asarray(weights, np.float64) / np.sum(weights))[:-1], tf.float32)

    def block(b):
        u = tf.random.stateless_uniform([CHOICE_BLOCK], seed=tf.stack([tf.constant(seed * 8 + tag, tf.int64),
                                                                       tf.cast(b, tf.int64)]))
        return tf.searchsorted(cdf, u, side="right")   # int32 [CHOICE_BLOCK] in [0, len(weights))
    return block


def choice_counts(weights, seed: int, tag: int, position: int) -> np.ndarray:
    """How many of the first `position` choices went to each sub-stream (int64 [len(weights)])."""
    k = len(weights)
    block = _block_choices(weights, seed, tag)
    full, rest = divmod(int(position), CHOICE_BLOCK)
    counts = tf.data.Dataset.range(full).map(lambda b: tf.math.bincount(block(b), minlength=k, maxlength=k,
                                                                        dtype=tf.int64))
    total = counts.reduce(tf.zeros([k], tf.int64), lambda a, c: a + c).numpy()
    if rest:
        total += tf.math.bincount(block(full)[:rest], minlength=k, maxlength=k, dtype=tf.int64).numpy()
    return total


def choice_stream(weights, seed: int, tag: int, position: int = 0):
    """int64 dataset: the sub-stream index of elements position, position + 1, ... (see above)."""
    block = _block_choices(weights, seed, tag)
    first, skip = divmod(int(position), CHOICE_BLOCK)
    ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max).map(lambda b: tf.cast(block(b), tf.int64)).unbatch()
    return ds.skip(skip) if skip else ds


def choose(weights, seed: int, tag: int, position: int, make):
    """Sub-streams mixed at `weights` from element `position` on; `make(k, pos_k)` builds sub-stream
    k resumed at its own draw count pos_k (how many of the first `position` elements it gave)."""
    counts = choice_counts(weights, seed, tag, position) if position else np.zeros(len(weights), np.int64)
    streams = [make(k, int(counts[k])) for k in range(len(weights))]
    return tf.data.Dataset.choose_from_datasets(streams, choice_stream(weights, seed, tag, position),
                                                stop_on_empty_dataset=True)


def label_cell(y):
    """The joint label cell of attribute vectors: sum_a [y_a >= 0.5] * 2^a (int64, any leading shape)."""
    bits = tf.cast(y >= 0.5, tf.int64)
    return tf.reduce_sum(bits * tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.range(tf.shape(y)[-1], dtype=tf.int64)),
                         axis=-1)


def balance_weights(cells: Dict[int, int], num_attributes: int, iterations: int = 200) -> Dict[int, float]:
    """Sampling probability per joint label cell for `condition.balance`: iterative proportional
    fitting (raking; Deming & Stephan 1940) of the data's cell frequencies to marginals of 0.5 for
    every attribute. The result is the distribution closest to the data's joint (in KL divergence)
    whose positive rates are all 0.5, when one exists on the occupied cells; an attribute that is
    constant in the data cannot move and stays as it is. Empty cells stay empty."""
    ids = np.array(sorted(cells), np.int64)
    q = np.array([cells[c] for c in ids], np.float64)
    q /= q.sum()
    bits = ((ids[:, None] >> np.arange(num_attributes)[None]) & 1).astype(bool)
    for _ in range(iterations):
        for a in range(num_attributes):
            p = q[bits[:, a]].sum()
            if 0.0 < p < 1.0:
                q = np.where(bits[:, a], q * 0.5 / p, q * 0.5 / (1.0 - p))
    return {int(c): float(v) for c, v in zip(ids, q / q.sum())}


def source_stream(source: Dict, resolution: int, *, seed: int, shuffle_buffer: int, position: int = 0,
                  balance: bool = False):
    """One source's unbatched stream (`source`: {"files", "info", "labels", "num_records"}); with
    `balance`, a mix of its joint label cells at `balance_weights`."""
    common = dict(shuffle_buffer=shuffle_buffer, info=source["info"], labels=source["labels"])
    if not balance:
        return example_stream(source["files"], resolution, seed=seed, position=position,
                              num_records=source.get("num_records"), **common)
    labels = source["labels"]
    weights = balance_weights(labels["cells"], len(labels["names"]))
    cells = sorted(weights)
    return choose([weights[c] for c in cells], seed, TAG_BALANCE, position,
                  lambda k, pos: example_stream(source["files"], resolution, seed=seed + 7919 * (k + 1),
                                                position=pos, cell=cells[k], **common))


def mixed_dataset(real: Dict, synthetic: Optional[Dict], ratio: float, resolution: int, batch_size: int, *,
                  seed: int = 0, shuffle_buffer: int = 2048, position: int = 0, balance: bool = False):
    """Batches like `train_dataset`'s, each element drawn from the synthetic source with probability
    `ratio` (independently per element, a pure function of (seed, element index)), else from the
    real one; each source optionally balanced by attribute (`source_stream`)."""
    def make(k, pos):
        src, s = (real, seed) if k == 0 else (synthetic, seed + 104_729)
        return source_stream(src, resolution, seed=s, shuffle_buffer=shuffle_buffer, position=pos, balance=balance)

    if synthetic is None or ratio <= 0:
        ds = make(0, position)
    else:
        ds = choose([1.0 - ratio, ratio], seed, TAG_SYNTHETIC, position, make)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def domain_filter(attribute: str, value: int):
    """A predicate on serialized Examples: `attr/<attribute>` == value (records without it: False)."""
    key = schema.attr_key(attribute)
    spec = {key: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    return lambda serialized: tf.equal(tf.io.parse_single_example(serialized, spec)[key], value)


def count_domains(files: Sequence[str], attribute: str, compression: str = "GZIP") -> Dict[str, int]:
    """{"a": records with attr/<attribute> == 0, "b": == 1, "unlabeled": neither} (one pass, no decoding)."""
    key = schema.attr_key(attribute)
    spec = {key: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    ds = tf.data.TFRecordDataset(list(files), compression_type=compression)
    values = ds.map(lambda s: tf.io.parse_single_example(s, spec)[key])
    counts = values.reduce(tf.zeros([3], tf.int64), lambda c, v: c + tf.one_hot(
        tf.where(v == 0, 0, tf.where(v == 1, 1, 2)), 3, dtype=tf.int64)).numpy()
    return {"a": int(counts[0]), "b": int(counts[1]), "unlabeled": int(counts[2])}


def domains_dataset(files: Sequence[str], resolution: int, batch_size: int, attribute: str, *, seed: int = 0,
                    shuffle_buffer: int = 2048, position: int = 0, info: Optional[Dict] = None):
    """Unpaired image-to-image (CycleGAN): float32 [batch_size, R, R, 6] = an image of domain A
    (`attr/<attribute>` == 0) then an independent image of domain B (== 1) on the channel axis.

    Each domain is its own stream, shuffled per epoch from its own seed and repeated, so the two are
    unaligned (no pairs) and each is a pure function of (files, seed): resume skips `position`
    records of each (both advance one image per example shown).
    """
    files = list(files)
    info = info or inspect_files(files)
    if info["target"] != resolution:
        raise ValueError(f"{files[0]}: CycleGAN trains at the stored resolution {info['target']}, not {resolution}")
    raw = tf.data.TFRecordDataset(files, compression_type=info["compression"])

    def stream(value):
        ds = raw.filter(domain_filter(attribute, value))
        ds = ds.shuffle(shuffle_buffer, seed=seed * 1_000_003 + 17 + value, reshuffle_each_iteration=True).repeat()
        return ds.skip(position) if position else ds

    spec = {schema.IMAGE: tf.io.FixedLenFeature([], tf.string)}

    def decode(serialized):
        img = tf.io.decode_png(tf.io.parse_single_example(serialized, spec)[schema.IMAGE], channels=3)
        return to_network(tf.ensure_shape(img, [resolution, resolution, 3]))

    a, b = (stream(v).map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True) for v in (0, 1))
    ds = tf.data.Dataset.zip((a, b)).map(lambda x, y: tf.concat([x, y], -1))
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def synthetic_dataset(resolution: int, batch_size: int, seed: int = 0, num_attributes: int = 0,
                      channels: int = 3):
    """One fixed random batch repeated forever (benchmarks: input cost ~0; 6 channels = pairs); with
    num_attributes, (images, random 0/1 attributes)."""
    x = tf.random.stateless_uniform([batch_size, resolution, resolution, channels], seed=[seed, 1],
                                    minval=-1.0, maxval=1.0)
    if num_attributes:
        y = tf.cast(tf.random.stateless_uniform([batch_size, num_attributes], seed=[seed, 2]) < 0.5, tf.float32)
        return tf.data.Dataset.from_tensors((x, y)).repeat()
    return tf.data.Dataset.from_tensors(x).repeat()


# -- attribute labels (the rules are in the conditioning module) -------------------------------
_KINDS = {"int64_list": tf.int64, "float_list": tf.float32}


def _label_spec(labels: Dict) -> Dict:
    return {schema.attr_key(n): tf.io.VarLenFeature(_KINDS[labels["kinds"][n]]) for n in labels["names"]}


def _has_labels(labels: Dict):
    spec = _label_spec(labels)

    def has(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        return tf.reduce_all(tf.stack([tf.size(parsed[k].values) > 0 for k in spec]))
    return has


def _parse_labels(labels: Dict):
    spec = _label_spec(labels)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        return tf.stack([tf.cast(tf.sparse.to_dense(parsed[k])[0], tf.float32) for k in spec])
    return parse


