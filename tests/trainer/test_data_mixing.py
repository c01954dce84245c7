"""Issue 11, data side: synthetic sets mixed into training at a ratio, balancing by attribute, and
synthetic Examples kept out of the evaluator's real side (trainer/data.py, facegan/examples_io.py).

Tolerances come from the binomial: over n draws of probability p the count's standard deviation
is sqrt(n p (1 - p)); the tests allow 4 of them (a false failure rate of ~6e-5 per check).
"""
import math
import os

import numpy as np
import pytest

from facegan import examples_io, schema
from facegan.trainer import config as C
from tests.testlib.examples import write_synthetic_examples

RES = 8


def _write(uri, split, rows, provenance=None, seed=0):
    """Examples of distinct random images; rows = [{attribute: value}] (one per record)."""
    rng = np.random.default_rng(seed)
    exs = []
    for k, attrs in enumerate(rows):
        attrs = dict(attrs)
        if provenance:
            attrs["provenance"] = provenance
        img = rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)
        exs.append(examples_io.make_example(img, source=f"{split}/{k}.png", sha256=f"{seed}{split}{k:058d}",
                                            attrs=attrs or None))
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, split), "data-00000-of-00001.gz"), exs)
    return uri


def _source(uri, names):
    from facegan.trainer import data
    files = data.resolve_files(uri)
    return {"files": files, "info": data.inspect_files(files),
            "labels": data.scan_attributes(files, names) if names else None}


def _labels(ds, batches):
    return np.concatenate([y.numpy() for _, y in ds.take(batches)])


def _tolerance(n, p):
    return 4 * math.sqrt(n * p * (1 - p))


# -- mixing a synthetic set at a ratio -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A real set (attr/src = 0, 40 records) and a synthetic one (attr/src = 1, 24 records)."""
    root = tmp_path_factory.mktemp("mix")
    real = _write(str(root / "real"), "train", [{"src": 0}] * 40, seed=1)
    synth = _write(str(root / "synth"), "train", [{"src": 1}] * 24, provenance="synthetic", seed=2)
    return _source(real, ["src"]), _source(synth, ["src"])


@pytest.mark.parametrize("ratio", [0.25, 0.6])
def test_mixing_ratio_is_respected_in_the_input_stream(sources, ratio):
    from facegan.trainer import data
    real, synth = sources
    n_batches, batch = 50, 32
    ds = data.mixed_dataset(real, synth, ratio, RES, batch, seed=3, shuffle_buffer=16)
    src = _labels(ds, n_batches)[:, 0]
    n = n_batches * batch
    assert abs(src.sum() - ratio * n) <= _tolerance(n, ratio), (src.sum(), ratio * n)
    # the draws are the documented pure function of (seed, index): the stream's synthetic count is
    # exactly the choice counter's
    assert src.sum() == data.choice_counts([1 - ratio, ratio], 3, data.TAG_SYNTHETIC, n)[1]
    # and per batch the count is binomial, not fixed (independent draws per example)
    per_batch = src.reshape(n_batches, batch).sum(1)
    assert per_batch.std() > 0


