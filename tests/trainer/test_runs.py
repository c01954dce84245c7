"""Run folders without TensorFlow (trainer/runs.py, trainer/cli.py's checks, `facegan export`'s
checkpoint choice): the data's stored resolution read from the records, the run identity and the
default --out, what may change within a run, which checkpoint last/best/N is, and the refusals
that must come before TensorFlow loads and leave nothing on disk (checked in a subprocess)."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facegan import examples_io, schema
from facegan.trainer import cli as train_cli
from facegan.trainer import runs
from facegan.trainer.config import ConfigError, get_preset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_examples_tf_free(uri, resolution, n=4, seed=0, summary=None):
    """An Examples artifact written with the schema's own encoder (no TensorFlow)."""
    rng = np.random.default_rng(seed)
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        exs = [examples_io.encode_example(examples_io.schema_features(
            rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8), source=f"{split}{k}",
            sha256=f"{k:064x}")) for k in range(n)]
        examples_io.write_examples(os.path.join(examples_io.split_dir(uri, split), "data-00000-of-00001.gz"), exs)
    if summary is not None:
        with open(os.path.join(uri, schema.SUMMARY_FILE), "w") as f:
            json.dump(summary, f)
    return uri


def _args(**kw):
    base = dict(preset=None, config=None, data=None, synthetic=False, resolution=None, steps=None, out=None,
                continue_with_changes=False, serving_dir=None, log_dir=None, set=[], no_export=False)
    base.update(kw)
    return argparse.Namespace(**base)


# -- data ------------------------------------------------------------------------------------------
def test_inspect_data_reads_the_stored_resolution_from_records_or_summary(tmp_path):
    ex = write_examples_tf_free(str(tmp_path / "ex24"), 24)
    info = runs.inspect_data(ex)
    assert info["resolution"] == 24 and info["paired"] is False and info["source"].endswith(".gz")
    # the Split-train folder itself and a file pattern work too
    assert runs.inspect_data(os.path.join(ex, "Split-train"))["resolution"] == 24
    assert runs.inspect_data(os.path.join(ex, "Split-train", "*.gz"))["resolution"] == 24
    # ingest_summary.json is preferred when present (it is what ingestion says it wrote)
    ex2 = write_examples_tf_free(str(tmp_path / "ex16"), 16, summary={"resolution": 16, "paired": None})
    assert runs.inspect_data(ex2)["source"].endswith(schema.SUMMARY_FILE)
    for bad, words in ((str(tmp_path / "nope"), "does not exist"), (str(tmp_path / "*.none"), "matches no files")):
        with pytest.raises(runs.Refusal, match=words):
            runs.inspect_data(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.Refusal, match="no Split-train"):
        runs.inspect_data(str(tmp_path / "empty"))
    open(os.path.join(ex, examples_io.INCOMPLETE_MARKER), "w").close()
    with pytest.raises(runs.Refusal, match="unfinished ingestion"):
        runs.inspect_data(ex)


def test_resolution_above_the_stored_one_is_refused_naming_the_flag_and_size():
    info = {"resolution": 64, "source": "ex/ingest_summary.json"}
    runs.check_resolution(64, info, kind="unconditional")
    runs.check_resolution(32, info, kind="unconditional")
    with pytest.raises(runs.Refusal) as e:
        runs.check_resolution(512, info, kind="unconditional", origin="the hdcgan preset's default")
    msg = str(e.value)
    assert "--resolution 512 (the hdcgan preset's default)" in msg and "stored resolution 64" in msg
    assert "\n" not in msg
    with pytest.raises(runs.Refusal, match="image-to-image models train at the data's stored resolution 64"):
        runs.check_resolution(32, info, kind="image_to_image")


# -- identity, default folder, what may change ------------------------------------------------------
def test_default_out_is_one_folder_per_config_and_data_and_ignores_steps():
    a = get_preset("smoke").to_dict()
    out = runs.default_out(a, "/d/ex")
    assert out.startswith(os.path.join("runs", "smoke-32px-")) and len(os.path.basename(out)) == len("smoke-32px-") + 8
    assert runs.default_out(get_preset("smoke", {"run.steps": 500}).to_dict(), "/d/ex") == out
    assert runs.default_out(a, "/d/other") != out
    assert runs.default_out(get_preset("smoke", {"network.resolution": 16}).to_dict(), "/d/ex").startswith(
        os.path.join("runs", "smoke-16px-"))
    assert runs.default_out(get_preset("smoke", {"optim.g_learning_rate": 1e-3}).to_dict(), "/d/ex") != out


