"""Metrics during training (trainer/periodic_eval.py, issue 14 §2).

One short run on synthetic Examples (64 train, 64 eval images at 32x32) with an evaluation every
16 images (SWD, MS-SSIM on 32 pairs, the memorization check on 4 samples, `random_tiny`
features): metrics.jsonl lines, TensorBoard scalars read back with TensorBoard's own reader,
best-checkpoint selection recomputed from the jsonl values, resume (records appended, best
tracking restored, records newer than the checkpoint dropped), and the export of the last vs the
best state scored again through the evaluator's own path (SavedModel -> metrics.evaluate), which
must reproduce the training-time numbers: the same protocol.
"""
import contextlib
import io
import json
import os
import re
import textwrap

import numpy as np
import pytest

from facegan import examples_io
from facegan.trainer.config import ConfigError, get_preset
from tests.testlib.train import replica_progan, run_replica_script
from tests.testlib.examples import write_synthetic_examples

EVERY = 16
OVERRIDES = {"optim.batch_size": 8, "network.filters": 8, "network.z_dim": 16,
             "run.checkpoint_every": 4, "run.log_every": 2, "run.image_every": 100,
             "run.shuffle_buffer": 64, "tricks.ema_decay": 0.9,
             "eval.every_images": EVERY, "eval.metrics": "swd,ms_ssim", "eval.num_images": 32,
             "eval.batch_size": 16, "eval.memorization": 4, "eval.extractor": "random_tiny",
             "eval.best_metric": "swd"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=64, n_eval=64, resolution=32)


def _cfg(**extra):
    return get_preset("smoke", dict(OVERRIDES, **extra))


def _train(data, run_dir, steps, progress=False, **extra):
    from facegan.trainer import train_lib
    return train_lib.train(_cfg(**extra), data, run_dir, steps=steps, progress=progress)


def _records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _evaluator_scores(export_dir, data):
    """The evaluator's path: the exported SavedModel's `sample` stream vs the eval split."""
    import facegan.metrics as M
    from facegan.generator import load_generator
    gen = load_generator(export_dir)
    real = np.concatenate(list(examples_io.iterate_images(data, "eval", include_mirrored=False)))
    res = M.evaluate(["swd", "ms_ssim"], lambda n: gen.batches(n, 16, 0), real, num_images=32,
                     progress=False, seed=0)
    return res["swd32"]["avg"], res["ms_ssim32_pairs"]["generated"]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """Train 6 steps (evaluations at steps 2, 4, 6), then resume to 8 (one more, also scoring the
    raw generator, with the progress line captured)."""
    from facegan.trainer import train_lib
    run_dir = str(tmp_path_factory.mktemp("run"))
    first = _train(data, run_dir, 6)
    n_first = len(_records(run_dir))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        second = _train(data, run_dir, 8, progress=True, **{"eval.also_raw": True})
    last_export = train_lib.export(second, os.path.join(run_dir, "export_last"))
    return run_dir, first, second, n_first, last_export, err.getvalue()


def test_records_every_n_images_and_resume_appends(run):
    run_dir, first, second, n_first, _, _ = run
    recs = _records(run_dir)
    assert n_first == 3
    assert [r["step"] for r in recs] == [2, 4, 6, 8]
    assert [r["images_shown"] for r in recs] == [16, 32, 48, 64]
    for r in recs:
        assert r["weights"] == "ema" and r["resolution"] == 32 and r["real_split"] == "eval"
        assert set(r["headline"]) == {"swd", "ms_ssim", "memorization"}
        assert r["headline"]["swd"] == r["scalars"]["swd32/avg"] > 0
        assert 0 < r["headline"]["ms_ssim"] <= 1 and 0 <= r["headline"]["memorization"] <= 1
        assert r["protocols"]["swd32"]["num_generated"] == 32
        assert r["protocols"]["ms_ssim32_pairs"]["num_real"] == 64
        assert 0 < r["eval_fraction"] < 1 and r["seconds"] > 0
    # the generator changes between evaluations, so the numbers do
    assert len({r["headline"]["swd"] for r in recs}) == 4
    # SWD's real side is computed once per run (process): held in memory after the first
    # evaluation, recomputed by the resumed run's first one
    assert [r["cache"]["swd"] for r in recs] == ["miss (held in memory)", "hit (memory)", "hit (memory)",
                                                 "miss (held in memory)"]
    assert [r["cache"]["ms_ssim"] for r in recs] == ["miss", "hit", "hit", "hit"]
    assert first.selected == second.selected == "last" and second.steps == 8
    # the raw generator is scored too while the EMA warms up (by default: 0.9 ** 6 steps = 53% of
    # its start still in it, > 1%), and always with eval.also_raw; it is not the EMA
    for r in recs:
        assert r["ema"] == {"weights": "ema", "mode": "decay", "ema_decay": 0.9, "warming_up": True,
                            "newest_block_images": r["images_shown"]}
        assert set(r["raw_headline"]) == set(r["headline"])
    assert recs[3]["raw_headline"]["swd"] != recs[3]["headline"]["swd"]


def test_progress_line_reports_eval_share(run):
    """The final progress line names the evaluation's share of wall time, as the record has it."""
    *_, err = run
    lines = [ln for ln in err.splitlines() if ln.startswith("train smoke step 8/8")]
    share = int(re.search(r"eval (\d+)% of time", lines[-1]).group(1))
    assert share == pytest.approx(100 * _records(run[0])[-1]["eval_fraction"], abs=2)