def test_mixed_stream_is_deterministic_and_resumes_exactly(sources):
    from facegan.trainer import data
    real, synth = sources

    def images(seed, position, batches):
        ds = data.mixed_dataset(real, synth, 0.3, RES, 8, seed=seed, shuffle_buffer=16, position=position)
        return np.concatenate([x.numpy() for x, _ in ds.take(batches)])

    straight = images(5, 0, 20)                       # 160 examples: several epochs of each source
    np.testing.assert_array_equal(images(5, 0, 20), straight)
    assert not np.array_equal(images(6, 0, 20), straight)
    for position in (8, 72, 104):                     # mid-epoch of the real and synthetic sub-streams
        np.testing.assert_array_equal(images(5, position, 20 - position // 8), straight[position:])


def test_choice_counts_match_the_stream_across_blocks():
    """The resume counter agrees with the choice stream past a CHOICE_BLOCK boundary."""
    from facegan.trainer import data
    n = data.CHOICE_BLOCK + 37
    stream = np.fromiter(data.choice_stream([0.5, 0.2, 0.3], 9, 4).take(n).as_numpy_iterator(), np.int64)
    np.testing.assert_array_equal(data.choice_counts([0.5, 0.2, 0.3], 9, 4, n), np.bincount(stream, minlength=3))
    tail = np.fromiter(data.choice_stream([0.5, 0.2, 0.3], 9, 4, position=n - 50).take(50).as_numpy_iterator(),
                       np.int64)
    np.testing.assert_array_equal(tail, stream[-50:])


@pytest.mark.parametrize("overrides, needle", [
    ({"data.synthetic_ratio": 0.3}, "data.synthetic and data.synthetic_ratio go together"),
    ({"data.synthetic": "/x"}, "data.synthetic and data.synthetic_ratio go together"),
    ({"data.synthetic": "/x", "data.synthetic_ratio": 1.0}, "data.synthetic_ratio must be in [0, 1)"),
    ({"condition.balance": True}, "condition.balance needs condition.attributes"),
])
def test_bad_data_configs_are_refused_naming_the_field(overrides, needle):
    with pytest.raises(C.ConfigError, match=needle.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        C.get_preset("smoke", overrides)


def test_training_draws_from_the_synthetic_set(tmp_path):
    """The Trainer's own stream (data.synthetic + data.synthetic_ratio) mixes at the ratio."""
    from facegan.trainer import train_lib
    real = write_blobs(tmp_path / "real", 0)
    synth = write_blobs(tmp_path / "synth", 255)
    cfg = C.get_preset("smoke", {"network.resolution": 8, "optim.batch_size": 16, "network.filters": 8,
                                 "network.z_dim": 8, "run.shuffle_buffer": 16,
                                 "data.synthetic": synth, "data.synthetic_ratio": 0.5})
    t = train_lib.Trainer(cfg, real, str(tmp_path / "run"), steps=2, progress=False)
    x = np.concatenate([b.numpy() for b in t._dataset(8, 16).take(20)])
    white = (x.mean(axis=(1, 2, 3)) > 0).sum()
    assert abs(white - 160) <= _tolerance(320, 0.5)
    result = t.run()
    assert result.steps == 2 and np.isfinite(result.metrics["loss/d"])


def write_blobs(path, value):
    """An artifact of 16 constant images (value 0: black, 255: white) at RES."""
    uri = str(path)
    exs = [examples_io.make_example(np.full((RES, RES, 3), value, np.uint8), source=f"{value}/{k}.png",
                                    sha256=f"{value}{k:060d}") for k in range(16)]
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, "train"), "data-00000-of-00001.gz"), exs)
    return uri


