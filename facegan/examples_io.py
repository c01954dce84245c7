"""Read and write the Examples artifact layout (see facegan/schema.py) with plain tf.data.

`<uri>/Split-<name>/*.gz` gzipped TFRecords of tf.Example. Used by training (tf.data input),
metrics (real-image streams) and tests. TensorFlow is imported inside functions so importing this
module stays cheap.
"""
import glob
import os
from typing import Dict, Iterator, List, Optional

import numpy as np

from facegan import schema


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


def feature_spec(image_keys=(schema.IMAGE,)) -> Dict:
    import tensorflow as tf
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in image_keys}
    spec.update({
        schema.SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.SHA256: tf.io.FixedLenFeature([], tf.string, default_value=""),
        schema.MIRRORED: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    })
    return spec


def image_dataset(examples_uri: str, split: str, key: str = schema.IMAGE, batch_size: int = 64,
                  include_mirrored: bool = True, limit: Optional[int] = None):
    """tf.data.Dataset of uint8 [B, H, W, 3] batches decoded from one split, in file order."""
    import tensorflow as tf
    files = split_files(examples_uri, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    ds = ds.map(lambda s: tf.io.parse_single_example(s, feature_spec((key,))),
                num_parallel_calls=tf.data.AUTOTUNE)
    if not include_mirrored:
        ds = ds.filter(lambda e: tf.equal(e[schema.MIRRORED], 0))
    if limit:
        ds = ds.take(limit)
    ds = ds.map(lambda e: tf.ensure_shape(tf.io.decode_png(e[key], channels=3), [None, None, 3]),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def iterate_images(examples_uri: str, split: str, key: str = schema.IMAGE, batch_size: int = 64,
                   include_mirrored: bool = True, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """numpy uint8 [B, H, W, 3] batches from one split (streams; never loads the whole split)."""
    for batch in image_dataset(examples_uri, split, key, batch_size, include_mirrored, limit):
        yield batch.numpy()


def write_examples(path: str, examples) -> int:
    """Write tf.train.Example protos (or their serialized bytes) to one gzipped TFRecord file."""
    import tensorflow as tf
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    n = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for ex in examples:
            w.write(ex if isinstance(ex, bytes) else ex.SerializeToString())
            n += 1
    return n


def make_example(image: np.ndarray, source: str = "", sha256: str = "", mirrored: bool = False,
                 extra_images: Optional[Dict[int, np.ndarray]] = None, attrs: Optional[Dict] = None):
    """Build one tf.train.Example in the schema from a uint8 [R, R, 3] image (tests, tools)."""
    import tensorflow as tf
    from facegan.images import encode_png

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))

    image = np.asarray(image, np.uint8)
    r = image.shape[0]
    feats = {schema.IMAGE: b(encode_png(image)), schema.HEIGHT: i(image.shape[0]),
             schema.WIDTH: i(image.shape[1]), schema.SOURCE: b(source.encode()),
             schema.SHA256: b(sha256.encode()), schema.MIRRORED: i(mirrored)}
    for res, img in (extra_images or {}).items():
        feats[schema.image_key(res, r)] = b(encode_png(np.asarray(img, np.uint8)))
    for name, v in (attrs or {}).items():
        if isinstance(v, (bool, int, np.integer)):
            feats[schema.attr_key(name)] = i(v)
        elif isinstance(v, (float, np.floating)):
            feats[schema.attr_key(name)] = f(v)
        else:
            feats[schema.attr_key(name)] = b(str(v).encode())
    return tf.train.Example(features=tf.train.Features(feature=feats))


def write_synthetic_examples(examples_uri: str, n_train: int = 32, n_eval: int = 8,
                             resolution: int = 32, seed: int = 0, extra_resolutions=()) -> str:
    """A tiny Examples artifact of smooth random 'blob' images, for tests that need no real faces."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / max(resolution - 1, 1)

    def one():
        cy, cx, s = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        color = rng.uniform(0, 255, size=3)
        return np.clip(blob[..., None] * color + (1 - blob[..., None]) * 40, 0, 255).astype(np.uint8)

    def extra(img):
        from PIL import Image
        return {r: np.asarray(Image.fromarray(img).resize((r, r), Image.BOX)) for r in extra_resolutions}

    for split, n in ((schema.TRAIN_SPLIT, n_train), (schema.EVAL_SPLIT, n_eval)):
        imgs = [one() for _ in range(n)]
        write_examples(os.path.join(split_dir(examples_uri, split), "data_tfrecord-00000-of-00001.gz"),
                       (make_example(im, source=f"synthetic/{split}/{k}.png", sha256=f"{split}{k}",
                                     extra_images=extra(im)) for k, im in enumerate(imgs)))
    return examples_uri