def _record(tmp_path, cfg, data="/d/ex", step=None, precision=None):
    run = tmp_path / "run"
    runs.write_record(str(run), cfg.to_dict(), data, steps=cfg.run.steps, changes={}, argv=["train"])
    if step is not None:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "checkpoint").write_text(
            f'model_checkpoint_path: "ckpt-{step}"\nall_model_checkpoint_paths: "ckpt-{step}"\n')
        (run / "checkpoints" / f"ckpt-{step}.index").write_text("")
    if precision:
        resolved = cfg.override({"run.mixed_precision": precision, "run.precision_reason": "auto: test"})
        (run / "config.json").write_text(resolved.to_json())
    return str(run)


def test_same_config_resumes_more_steps_continue_other_settings_refused(tmp_path):
    cfg = get_preset("hdcgan", {"network.resolution": 32})
    run = _record(tmp_path, cfg, step=20)
    same = runs.check_folder(run, get_preset("hdcgan", {"network.resolution": 32, "run.steps": 5000}).to_dict(),
                             "/d/ex", allow_changes=False)
    assert same == {"state": "resume", "step": 20, "changes": {}}
    # another preset: refused even with --continue-with-changes, naming the architecture first
    dcgan = get_preset("dcgan", {"network.resolution": 32}).to_dict()
    for allow in (False, True):
        with pytest.raises(runs.Refusal) as e:
            runs.check_folder(run, dcgan, "/d/ex", allow_changes=allow)
        msg = str(e.value)
        assert "network.architecture hdcgan -> dcgan" in msg.split(";")[0] and "new --out" in msg
        assert "cannot change within a run" in msg and "\n" not in msg
    # an eval cadence change: refused without the flag (saying so), accepted with it
    cadence = get_preset("hdcgan", {"network.resolution": 32, "eval.every_images": 1000}).to_dict()
    with pytest.raises(runs.Refusal, match=r"eval.every_images 50000 -> 1000.*--continue-with-changes"):
        runs.check_folder(run, cadence, "/d/ex", allow_changes=False)
    ok = runs.check_folder(run, cadence, "/d/ex", allow_changes=True)
    assert ok["changes"] == {"eval.every_images": (50000, 1000)}
    # other data is a change too (continuable), and recorded as such
    with pytest.raises(runs.Refusal, match="data /d/ex -> /d/other"):
        runs.check_folder(run, cfg.to_dict(), "/d/other", allow_changes=False)
    runs.write_record(run, cadence, "/d/ex", steps=10, changes=ok["changes"], argv=["x"])
    rec = json.loads(open(os.path.join(run, runs.RUN_FILE)).read())
    assert rec["config"]["eval"]["every_images"] == 1000 and len(rec["history"]) == 2
    assert rec["history"][1]["changes"] == {"eval.every_images": [50000, 1000]}


def test_auto_precision_matches_the_policy_it_resolved_to_and_legacy_folders_compare_config_json(tmp_path):
    cfg = get_preset("dcgan", {"network.resolution": 32})          # run.mixed_precision auto
    run = _record(tmp_path, cfg, step=4, precision="float32")
    replay = cfg.override({"run.mixed_precision": "float32"}).to_dict()   # its config.json, passed back
    assert runs.check_folder(run, replay, "/d/ex", allow_changes=False)["state"] == "resume"
    with pytest.raises(runs.Refusal, match="run.mixed_precision auto -> mixed_bfloat16"):
        runs.check_folder(run, cfg.override({"run.mixed_precision": "mixed_bfloat16"}).to_dict(), "/d/ex",
                          allow_changes=True)
    os.remove(os.path.join(run, runs.RUN_FILE))     # a folder from before run.json: config.json decides
    assert runs.check_folder(run, cfg.to_dict(), "/anything", allow_changes=False)["state"] == "resume"
    with pytest.raises(runs.Refusal, match="network.architecture dcgan -> hdcgan"):
        runs.check_folder(run, get_preset("hdcgan", {"network.resolution": 32}).to_dict(), "/d/ex",
                          allow_changes=False)


