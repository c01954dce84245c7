"""The whole local pipeline on real faces: ingest -> train -> evaluate -> push -> load and sample.

~200 CelebA images (read in place through the faces_root fixture, linked into a temporary
directory, never copied into the repository), the smoke preset at 32x32 for a few steps, the
LocalDagRunner with SQLite ML Metadata. The blessing here only demands non-degenerate samples
(a few steps are not enough to beat noise reliably; `make demo` checks the full default rules).
"""
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

N_IMAGES = 200
STEPS = 60


@pytest.fixture(scope="module")
def faces_subset(celeba_dir, tmp_path_factory):
    files = sorted(f for f in os.listdir(celeba_dir) if f.endswith(".jpg"))[:N_IMAGES]
    if len(files) < N_IMAGES:
        pytest.skip(f"need {N_IMAGES} CelebA images in {celeba_dir}, found {len(files)}")
    d = tmp_path_factory.mktemp("faces")
    for f in files:
        os.symlink(os.path.join(celeba_dir, f), d / f)
    return str(d)


def test_local_pipeline_on_real_faces_pushes_a_servable_model(faces_subset, tmp_path):
    from facegan.pipeline.local_runner import pipeline_outputs, run_local
    from facegan.trainer.export import load_generator

    out = tmp_path / "out"
    r = run_local(data_root=faces_subset, out=str(out), pipeline_name="facegan-e2e", preset="smoke",
                  train_steps=STEPS, resolution=32, overrides={"tricks.ema_decay": 0.5},
                  metrics=["swd", "ms_ssim"], num_eval_images=64, thresholds={},
                  extractor="random_tiny", ingest_options={"mirror": False, "eval_fraction": 0.2},
                  beam_pipeline_args=["--direct_running_mode=in_memory"])
    o = r.outputs
    # Ingestion: the Examples artifact with its report.
    with open(os.path.join(o["Examples"]["uri"], "ingest_summary.json")) as f:
        summary = json.load(f)
    assert summary["files_seen"] == N_IMAGES
    # Evaluation: metrics recorded in MLMD, a decision with reasons, blessed.
    ev = o["ModelEvaluation"]
    assert any(k.startswith("swd64") for k in ev["properties"])
    assert o["ModelBlessing"]["properties"]["blessed"] == 1
    # Push: TF Serving's layout <serving>/<model name>/<version>/ holding a generator SavedModel.
    push = o["PushedModel"]["properties"]
    assert push["pushed"] == 1
    version = push["pushed_version"]
    served = out / "serving" / r.model_name / version
    assert served.is_dir() and (served / "saved_model.pb").exists()
    assert os.listdir(out / "serving" / r.model_name) == [version]
    # Servable: load it through the export API and sample; identical to the Trainer's output.
    g = load_generator(str(served))
    assert g.resolution == 32 and g.metadata["steps"] == STEPS
    imgs = g.sample(4, seed=3)
    assert imgs.shape == (4, 32, 32, 3) and imgs.dtype == np.uint8 and imgs.std() > 1.0
    trained = load_generator(os.path.join(o["Model"]["uri"], "Format-Serving"))
    np.testing.assert_array_equal(imgs, trained.sample(4, seed=3))
    # One TensorBoard directory for the run, written by the Trainer and the evaluator.
    assert r.log_dir.startswith(str(out / "tensorboard"))
    written = [os.path.join(dp, f) for dp, _, fs in os.walk(r.log_dir) for f in fs if "tfevents" in f]
    assert any(os.sep + "evaluation" + os.sep in w for w in written)
    assert any(os.sep + "evaluation" + os.sep not in w for w in written), written
    # Reading MLMD again from outside the run gives the same newest artifacts.
    assert pipeline_outputs(str(out / "metadata.sqlite"), "facegan-e2e")["PushedModel"]["id"] == \
        o["PushedModel"]["id"]


def _run_facegan_together(commands, cwd):
    """Run `facegan ARGS` for each ARGS at once (their start-ups overlap); CompletedProcess each."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    procs = [subprocess.Popen([sys.executable, "-m", "facegan.cli", *args], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
        return [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def test_commands_print_no_third_party_noise_unless_verbose(tmp_path):
    """`facegan ingest` and `facegan pipeline compile` (TensorFlow, TFX, kfp, the Google
    clients) print only their own lines by default; --verbose shows the rest. The loud run is
    `pipeline compile`: the default ingest (local runner) imports no TensorFlow, TFX or Beam, so
    it has no third-party noise to show even with --verbose."""
    from PIL import Image
    from facegan.noise import noise_lines

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(src / f"{i}.png")

    def compile_args(out):
        return ["pipeline", "compile", "--out", str(tmp_path / out), "--image", "reg/img:1",
                "--data", "gs://b/faces", "--pipeline-root", "gs://b/root", "--serving-dir", "gs://b/serving"]

    # three processes at once (own output folders): the ingest, the compile with --verbose and
    # the same compile, quiet
    quiet, loud, comp = _run_facegan_together([
        ["ingest", "--input", str(src), "--output", str(tmp_path / "q"), "--resolution", "32"],
        ["--verbose", *compile_args("c_loud")], compile_args("c")], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert noise_lines(quiet.stdout + quiet.stderr) == []
    assert '"examples_written": 6' in quiet.stdout          # our own output is all there

    assert loud.returncode == 0, loud.stderr
    assert len(noise_lines(loud.stderr)) >= 3, loud.stderr      # the counter sees real noise
    assert comp.returncode == 0, comp.stderr
    assert noise_lines(comp.stdout + comp.stderr) == [], comp.stderr
    assert comp.stdout.strip() == str(tmp_path / "c" / "facegan_kubeflow.yaml")
    assert comp.stderr == ""                                  # nothing placeholder-like to warn about