def test_best_checkpoint_matches_jsonl(run):
    import tensorflow as tf
    run_dir, _, second, _, _, _ = run
    recs = _records(run_dir)
    best, flags = None, []
    for r in recs:          # lower SWD is better (the registry's direction), recomputed here
        flags.append(best is None or r["headline"]["swd"] < best["headline"]["swd"])
        if flags[-1]:
            best = r
    assert [r["best"] for r in recs] == flags      # best tracking survived the resume
    assert tf.train.latest_checkpoint(os.path.join(run_dir, "best")).endswith(f"best-{best['step']}")
    with open(os.path.join(run_dir, "best", "best.json")) as f:
        assert json.load(f)["step"] == best["step"]
    assert second.eval_best["step"] == best["step"]


def test_tensorboard_scalars(run):
    from tensorboard.backend.event_processing import event_accumulator
    run_dir, *_ = run
    ea = event_accumulator.EventAccumulator(os.path.join(run_dir, "logs"), size_guidance={"tensors": 0})
    ea.Reload()
    recs = _records(run_dir)

    def series(tag):
        import tensorflow as tf
        return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in ea.Tensors(tag)}

    for name in ("swd", "ms_ssim", "memorization"):
        got = series(f"eval/{name}")
        assert sorted(got) == [2, 4, 6, 8]
        for r in recs:
            assert got[r["step"]] == pytest.approx(r["headline"][name], rel=1e-6)
    level16 = series("eval_detail/swd32/per_level/16")
    assert level16[8] == pytest.approx(recs[-1]["scalars"]["swd32/per_level/16"], rel=1e-6)
    frac = series("perf/eval_fraction")
    assert sorted(frac) == [2, 4, 6, 8] and all(0 < v < 1 for v in frac.values())


def test_export_last_is_scored_like_the_evaluator(run, data):
    """The record at the last step == the evaluator's numbers on the exported generator."""
    run_dir, _, _, _, last_export, _ = run
    swd, ms_ssim = _evaluator_scores(last_export, data)
    last = _records(run_dir)[-1]
    assert swd == pytest.approx(last["headline"]["swd"], rel=1e-3)
    assert ms_ssim == pytest.approx(last["headline"]["ms_ssim"], abs=1e-3)


def test_export_best_after_a_kill(run, data):
    """A later, torn record (killed mid-write) and one past the checkpoint are dropped on resume;
    export=best then restores the best step's state, scored again through the SavedModel."""
    from facegan.generator import load_generator
    from facegan.trainer import train_lib
    run_dir, *_ = run
    recs = _records(run_dir)
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(dict(recs[-1], step=12, images_shown=96)) + "\n" + '{"step": 1')
    res = _train(data, run_dir, 8, **{"eval.export": "best"})
    assert _records(run_dir) == recs
    best = min(recs, key=lambda r: r["headline"]["swd"])
    assert res.selected == "best" and res.steps == best["step"] and res.images_shown == best["images_shown"]
    out = train_lib.export(res, os.path.join(run_dir, "export_best"))
    meta = load_generator(out).metadata
    assert meta["selected_checkpoint"] == "best" and meta["steps"] == best["step"]
    swd, _ = _evaluator_scores(out, data)
    assert swd == pytest.approx(best["headline"]["swd"], rel=1e-3)


def test_eval_config_validation():
    assert get_preset("smoke").eval.every_images == 0          # off in smoke presets
    assert get_preset("dcgan").eval.every_images > 0
    with pytest.raises(ConfigError, match="eval.best_metric 'ms_ssim' has no better direction"):
        _cfg(**{"eval.best_metric": "ms_ssim"})
    with pytest.raises(ConfigError, match="eval.metrics: unknown metric 'sdw'"):
        _cfg(**{"eval.metrics": "sdw"})
    with pytest.raises(ConfigError, match="eval.best_metric 'fid' is not among eval.metrics"):
        _cfg(**{"eval.best_metric": "fid"})
    with pytest.raises(ConfigError, match="eval.export 'first'"):
        _cfg(**{"eval.export": "first"})
    with pytest.raises(ConfigError, match="eval.export 'best' needs eval.best_metric"):
        _cfg(**{"eval.export": "best", "eval.best_metric": ""})


def test_progressive_stage_is_scored_upsampled_to_the_target(tmp_path):
    """A progressive run evaluated while still at its 4x4 stage: SWD needs 7x7 neighbourhoods, so
    the stage is scored as it is exported, upsampled (nearest) to the target resolution, against
    reals at the target; the record names both resolutions."""
    from facegan.trainer import periodic_eval, train_lib
    data = write_synthetic_examples(str(tmp_path / "examples"), n_train=32, n_eval=32,
                                                resolution=16)
    cfg = get_preset("smoke_progan", {"eval.every_images": 16, "eval.metrics": "swd",
                                      "eval.num_images": 16, "eval.batch_size": 16,
                                      "eval.memorization": 0, "eval.extractor": "random_tiny",
                                      "run.checkpoint_every": 100, "run.image_every": 100})
    run_dir = str(tmp_path / "run")
    train_lib.train(cfg, data, run_dir, steps=2, progress=False)     # 32 images: still the 4x4 stage
    records = _records(run_dir)
    assert records and all(r["resolution"] == 4 and r["scored_resolution"] == 16 for r in records)
    assert all(np.isfinite(r["headline"]["swd"]) for r in records)
    small = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    up = periodic_eval.upsample_nearest(small, 4)
    assert up.shape == (2, 8, 8, 3) and (up[:, 4:8, 0:4] == small[:, 1:2, 0:1]).all()