def test_is_chief_follows_tf_config():
    assert runs.is_chief({})
    w = lambda i, chief=False: {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a", "b"], **({"chief": ["c"]} if chief else {})},  # noqa: E731
                                                         "task": {"type": "worker", "index": i}})}
    assert runs.is_chief(w(0)) and not runs.is_chief(w(1)) and not runs.is_chief(w(0, chief=True))


# -- --config and the flags that override it -------------------------------------------------------
def test_config_round_trip_and_flag_overrides(tmp_path):
    cfg = get_preset("progan", {"network.resolution": 32, "optim.batch_size": 8})
    resolved = cfg.override({"run.mixed_precision": "float32", "run.precision_reason": "auto: test"})
    path = tmp_path / "config.json"
    path.write_text(resolved.to_json())
    back = train_cli.resolve_config(_args(config=str(path)))
    assert back.to_dict() == json.loads(path.read_text())
    assert train_cli.resolve_config(_args(config=str(tmp_path))).to_dict() == back.to_dict()   # the run folder
    over = train_cli.resolve_config(_args(config=str(path), steps=7, resolution=16, set=["optim.batch_size=4"]))
    assert (over.run.steps, over.network.resolution, over.optim.batch_size) == (7, 16, 4)
    assert set(over.network.batch_sizes) == {"4", "8", "16"}     # the preset's table trimmed, as with --preset
    for kw, words in ((dict(config=str(path), preset="smoke"), "give one"),
                      (dict(), "--preset is required"),
                      (dict(preset="smoke", resolution=16, set=["network.resolution=32"]), "disagree"),
                      (dict(config=str(tmp_path / "none.json")), "no such file"),
                      (dict(preset="smoke", resolution=48), "--resolution 48: network.resolution must be a power of two")):
        with pytest.raises(ConfigError, match=words):
            train_cli.resolve_config(_args(**kw))
    path.write_text('{"network": {"resolutoin": 32}}')
    with pytest.raises(ConfigError, match=r"--config .*config.json: unknown config field\(s\) network.resolutoin"):
        train_cli.resolve_config(_args(config=str(path)))


