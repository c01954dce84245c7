"""The Examples reader/writer shared by training and metrics: pixel-exact round trip."""
import numpy as np

from facegan import examples_io, schema


def test_synthetic_round_trip(tmp_path, rng):
    uri = str(tmp_path / "examples")
    img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    examples_io.write_examples(f"{uri}/Split-train/part-0.gz", [examples_io.make_example(img, source="a.png")])
    (batch,) = list(examples_io.iterate_images(uri, "train", batch_size=4))
    np.testing.assert_array_equal(batch[0], img)


def test_synthetic_artifact_has_both_splits_and_extra_resolutions(tmp_path):
    uri = examples_io.write_synthetic_examples(str(tmp_path / "ex"), n_train=5, n_eval=3,
                                               resolution=16, extra_resolutions=(4, 8))
    train = np.concatenate(list(examples_io.iterate_images(uri, "train")))
    ev = np.concatenate(list(examples_io.iterate_images(uri, "eval")))
    small = np.concatenate(list(examples_io.iterate_images(uri, "eval", key=schema.image_key(4, 16))))
    assert train.shape == (5, 16, 16, 3) and ev.shape == (3, 16, 16, 3) and small.shape == (3, 4, 4, 3)


def test_missing_split_names_directory(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="Split-eval"):
        examples_io.split_files(str(tmp_path), "eval")
