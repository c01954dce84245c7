"""trainer/data.py: the training input stream (value range, stored resolution per stage,
deterministic resumable order, clear errors)."""
import os

import numpy as np
import pytest

from facegan import examples_io, schema
from facegan.trainer import data as data_lib
from tests.testlib.examples import write_synthetic_examples


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("ex") / "examples")
    return write_synthetic_examples(uri, n_train=10, n_eval=2, resolution=16, extra_resolutions=(4, 8))


def _take(ds, n):
    return np.concatenate([b.numpy() for b in ds.take(n)])


def test_values_match_the_stored_pngs_in_minus_one_one(synth):
    files = data_lib.resolve_files(synth)
    ref = np.concatenate(list(examples_io.iterate_images(synth, "train")))          # uint8, file order
    got = _take(data_lib.train_dataset(files, 16, 5, seed=0, shuffle_buffer=1), 2)  # buffer 1: file order
    assert got.dtype == np.float32 and got.min() >= -1 and got.max() <= 1
    np.testing.assert_allclose(got, ref.astype(np.float32) / 127.5 - 1, atol=1e-6)
    back = data_lib.from_network(got).numpy()
    np.testing.assert_array_equal(back, ref)


def test_stored_lower_resolution_used_else_resized(synth, tmp_path):
    files = data_lib.resolve_files(synth)
    info = data_lib.inspect_files(files)
    assert info["target"] == 16 and info["keys"] == {16: "image", 8: "image_8", 4: "image_4"}
    stored8 = np.concatenate(list(examples_io.iterate_images(synth, "train", key=schema.image_key(8, 16))))
    got8 = _take(data_lib.train_dataset(files, 8, 10, shuffle_buffer=1), 1)
    np.testing.assert_allclose(got8, stored8 / 127.5 - 1, atol=1e-6)
    # no image_8 stored: area-resize of the 16x16 image == 2x2 mean
    plain = write_synthetic_examples(str(tmp_path / "plain"), n_train=4, n_eval=1, resolution=16)
    files = data_lib.resolve_files(plain)
    full = np.concatenate(list(examples_io.iterate_images(plain, "train"))).astype(np.float32) / 127.5 - 1
    expect = full.reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(_take(data_lib.train_dataset(files, 8, 4, shuffle_buffer=1), 1), expect, atol=1e-5)
    with pytest.raises(ValueError, match="above the data's stored resolution 16"):
        data_lib.train_dataset(files, 32, 4)


def test_stream_is_deterministic_and_resumable_at_any_position(synth):
    files = data_lib.resolve_files(synth)
    a = _take(data_lib.train_dataset(files, 4, 3, seed=5, shuffle_buffer=8), 12)     # 36 images, ~3.6 epochs
    b = _take(data_lib.train_dataset(files, 4, 3, seed=5, shuffle_buffer=8), 12)
    np.testing.assert_array_equal(a, b)
    c = _take(data_lib.train_dataset(files, 4, 3, seed=6, shuffle_buffer=8), 12)
    assert not np.array_equal(a, c)
    # every epoch is a permutation of the 10 images, and consecutive epochs differ in order
    e0, e1 = a[:10], a[10:20]
    key = lambda x: sorted(map(bytes, x.round(4)))  # noqa: E731
    assert key(e0) == key(e1) and not np.array_equal(e0, e1)
    for pos in (3, 9, 21):   # resume in the first epoch, at its end, two epochs in
        r = _take(data_lib.train_dataset(files, 4, 3, seed=5, shuffle_buffer=8, position=pos), 4)
        np.testing.assert_array_equal(r, a[pos:pos + 12])


def test_errors_name_the_problem(tmp_path, synth):
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        data_lib.resolve_files(str(tmp_path / "nothing" / "*.gz"))
    bad = str(tmp_path / "bad")
    import tensorflow as tf
    ex = tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}))
    examples_io.write_examples(os.path.join(bad, "Split-train", "d.gz"), [ex])
    with pytest.raises(ValueError, match=r"d.gz: record has no 'image' feature"):
        data_lib.inspect_files(data_lib.resolve_files(bad))
    # TFX-style pattern input
    assert data_lib.resolve_files([os.path.join(synth, "Split-train", "*")]) == data_lib.resolve_files(synth)