# -- checkpoints for export ------------------------------------------------------------------------
def _fake_run(tmp_path, ckpts, best_step, records):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    names = "".join(f'all_model_checkpoint_paths: "ckpt-{s}"\n' for s in ckpts)
    (run / "checkpoints" / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{ckpts[-1]}"\n' + names)
    for s in ckpts:
        (run / "checkpoints" / f"ckpt-{s}.index").write_text("")
    if best_step is not None:
        (run / "best").mkdir()
        (run / "best" / "checkpoint").write_text(f'model_checkpoint_path: "best-{best_step}"\n'
                                                 f'all_model_checkpoint_paths: "best-{best_step}"\n')
        (run / "best" / f"best-{best_step}.index").write_text("")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 9')  # torn line
    cfg = get_preset("dcgan").to_dict()
    (run / "config.json").write_text(json.dumps(cfg))
    return str(run), cfg


def test_select_checkpoint_last_best_and_step(tmp_path):
    recs = [{"step": s, "images_shown": 8 * s, "resolution": 32, "headline": {"swd": v, "ms_ssim": 0.1}}
            for s, v in ((2, 5.0), (4, 3.0), (6, 4.0))]
    run, cfg = _fake_run(tmp_path, [4, 6], best_step=4, records=recs)
    last = runs.select_checkpoint(run, "last", cfg)
    assert (last["step"], last["selected"], last["record"]["headline"]["swd"]) == (6, "last", 4.0)
    assert last["path"] == os.path.join(run, "checkpoints", "ckpt-6")
    best = runs.select_checkpoint(run, "best", cfg)      # lowest SWD (the registry's direction)
    assert (best["step"], best["path"]) == (4, os.path.join(run, "best", "best-4"))
    assert runs.select_checkpoint(run, "6", cfg)["record"]["step"] == 6
    meta = runs.version_metadata(best, run)
    assert meta["checkpoint"]["step"] == 4 and meta["metrics"] == {"swd": 3.0, "ms_ssim": 0.1}
    assert meta["metrics_record"]["images_shown"] == 32
    with pytest.raises(runs.Refusal, match=r"no checkpoint of step 2 \(checkpoints at steps 4, 6"):
        runs.select_checkpoint(run, "2", cfg)
    with pytest.raises(runs.Refusal, match="expected last, best or a step"):
        runs.select_checkpoint(run, "first", cfg)
    # a later resolution's records are the only candidates (a progressive run)
    grown = recs + [{"step": 8, "resolution": 64, "headline": {"swd": 9.0}}]
    assert runs.best_record(grown, "swd", "lower")["step"] == 8


def test_best_without_evaluations_is_refused(tmp_path):
    run, cfg = _fake_run(tmp_path, [2], best_step=None, records=[])
    with pytest.raises(runs.Refusal, match="has no evaluation"):
        runs.select_checkpoint(run, "best", cfg)
    meta = runs.version_metadata(runs.select_checkpoint(run, "last", cfg), run)
    assert meta["metrics"] == {} and meta["metrics_record"] is None


def test_serving_base_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    for base, words in ((tmp_path / "file", "not a directory"), (tmp_path / "m" / "3", "not a version folder")):
        with pytest.raises(runs.Refusal, match=words):
            runs.check_serving_base(str(base), "--to")
    runs.check_serving_base(str(tmp_path / "serving" / "faces"), "--to")


# -- refusals: before TensorFlow, nothing left on disk ---------------------------------------------
REFUSALS = """
import json, os, sys
from facegan import cli
cases = json.loads(sys.argv[1])
out = []
for argv in cases:
    before = sorted(os.listdir("."))
    rc = cli.main(argv)
    out.append({"argv": argv, "rc": rc, "left": sorted(set(os.listdir(".")) - set(before))})
out.append(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
print(json.dumps(out))
"""


def test_refusals_come_before_tensorflow_and_leave_nothing_on_disk(tmp_path):
    ex = write_examples_tf_free(str(tmp_path / "ex32"), 32)
    cfg = get_preset("hdcgan", {"network.resolution": 32})
    first = str(tmp_path / "first")
    runs.write_record(first, cfg.to_dict(), os.path.abspath(ex), steps=cfg.run.steps, changes={}, argv=["x"])
    (tmp_path / "first" / "config.json").write_text(cfg.to_json())
    snapshot = {p: os.stat(os.path.join(first, p)).st_mtime_ns for p in os.listdir(first)}
    (tmp_path / "cfg.json").write_text('{"optim": {"batch_size": "big"}}')
    cases = [
        ["train", "--preset", "smoke", "--data", "missing"],
        ["train", "--preset", "hdcgan", "--data", "ex32"],                        # 512 > 32
        ["train", "--preset", "smoke", "--data", "ex32", "--resolution", "64"],
        ["train", "--preset", "smoke", "--data", "ex32", "--set", "optim.batchsize=8"],
        ["train", "--preset", "smoke", "--data", "ex32", "--set", "optim.batch_size"],
        ["train", "--config", "cfg.json", "--data", "ex32"],
        ["train", "--preset", "smoke", "--data", "ex32", "--steps", "0"],
        ["train", "--preset", "dcgan", "--resolution", "32", "--data", "ex32", "--out", "first"],
        ["train", "--preset", "smoke", "--data", "ex32", "--serving-dir", "cfg.json"],
        ["export", "--run", "first", "--to", "serving/faces"],
        ["export", "--run", "nowhere", "--to", "serving/faces"],
    ]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", REFUSALS, json.dumps(cases)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *results, tf_modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tf_modules == []
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("facegan train:", "facegan export:"))]
    assert len(lines) == len(cases), proc.stderr
    for r, line in zip(results, lines):
        assert r["rc"] == 2 and r["left"] == [], (r, line)
    expect = ["--data missing: does not exist", "--resolution 512 (the hdcgan preset's default) is above the "
              "data's stored resolution 32", "--resolution 64 is above the data's stored resolution 32",
              "unknown config field 'optim.batchsize'", "expected FIELD=VALUE",
              "--config cfg.json: optim.batch_size must be an integer", "--steps 0 trains nothing",
              "network.architecture hdcgan -> dcgan", "--serving-dir cfg.json: exists and is not a directory",
              "no checkpoint in checkpoints/", "--run nowhere: no such directory"]
    for line, words in zip(lines, expect):
        assert words in line, (line, words)
    assert "new --out" in lines[7] and "facegan export --run" in lines[6]
    assert {p: os.stat(os.path.join(first, p)).st_mtime_ns for p in os.listdir(first)} == snapshot
