"""The path a user walks, with real training (tiny): `facegan train` into the default folder and
again with more steps (the same folder, continued; OUT/export replaced), hdcgan then dcgan into
one folder (refused in one line before TensorFlow, the first run intact), `--config` from a run,
and `facegan export` of the last / best / step-N checkpoint as versions 1, 2, ... whose metadata
carry the step and the metrics.jsonl numbers of that step."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facegan.trainer import runs
from tests.testlib.train import TINY
from tests.testlib.examples import write_synthetic_examples

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = {k: v for k, v in TINY.items() if k != "network.resolution"}
EVAL = {"eval.every_images": 16, "eval.metrics": "swd", "eval.num_images": 16, "eval.batch_size": 16,
        "eval.memorization": 0, "eval.extractor": "random_tiny", "eval.best_metric": "swd",
        "run.keep_checkpoints": 10}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=32, n_eval=16, resolution=32)


def _sets(overrides):
    out = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def _train(capsys, *argv):
    from facegan import cli
    rc = cli.main(["train", *argv])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if rc == 0 else None), cap.err


def _meta(version):
    with open(os.path.join(version, "assets", "facegan_metadata.json")) as f:
        return json.load(f)


def test_same_command_resumes_in_the_default_folder_and_more_steps_continue(synth, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cmd = ["--preset", "smoke", "--data", synth] + _sets(SMALL)
    rc, first, err = _train(capsys, *cmd, "--steps", "2")
    assert rc == 0, err
    run = first["run_dir"]
    assert run == runs.default_out(json.load(open(os.path.join(run, "run.json")))["config"],
                                   os.path.abspath(synth))
    assert run.startswith(os.path.join("runs", "smoke-32px-")) and f"run folder {run} (new run)" in err
    rc, second, err = _train(capsys, *cmd, "--steps", "3")
    assert rc == 0, err
    assert second["run_dir"] == run and second["steps"] == 3 and second["images_shown"] == 3 * 8
    assert f"run folder {run} (resuming at step 2, training to 3)" in err
    # OUT/export is replaced by the continued run's export (it used to refuse an existing SavedModel)
    assert second["export"] == os.path.join(run, "export") and _meta(second["export"])["steps"] == 3
    assert not os.path.exists(os.path.join(run, "export.new")) and not os.path.exists(os.path.join(run, "export.old"))
    rec = json.load(open(os.path.join(run, runs.RUN_FILE)))
    assert [h["steps"] for h in rec["history"]] == [2, 3] and rec["data"] == os.path.abspath(synth)
    assert sorted(os.listdir("runs")) == [os.path.basename(run)]


def test_hdcgan_then_dcgan_into_one_folder_is_refused_before_tensorflow_first_run_intact(synth, tmp_path, capsys):
    out = str(tmp_path / "one")
    rc, first, err = _train(capsys, "--preset", "hdcgan", "--resolution", "32", "--data", synth, "--out", out,
                            "--steps", "1", "--no-export", *_sets(SMALL))
    assert rc == 0, err
    before = {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
              for d, _, fs in os.walk(out) for f in fs}
    code = ("import sys\nfrom facegan import cli\nrc = cli.main(sys.argv[1:])\n"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, "train", "--preset", "dcgan", "--resolution", "32",
                           "--data", synth, "--out", out, "--steps", "1", *_sets(SMALL)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"facegan train: {out} was started with other settings: "
                                                   "network.architecture hdcgan -> dcgan"), proc.stderr
    assert "new --out" in lines[0]
    after = {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(out) for f in fs}
    assert after == before


def test_config_of_a_run_reproduces_its_resolved_config(synth, tmp_path, capsys):
    a = str(tmp_path / "a")
    rc, _, err = _train(capsys, "--preset", "smoke", "--data", synth, "--out", a, "--steps", "1", "--no-export",
                        *_sets(dict(SMALL, **{"optim.g_learning_rate": 3e-4})))
    assert rc == 0, err
    b = str(tmp_path / "b")
    rc, _, err = _train(capsys, "--config", os.path.join(a, "config.json"), "--data", synth, "--out", b,
                        "--no-export")
    assert rc == 0, err
    with open(os.path.join(a, "config.json")) as fa, open(os.path.join(b, "config.json")) as fb:
        assert json.load(fa) == json.load(fb)
    # the same --config into the first run's folder is that run (resumes: nothing to train)
    rc, again, err = _train(capsys, "--config", a, "--data", synth, "--out", a, "--no-export")
    assert rc == 0 and again["steps"] == 1 and "resuming at step 1" in err


@pytest.fixture(scope="module")
def evaluated(synth, tmp_path_factory):
    """6 steps with an evaluation every 16 images (steps 2, 4, 6), exported at the end with
    --serving-dir (version 1)."""
    from facegan import cli
    root = tmp_path_factory.mktemp("evaluated")
    run, base = str(root / "run"), str(root / "serving" / "faces")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["train", "--preset", "smoke", "--data", synth, "--out", run, "--steps", "6",
                       "--serving-dir", base, *_sets(dict(SMALL, **EVAL))])
    assert rc == 0
    return run, base, json.loads(buf.getvalue())


def test_export_last_best_and_step_write_numbered_versions_with_step_and_metrics(evaluated, capsys):
    from facegan import cli
    from facegan.generator import load_generator
    run, base, summary = evaluated
    assert summary["served_version"] == os.path.join(base, "1")
    records = runs.read_metrics(run)
    assert [r["step"] for r in records] == [2, 4, 6]
    by_step = {r["step"]: r["headline"] for r in records}
    best_step = min(by_step, key=lambda s: by_step[s]["swd"])        # SWD: lower is better
    paths = []
    for which in ("best", "4", "last"):
        assert cli.main(["export", "--run", run, "--checkpoint", which, "--to", base]) == 0
        paths.append(capsys.readouterr().out.strip())
    assert paths == [os.path.join(base, str(n)) for n in (2, 3, 4)]
    assert runs.existing_versions(base) == [1, 2, 3, 4]
    for version, step, selected in ((1, 6, "last"), (2, best_step, "best"), (3, 4, "step"), (4, 6, "last")):
        meta = _meta(os.path.join(base, str(version)))
        assert meta["checkpoint"]["step"] == step and meta["checkpoint"]["selected"] == selected, version
        assert meta["steps"] == step and meta["images_shown"] == 8 * step
        assert meta["metrics"] == by_step[step], version
    # the exported checkpoint is the trained state: the last checkpoint exported afterwards
    # generates what the end of training exported
    z = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(load_generator(os.path.join(base, "1")).generate(z),
                                  load_generator(os.path.join(base, "4")).generate(z))
    assert not [n for n in os.listdir(base) if not n.isdigit()]        # no staging folder left
