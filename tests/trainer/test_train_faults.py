"""Training faults (issue 21 items 2 and 4): a corrupt newest checkpoint and a full disk.

One tiny smoke run (6 steps, a checkpoint every 2, the last 3 kept) on synthetic Examples is
copied per case. Corrupt the newest checkpoint three ways (truncated data file, truncated index,
flipped bits): the resume falls back to the newest one that loads with one warning naming the bad
one and the steps lost, and trains the lost steps again to the same weights a straight run has
(resume is exact); none loading is one error line. A full disk (ENOSPC injected into a
checkpoint save, then into the export): one line naming the device and where the run resumes,
exit 1, and the same command then finishes the run.
"""
import json
import logging
import os
import shutil

import numpy as np
import pytest

from facegan.trainer.config import get_preset
from tests.testlib.train import TINY, checkpoint_weights
from tests.testlib.examples import write_synthetic_examples

STEPS = 6
OVERRIDES = dict(TINY, **{"run.keep_checkpoints": 3, "run.image_every": 100})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=32, n_eval=4, resolution=32)


def _cfg():
    return get_preset("smoke", OVERRIDES)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The run dir of a straight 6-step run: ckpt-2, ckpt-4, ckpt-6."""
    from facegan.trainer import train_lib
    run_dir = str(tmp_path_factory.mktemp("straight") / "run")
    train_lib.train(_cfg(), data, run_dir, steps=STEPS, progress=False)
    return run_dir


def _files(run_dir, step):
    d = os.path.join(run_dir, "checkpoints")
    data = [os.path.join(d, n) for n in os.listdir(d) if n.startswith(f"ckpt-{step}.data-")]
    return os.path.join(d, f"ckpt-{step}.index"), max(data, key=os.path.getsize)


def _corrupt(path, kind):
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    if kind == "flipped_bits":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    with open(path, "wb") as f:
        f.write(bytes(raw))


KINDS = ["truncated_data", "truncated_index", "flipped_bits"]


def _corrupt_newest(run_dir, kind):
    index, datafile = _files(run_dir, STEPS)
    _corrupt(index if kind == "truncated_index" else datafile,
             "flipped_bits" if kind == "flipped_bits" else "truncate")


@pytest.mark.parametrize("kind", KINDS)
def test_each_corruption_is_detected_and_skipped_with_one_warning(straight, tmp_path, caplog, kind):
    """Each kind on the smoke run's newest checkpoint: detected, the next older one chosen, one
    warning naming the bad one and the steps lost, the bad files set aside."""
    from facegan.trainer import train_lib
    run_dir = str(tmp_path / "run")
    shutil.copytree(straight, run_dir)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    assert train_lib.checkpoint_problem(os.path.join(ckpt_dir, f"ckpt-{STEPS}")) is None
    _corrupt_newest(run_dir, kind)
    assert train_lib.checkpoint_problem(os.path.join(ckpt_dir, f"ckpt-{STEPS}")) is not None
    with caplog.at_level(logging.WARNING):
        good = train_lib.newest_loadable_checkpoint(ckpt_dir)
    assert good == os.path.join(ckpt_dir, "ckpt-4")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"checkpoint ckpt-{STEPS} (") and \
        "resuming from ckpt-4 (step 4), 2 steps lost" in warnings[0]
    import tensorflow as tf
    assert tf.train.latest_checkpoint(ckpt_dir) == good          # the manager continues from it
    assert any(n.startswith(f"corrupt-ckpt-{STEPS}.") for n in os.listdir(ckpt_dir))
    assert not any(n.startswith(f"ckpt-{STEPS}.") for n in os.listdir(ckpt_dir))


def test_corrupt_newest_checkpoint_resumes_from_the_previous_one(straight, data, tmp_path, caplog):
    """Through the Trainer (flipped bits: a checksum failure): it resumes at step 4, trains the
    lost steps again to exactly the straight run's weights, and a later start warns no more."""
    from facegan.trainer import train_lib
    run_dir = str(tmp_path / "run")
    shutil.copytree(straight, run_dir)
    _corrupt_newest(run_dir, "flipped_bits")
    with caplog.at_level(logging.WARNING):
        trainer = train_lib.Trainer(_cfg(), data, run_dir, steps=STEPS, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "2 steps lost" in warnings[0], warnings
    assert trainer.resumed_from.endswith("ckpt-4") and trainer.step == 4
    assert trainer.run().steps == STEPS
    fresh = checkpoint_weights(os.path.join(run_dir, "checkpoints", f"ckpt-{STEPS}"), "generator/")
    ref = checkpoint_weights(os.path.join(straight, "checkpoints", f"ckpt-{STEPS}"), "generator/")
    assert fresh.keys() == ref.keys() and fresh
    for k in ref:
        np.testing.assert_array_equal(fresh[k], ref[k])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = train_lib.Trainer(_cfg(), data, run_dir, steps=STEPS, progress=False)
    assert again.step == STEPS and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_checkpoint_loads_is_one_line(straight, data, tmp_path, capsys):
    from facegan import cli
    run_dir = str(tmp_path / "run")
    shutil.copytree(straight, run_dir)
    for step in (2, 4, 6):
        _corrupt(_files(run_dir, step)[1], "truncate")
    args = ["train", "--preset", "smoke", "--data", data, "--out", run_dir, "--steps", "8", "--no-export"]
    for k, v in OVERRIDES.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert cli.main(args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines()
           if ln.startswith("facegan train:") and not ln.startswith("facegan train: run folder ")]
    assert len(err) == 1 and "no checkpoint in" in err[0]
    assert all(f"ckpt-{s} (" in err[0] for s in (2, 4, 6))
    assert sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.startswith("ckpt-")) == \
        sorted(n for n in os.listdir(os.path.join(straight, "checkpoints")) if n.startswith("ckpt-"))


