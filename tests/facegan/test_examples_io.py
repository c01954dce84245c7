"""The Examples reader/writer shared by training and metrics: pixel-exact round trip."""
import os

import numpy as np
import pytest

from facegan import examples_io, schema
from tests.testlib.examples import write_synthetic_examples


def test_synthetic_round_trip(tmp_path, rng):
    uri = str(tmp_path / "examples")
    img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    examples_io.write_examples(f"{uri}/Split-train/part-0.gz", [examples_io.make_example(img, source="a.png")])
    (batch,) = list(examples_io.iterate_images(uri, "train", batch_size=4))
    np.testing.assert_array_equal(batch[0], img)


def test_synthetic_artifact_has_both_splits_and_extra_resolutions(tmp_path):
    uri = write_synthetic_examples(str(tmp_path / "ex"), n_train=5, n_eval=3,
                                               resolution=16, extra_resolutions=(4, 8))
    train = np.concatenate(list(examples_io.iterate_images(uri, "train")))
    ev = np.concatenate(list(examples_io.iterate_images(uri, "eval")))
    small = np.concatenate(list(examples_io.iterate_images(uri, "eval", key=schema.image_key(4, 16))))
    assert train.shape == (5, 16, 16, 3) and ev.shape == (3, 16, 16, 3) and small.shape == (3, 4, 4, 3)


def test_missing_split_names_directory(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="Split-eval"):
        examples_io.split_files(str(tmp_path), "eval")


def test_tfrecord_writer_matches_tf_and_beam(tmp_path):
    """The one gzipped TFRecord writer: Beam's masked CRC, and TF reads every record back."""
    import tensorflow as tf
    from apache_beam.io.tfrecordio import _TFRecordUtil
    for data in (b"", b"x", bytes(range(256)) * 50):
        assert examples_io.masked_crc32c(data) == _TFRecordUtil._masked_crc32c(data)
    records = [bytes([k % 256]) * (k * 37 % 5000) for k in range(300)]
    old = examples_io.TFRecordGzipWriter.FLUSH_BYTES
    examples_io.TFRecordGzipWriter.FLUSH_BYTES = 4096          # force many compress chunks
    try:
        w = examples_io.TFRecordGzipWriter(open(tmp_path / "a.gz", "wb"))
        for r in records:
            w.write(r)
        w.close()
    finally:
        examples_io.TFRecordGzipWriter.FLUSH_BYTES = old
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "a.gz"), compression_type="GZIP")]
    assert got == records and w.n == 300


def test_make_example_is_the_ingestion_encoding(rng):
    """One encoder: make_example (tf.train.Example) serializes to the bytes encode_example writes."""
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    ex = examples_io.make_example(img, source="s.png", sha256="ab", mirrored=True,
                                  extra_images={4: img[::2, ::2]}, attrs={"smile": 1, "age": 3.5})
    feats = examples_io.schema_features(img, "s.png", "ab", True, {4: img[::2, ::2]},
                                        attrs={"smile": 1, "age": 3.5})
    assert ex.SerializeToString(deterministic=True) == examples_io.encode_example(feats)
    assert ex.features.feature["attr/age"].float_list.value[0] == 3.5
    assert ex.features.feature[schema.MIRRORED].int64_list.value[0] == 1


def _write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_validate_names_the_file_that_is_not_a_tfrecord(tmp_path):
    """A log or JSON next to the shards is named in one line (not a DataLossError traceback)."""
    good = str(tmp_path / "Split-train" / "d.gz")
    examples_io.write_examples(good, [examples_io.make_example(np.zeros((8, 8, 3), np.uint8))])
    examples_io.validate_files([good])                     # passes
    log = str(tmp_path / "Split-train" / "train.log")
    _write_raw(log, b"step 1 loss 0.3\n" * 10)
    with pytest.raises(examples_io.ExamplesError, match=r"train\.log: not a TFRecord file") as e:
        examples_io.validate_files([good, log])
    assert "\n" not in str(e.value)
    js = str(tmp_path / "meta.json.gz")
    import gzip
    _write_raw(js, gzip.compress(b'{"a": 1}' * 3))
    with pytest.raises(examples_io.ExamplesError, match=r"meta\.json\.gz: not a TFRecord"):
        examples_io.validate_files([js])
    other = str(tmp_path / "other.gz")                     # a TFRecord, but of something else
    examples_io.write_examples(other, [b"\x01\x02\x03 not a proto"])
    with pytest.raises(examples_io.ExamplesError, match="other.gz: a TFRecord file whose first record"):
        examples_io.validate_files([other])
    noimg = str(tmp_path / "noimg.gz")
    examples_io.write_examples(noimg, [examples_io.encode_example({"label": 1})])
    with pytest.raises(examples_io.ExamplesError, match="noimg.gz: record has no 'image' feature"):
        examples_io.validate_files([noimg])
    empty = str(tmp_path / "empty.gz")
    examples_io.write_examples(empty, [])
    examples_io.validate_files([empty])                    # zero records is a valid split file


def test_incomplete_output_is_refused(tmp_path):
    uri = write_synthetic_examples(str(tmp_path / "ex"), n_train=2, n_eval=1, resolution=8)
    files = examples_io.split_files(uri, "train")
    assert examples_io.open_checked(files) == files
    _write_raw(os.path.join(uri, examples_io.INCOMPLETE_MARKER), b"")
    for target in (uri, examples_io.split_dir(uri, "train"), files[0],
                   os.path.join(examples_io.split_dir(uri, "train"), "*")):
        with pytest.raises(examples_io.ExamplesError, match="unfinished ingestion output"):
            examples_io.check_complete(target)
    with pytest.raises(examples_io.ExamplesError, match="unfinished"):
        examples_io.open_checked(files)


def test_train_data_refuses_unfinished_and_foreign_files(tmp_path):
    """`facegan train --data` / the Trainer open data through trainer.data.resolve_files."""
    from facegan.trainer import data as data_lib
    uri = write_synthetic_examples(str(tmp_path / "ex"), n_train=2, n_eval=1, resolution=8)
    _write_raw(os.path.join(examples_io.split_dir(uri, "train"), "run.log"), b"INFO started\n")
    with pytest.raises(ValueError, match=r"run\.log: not a TFRecord file"):
        data_lib.resolve_files(uri)
    os.remove(os.path.join(examples_io.split_dir(uri, "train"), "run.log"))
    assert len(data_lib.resolve_files(uri)) == 1
    _write_raw(os.path.join(uri, examples_io.INCOMPLETE_MARKER), b"")
    with pytest.raises(ValueError, match="unfinished ingestion output"):
        data_lib.resolve_files([os.path.join(examples_io.split_dir(uri, "train"), "*")])   # TFX style