# -- balancing by attribute --------------------------------------------------------------------------
def _unbalanced_rows(n=200):
    """male = 1 for i % 5 == 0 (20%), smiling = 1 unless (i // 5) % 5 == 0 (80%): independent."""
    return [{"male": int(i % 5 == 0), "smiling": int((i // 5) % 5 != 0)} for i in range(n)]


def test_balance_weights_rake_the_marginals_to_one_half():
    from facegan.trainer import data
    # independent attributes: raking keeps independence, so every cell of the result is 1/4
    w = data.balance_weights({0: 32, 1: 8, 2: 128, 3: 32}, 2)
    np.testing.assert_allclose([w[c] for c in range(4)], [0.25] * 4, atol=1e-9)
    # correlated (and a third attribute): marginals reach 0.5, empty cells stay empty
    w = data.balance_weights({0: 50, 3: 30, 5: 10, 6: 5, 7: 5}, 3)
    assert 4 not in w and 1 not in w
    for a in range(3):
        assert abs(sum(v for c, v in w.items() if c >> a & 1) - 0.5) < 1e-6
    # a constant attribute cannot move: its rate stays 1
    w = data.balance_weights({2: 10, 3: 30}, 2)
    assert abs(w[3] - 0.5) < 1e-9 and abs(w[2] - 0.5) < 1e-9


def test_balanced_stream_moves_the_positive_rates_to_one_half(tmp_path):
    from facegan.trainer import data
    uri = _write(str(tmp_path / "ex"), "train", _unbalanced_rows())
    src = _source(uri, ["male", "smiling"])
    assert src["labels"]["positive_rate"] == {"male": 0.2, "smiling": 0.8}
    n_batches, batch = 50, 32
    n = n_batches * batch
    plain = _labels(data.mixed_dataset(src, None, 0.0, RES, batch, seed=1, shuffle_buffer=64), n_batches)
    balanced = _labels(data.mixed_dataset(src, None, 0.0, RES, batch, seed=1, shuffle_buffer=64, balance=True),
                       n_batches)
    for a, rate in enumerate((0.2, 0.8)):
        assert abs(plain[:, a].sum() - rate * n) <= _tolerance(n, rate)
        assert abs(balanced[:, a].sum() - 0.5 * n) <= _tolerance(n, 0.5), (a, balanced[:, a].mean())
    # the balanced stream is still a stream of the data's records: every cell appears
    cells = set((balanced[:, 0] * 1 + balanced[:, 1] * 2).astype(int))
    assert cells == {0, 1, 2, 3}


def test_balanced_stream_resumes_exactly(tmp_path):
    from facegan.trainer import data
    uri = _write(str(tmp_path / "ex"), "train", _unbalanced_rows(60))
    src = _source(uri, ["male", "smiling"])

    def images(position, batches):
        ds = data.mixed_dataset(src, None, 0.0, RES, 8, seed=2, shuffle_buffer=16, position=position, balance=True)
        return np.concatenate([x.numpy() for x, _ in ds.take(batches)])

    straight = images(0, 12)
    np.testing.assert_array_equal(images(40, 7), straight[40:])


# -- the evaluator's real side ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_eval(tmp_path_factory):
    """An artifact whose eval split holds 5 real images (black) and 3 synthetic ones (white)."""
    uri = str(tmp_path_factory.mktemp("evalmix") / "ex")
    exs = [examples_io.make_example(np.zeros((RES, RES, 3), np.uint8), source=f"r{k}", sha256=f"r{k:062d}")
           for k in range(5)]
    exs += [examples_io.make_example(np.full((RES, RES, 3), 255, np.uint8), source=f"s{k}", sha256=f"s{k:062d}",
                                     attrs={"provenance": schema.SYNTHETIC}) for k in range(3)]
    for split in ("train", "eval"):
        examples_io.write_examples(os.path.join(examples_io.split_dir(uri, split), "data-00000-of-00001.gz"), exs)
    return uri


def test_synthetic_examples_never_reach_the_real_side(mixed_eval):
    real = np.concatenate(list(examples_io.iterate_images(mixed_eval, "eval", include_mirrored=False)))
    assert len(real) == 5 and real.max() == 0
    everything = np.concatenate(list(examples_io.iterate_images(mixed_eval, "eval", include_synthetic=True)))
    assert len(everything) == 8
    assert examples_io.count_synthetic(examples_io.split_files(mixed_eval, "eval")) == 3
    # metrics during training read the same real side
    from facegan.trainer import data, periodic_eval
    files = examples_io.split_files(mixed_eval, "eval")
    imgs = periodic_eval.read_images(files, RES, 100, data.inspect_files(files))
    assert len(imgs) == 5 and imgs.max() == 0


def test_the_attribute_classifier_learns_real_faces_only(tmp_path):
    from facegan.metrics.attributes import labelled_dataset
    uri = _write(str(tmp_path / "real"), "train", [{"male": 1}] * 6, seed=1)
    exs = [examples_io.make_example(np.full((RES, RES, 3), 255, np.uint8), source=f"s{k}", sha256=f"s{k:062d}",
                                    attrs={"provenance": schema.SYNTHETIC, "male": 0}) for k in range(4)]
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, "train"), "data-00001-of-00002.gz"), exs)
    ds, _ = labelled_dataset(uri, "train", ["male"], 8)
    ys = np.array([y for _, y in ds.as_numpy_iterator()])
    assert ys.shape == (6, 1) and ys.min() == 1.0


def test_cached_real_statistics_are_keyed_by_the_real_only_rule(mixed_eval):
    """A cached real side from before the rule (same bytes) is never reused."""
    import hashlib

    from facegan.metrics.cache import examples_split_key
    h = hashlib.sha256(b"eval|image|mirrored=False")
    with open(examples_io.split_files(mixed_eval, "eval")[0], "rb") as f:
        h.update(b"data-00000-of-00001.gz\0" + f.read())
    assert examples_split_key(mixed_eval, "eval", include_mirrored=False) != "examples:" + h.hexdigest()


def test_evaluator_scores_equal_without_the_synthetic_examples_and_reports_them(tmp_path):
    """The evaluator on an eval split with 8 synthetic images added gives the numbers it gives on
    the real images alone, and reports the 8 it left out."""
    import json
    import shutil

    from facegan.metrics import evaluation as EL
    from tests.testlib.evaluator import export_test_generator
    real = write_synthetic_examples(str(tmp_path / "real"), n_train=8, n_eval=24, resolution=32)
    mixed = str(tmp_path / "mixed")
    shutil.copytree(real, mixed)
    exs = [examples_io.make_example(np.full((32, 32, 3), 255, np.uint8), source=f"s{k}", sha256=f"s{k:062d}",
                                    attrs={"provenance": schema.SYNTHETIC}) for k in range(8)]
    examples_io.write_examples(os.path.join(examples_io.split_dir(mixed, "eval"), "data-synthetic.gz"), exs)
    gen = export_test_generator("blob", str(tmp_path / "gen"), resolution=32, steps=1)
    kw = dict(metrics=["swd"], num_images=24, extractor="random_tiny", batch_size=24, memorization=False,
              log=lambda *_: None)
    a = EL.evaluate_model(gen, real, str(tmp_path / "out_real"), **kw)
    b = EL.evaluate_model(gen, mixed, str(tmp_path / "out_mixed"), **kw)
    assert a.results["swd24"]["avg"] == b.results["swd24"]["avg"]
    report = json.loads((tmp_path / "out_mixed" / "metrics.json").read_text())
    assert report["protocol"]["real_excluded_synthetic"] == 8
    assert json.loads((tmp_path / "out_real" / "metrics.json").read_text())["protocol"]["real_excluded_synthetic"] == 0