def _train_args(data, out, steps=STEPS, export=False):
    args = ["train", "--preset", "smoke", "--data", data, "--out", out, "--steps", str(steps)]
    if not export:
        args.append("--no-export")
    for k, v in OVERRIDES.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


def test_full_disk_during_a_checkpoint_save_stays_resumable(data, tmp_path, capsys, monkeypatch):
    import tensorflow as tf
    from facegan import cli, diskspace
    out = str(tmp_path / "run")
    real_save = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **k):
        if checkpoint_number == 4 and "checkpoints" in self.directory:
            # what TF leaves when the disk fills during the shard write (seen on a 400 KB tmpfs)
            os.makedirs(os.path.join(self.directory, "ckpt-4_temp"), exist_ok=True)
            with open(os.path.join(self.directory, "ckpt-4_temp", "part-00000-of-00001.data"), "wb") as f:
                f.write(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{self.directory}/ckpt-4_temp/part-00000-of-00001.data-00000-of-00001."
                            f"tempstate1; No space left on device")
        return real_save(self, checkpoint_number=checkpoint_number, **k)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    assert cli.main(_train_args(data, out)) == 1
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("facegan train:")
             and not ln.startswith("facegan train: run folder ")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    ckpt2 = os.path.join(out, "checkpoints", "ckpt-2")
    assert lines[0] == (f"facegan train: no space left on {diskspace.device_of(out)} while writing the "
                        f"run folder {out}; the run is resumable: the same command continues from "
                        f"{ckpt2} (step 2) once there is space")
    assert not os.path.exists(os.path.join(out, "checkpoints", "ckpt-4_temp"))   # its space freed
    monkeypatch.undo()
    assert cli.main(_train_args(data, out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == STEPS and summary["checkpoint"].endswith(f"ckpt-{STEPS}")


def test_full_disk_during_the_export(data, tmp_path, capsys, monkeypatch):
    import tensorflow as tf
    from facegan import cli
    out = str(tmp_path / "run")
    real = tf.saved_model.save

    def save(obj, export_dir, *a, **k):
        os.makedirs(os.path.join(export_dir, "variables"), exist_ok=True)
        with open(os.path.join(export_dir, "variables", "variables.data-00000-of-00001"), "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tf.saved_model, "save", save)
    assert cli.main(_train_args(data, out, steps=2, export=True)) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("facegan train:")
             and not ln.startswith("facegan train: run folder ")]
    assert len(lines) == 1 and f"while writing the export {os.path.join(out, 'export')}" in lines[0]
    assert "continues from" in lines[0] and "ckpt-2 (step 2)" in lines[0]
    assert not os.path.exists(os.path.join(out, "export"))        # the partial export is gone
    monkeypatch.setattr(tf.saved_model, "save", real)
    assert cli.main(_train_args(data, out, steps=2, export=True)) == 0
    assert os.path.exists(os.path.join(out, "export", "saved_model.pb"))


# -- metrics during training: nothing that was not asked for (issue 21 item 14) -------------------
def test_eval_computes_only_what_was_requested(data, tmp_path, monkeypatch, caplog):
    """swd, ms_ssim and face_detection need no network: no Inception download is attempted, no
    "unavailable" message, and no memorization number on random features is recorded."""
    from facegan.metrics import features
    from facegan.trainer import train_lib
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))     # no cached weights
    monkeypatch.delenv(features.WEIGHTS_ENV, raising=False)
    tried = []

    def offline(url, *a, **k):
        tried.append(url)
        raise OSError("no internet")
    monkeypatch.setattr(features, "_download", offline)
    cfg = get_preset("smoke", dict(OVERRIDES, **{
        "eval.every_images": 16, "eval.metrics": "swd,ms_ssim,face_detection", "eval.num_images": 32,
        "eval.batch_size": 16, "eval.best_metric": "swd"}))
    assert cfg.eval.memorization > 0 and cfg.eval.extractor == "inception"    # the defaults
    run_dir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO):
        train_lib.train(cfg, data, run_dir, steps=2, progress=False)
    assert tried == []
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "unavailable" in m or "skipping nothing" in m], messages
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert len(records) == 1
    r = records[0]
    assert set(r["headline"]) == {"swd", "ms_ssim", "face_detection"}
    assert not [k for k in json.dumps(r["scalars"]).split('"') if "memorization" in k]
    assert "not downloaded for this check alone" in r["skipped"]["memorization"]
    assert set(r["skipped"]) == {"memorization"}
    events = [os.path.join(dp, n) for dp, _, ns in os.walk(os.path.join(run_dir, "logs")) for n in ns]
    assert events and all(b"memorization" not in open(p, "rb").read() for p in events)
    assert any(b"eval/swd" in open(p, "rb").read() for p in events)     # the requested ones were
