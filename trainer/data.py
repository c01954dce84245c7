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

import tensorflow as tf

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

    Returns {"compression": "GZIP"|"", "target": R, "keys": {resolution: feature name}}.
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
    for name in feats:
        if name.startswith(schema.IMAGE + "_") and name[len(schema.IMAGE) + 1:].isdigit():
            keys[int(name[len(schema.IMAGE) + 1:])] = name
    return {"compression": compression, "target": target, "keys": keys}


def count_records(files: Sequence[str], compression: Optional[str] = None) -> int:
    compression = _compression(files[0]) if compression is None else compression
    ds = tf.data.TFRecordDataset(list(files), compression_type=compression)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def train_dataset(files: Sequence[str], resolution: int, batch_size: int, *, seed: int = 0,
                  shuffle_buffer: int = 2048, position: int = 0, info: Optional[Dict] = None,
                  num_records: Optional[int] = None):
    """Infinite dataset of float32 [batch_size, R, R, 3] in [-1, 1], deterministic for a seed.

    `position` is the number of images already drawn (resume): the stream continues from there.
    """
    files = list(files)
    info = info or inspect_files(files)
    key = info["keys"].get(resolution, schema.IMAGE)
    if key == schema.IMAGE and resolution > info["target"]:
        raise ValueError(f"training resolution {resolution} is above the data's stored resolution "
                         f"{info['target']} ({files[0]}); re-ingest at >= {resolution}")
    stored = resolution if key != schema.IMAGE else info["target"]
    raw = tf.data.TFRecordDataset(files, compression_type=info["compression"])

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
    if skip:
        ds = ds.skip(skip)
    spec = {key: tf.io.FixedLenFeature([], tf.string)}

    def decode(serialized):
        img = tf.io.decode_png(tf.io.parse_single_example(serialized, spec)[key], channels=3)
        img = tf.ensure_shape(img, [stored, stored, 3])
        x = to_network(img)
        if stored != resolution:   # no stored copy at this stage: average-pool style resize
            x = tf.image.resize(x, [resolution, resolution], method="area")
        return x

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def synthetic_dataset(resolution: int, batch_size: int, seed: int = 0):
    """One fixed random batch repeated forever (benchmarks: input cost ~0)."""
    x = tf.random.stateless_uniform([batch_size, resolution, resolution, 3], seed=[seed, 1],
                                    minval=-1.0, maxval=1.0)
    return tf.data.Dataset.from_tensors(x).repeat()
