"""The shared conventions: schema helpers, grids, CLI dispatch."""
import subprocess
import sys

import numpy as np
import pytest

from facegan import cli, images, schema


@pytest.mark.parametrize("bad", [0, 4, 6, 100, 2048, "x", 64.5, None])
def test_check_resolution_rejects(bad):
    with pytest.raises(ValueError, match="resolution"):
        schema.check_resolution(bad)


@pytest.mark.parametrize("good", [8, 16, 64, 1024])
def test_check_resolution_accepts(good):
    assert schema.check_resolution(good) == good


def test_image_key():
    assert schema.image_key(64, 64) == "image"
    assert schema.image_key(8, 64) == "image_8"


def test_grid_layout_and_png_round_trip(rng):
    imgs = rng.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
    grid = images.make_grid(imgs, cols=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    np.testing.assert_array_equal(grid[1:5, 1:7], imgs[0])
    np.testing.assert_array_equal(grid[6:10, 8:14], imgs[4])
    np.testing.assert_array_equal(images.decode_png(images.encode_png(grid)), grid)


def test_cli_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "facegan.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in cli.SUBCOMMANDS:
        assert name in out.stdout


def test_cli_unknown_subcommand_fails():
    assert cli.main(["no-such-command"]) == 2


_TOP_LEVEL = ("trainer", "metrics", "serving", "pipeline", "components")


def test_sources_import_only_the_facegan_namespace():
    """The five repository folders install as `facegan.<name>` (setup.py's package_dir), so a bare
    `import metrics` would pick up a user's own package of that name: none may remain."""
    import pathlib
    import re
    repo = pathlib.Path(__file__).resolve().parents[1]
    bare = re.compile(r"^\s*(from|import)\s+(%s)\b" % "|".join(_TOP_LEVEL), re.M)
    offenders = []
    for path in repo.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(repo).parts):
            continue
        for m in bare.finditer(path.read_text()):
            offenders.append(f"{path.relative_to(repo)}: {m.group(0).strip()}")
    assert not offenders, offenders


def test_setup_maps_every_folder_under_facegan():
    """setup.py installs each top-level folder (and its subpackages) under `facegan.`."""
    import pathlib
    import runpy
    from unittest import mock
    repo = pathlib.Path(__file__).resolve().parents[1]
    with mock.patch("setuptools.setup") as setup:
        import os
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            runpy.run_path(str(repo / "setup.py"))
        finally:
            os.chdir(cwd)
    kwargs = setup.call_args.kwargs
    for top in _TOP_LEVEL:
        assert kwargs["package_dir"][f"facegan.{top}"] == top
        assert f"facegan.{top}" in kwargs["packages"]
    assert not [p for p in kwargs["packages"] if p.split(".")[0] != "facegan"]
    assert "facegan.components.image_example_gen" in kwargs["packages"]


def _facegan(*argv, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "facegan.cli", *argv], capture_output=True,
                          text=True, env=dict(os.environ, **(env or {})))


def test_cli_version_prints_the_package_version():
    import facegan
    out = _facegan("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"facegan {facegan.__version__}"


def test_cli_unknown_command_names_the_closest_and_exits_2():
    out = _facegan("injest")
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == "facegan: unknown command 'injest' (did you mean 'ingest'?)"
    assert "usage" not in out.stdout            # an error line, not the help dump
    assert cli.unknown_command_message("xyz").startswith("unknown command 'xyz'; choose one of ingest")
    assert cli.unknown_command_message("pipelin") == "unknown command 'pipelin' (did you mean 'pipeline'?)"


def test_cli_global_verbose_flag_is_taken_before_or_after_the_command():
    assert cli._split_verbose(["--verbose", "ingest", "--input", "x"]) == (True, ["ingest", "--input", "x"])
    assert cli._split_verbose(["ingest", "--verbose"]) == (True, ["ingest"])
    assert cli._split_verbose(["ingest", "--", "--verbose"]) == (False, ["ingest", "--", "--verbose"])


@pytest.mark.parametrize("command", ["pipeline", "demo"])
def test_cli_help_shows_defaults_and_an_example(command):
    out = _facegan(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "examples:" in out.stdout and f"facegan {command}" in out.stdout.split("examples:")[1]
    assert "--verbose" in out.stdout


def test_pipeline_subcommand_help_shows_each_default():
    from facegan.pipeline import configs
    out = _facegan("pipeline", "compile", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())           # argparse wraps lines
    assert f"--gpus GPUS GPUs for the Trainer (default: {configs.TRAINER_GPUS})" in text
    assert f"(default: $FACEGAN_TRAIN_STEPS, else {configs.TRAIN_STEPS})" in text and "(default: build)" in text
    assert f"(default: $FACEGAN_PRESET, else {configs.PRESET})" in text
    assert "examples:" in text


def test_help_formatter_adds_defaults_only_where_they_say_something():
    import argparse
    from facegan.cli_args import HelpFormatter
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps")
    p.add_argument("--count", type=int, default=1)                    # no help text
    p.add_argument("--off", type=int, default=0, help="zero is a default too")
    p.add_argument("--out", default="o", help="where (default o)")     # already says it
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--maybe", default=None, help="optional")
    text = " ".join(p.format_help().split())
    assert "training steps (default: 300)" in text and "--count COUNT (default: 1)" in text
    assert "zero is a default too" in text and "(default: 0)" not in text   # help mentions it
    assert "where (default o)" in text and "default: o" not in text
    assert "a switch --maybe" in text and "optional" in text and "default: None" not in text


# ---- third-party noise (facegan/noise.py) -------------------------------------------------------

_NOISY_SAMPLE = """\
/x/.venv/lib/python3.10/site-packages/google/api_core/_python_version_support.py:246: FutureWarning: You are using a non-supported Python version (3.10.13). Google will not post any further updates
  warnings.warn(message, FutureWarning)
2026-11-30 07:58:25.783729: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to register cuDNN factory: Attempting to register factory
2026-11-30 07:58:10.617913: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could not find TensorRT
WARNING:absl:ArtifactQuery.property_predicate is not supported.
WARNING:apache_beam.runners.portability.local_job_service:Worker: severity: WARN message: "No semi_persistent_directory found"
WARNING:apache_beam.runners.portability.local_job_service:Worker: severity: WARN message: "Discarding unparseable args: ['--x']"
/x/site-packages/pkg_resources/__init__.py:2832: DeprecationWarning: Deprecated call to `pkg_resources.declare_namespace('google')`.
"""
_OURS = """\
ingest  6/6 files  2.1 files/s  ETA 0:00
wrote out (Split-train, Split-eval, ingest_summary.json, rejections.jsonl, sample_grid.png)
/work/repo/trainer/config.py:40: UserWarning: network.resolution 32 drops the preset's entries above it
facegan pipeline compile: warning: the image gcr.io/my-project/facegan-pipeline:0.1.0 is a placeholder
ERROR: facegan train: --data /x holds no TFRecords
"""


def test_noise_patterns_match_each_known_third_party_line_and_none_of_ours():
    from facegan import noise
    assert len(noise.noise_lines(_NOISY_SAMPLE)) == len(_NOISY_SAMPLE.splitlines())
    assert noise.noise_lines(_OURS) == []


def _warning_shown(code, env_extra=None):
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stderr


def test_quiet_hides_third_party_warnings_keeps_ours_and_errors_and_reaches_subprocesses():
    code = """
import logging, os, subprocess, sys, warnings, types
from facegan import noise
noise.configure(is_verbose=%s)
# a third-party module's deprecation and the google-api-core message
lib = types.ModuleType("somelib"); exec("import warnings\\ndef f(): warnings.warn('old API', DeprecationWarning)", lib.__dict__)
lib.f()
warnings.warn_explicit("You are using a non-supported Python version (3.10)", FutureWarning, "api_core.py", 1, module="google.api_core.x")
# ours: a warning attributed to a facegan module, and our logger
warnings.warn_explicit("facegan own warning", UserWarning, "cfg.py", 1, module="facegan.trainer.config")
logging.getLogger("facegan.train").warning("facegan own log warning")
from absl import logging as absl_logging
absl_logging.set_verbosity(absl_logging.WARNING)     # as absl does when its flags are parsed
absl_logging.warning("ArtifactQuery.property_predicate is not supported.")
logging.getLogger("apache_beam").error("a real worker error")
print("TF_CPP_MIN_LOG_LEVEL=" + os.environ.get("TF_CPP_MIN_LOG_LEVEL", ""), file=sys.stderr)
# a child process (like a Beam worker) inherits the filters through the environment
subprocess.run([sys.executable, "-c", "import warnings; warnings.warn('You are using a non-supported Python version (child)', FutureWarning)"])
"""
    quiet = _warning_shown(code % False)
    assert "facegan own warning" in quiet and "facegan own log warning" in quiet
    assert "a real worker error" in quiet
    assert "old API" not in quiet and "non-supported Python version" not in quiet
    assert "property_predicate" not in quiet
    assert "TF_CPP_MIN_LOG_LEVEL=3" in quiet
    loud = _warning_shown(code % True)
    assert "old API" in loud and "property_predicate" in loud
    assert loud.count("non-supported Python version") == 2          # parent and child
    assert "facegan own warning" in loud


def test_quiet_keeps_a_users_own_environment_settings():
    from facegan import noise
    env = {"TF_CPP_MIN_LOG_LEVEL": "1", "PYTHONWARNINGS": "error::RuntimeWarning"}
    import warnings
    with warnings.catch_warnings():
        noise.quiet(env=env, loggers=())
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "1"
    assert env["PYTHONWARNINGS"].startswith("error::RuntimeWarning,ignore:You are using a non-supported")


def test_noise_checker_for_ci_counts_lines_and_fails_on_any(tmp_path, capsys):
    from facegan import noise
    log = tmp_path / "demo.log"
    log.write_text(_OURS + _NOISY_SAMPLE.splitlines()[4] + "\n")
    assert noise.main([str(log)]) == 1
    out = capsys.readouterr().out
    assert "1 third-party noise line(s)" in out and "property_predicate" in out
    log.write_text(_OURS)
    assert noise.main([str(log)]) == 0


def test_jsonable_converts_numpy_and_writes_nan_as_null_only_when_asked():
    import json
    import math
    from facegan.jsonable import jsonable
    obj = {1: np.float32(0.5), "a": (np.int64(3), np.array([1.0, np.nan])), "nan": float("nan"),
           "inf": np.float64(-np.inf), "ok": np.bool_(True), "s": "x"}
    kept = jsonable(obj)   # the evaluator's metrics.json: NaN stays a float (json writes NaN)
    assert kept["1"] == 0.5 and type(kept["1"]) is float and kept["a"][0] == 3 and type(kept["a"][0]) is int
    assert math.isnan(kept["a"][1][1]) and math.isnan(kept["nan"]) and kept["inf"] == -math.inf
    assert kept["ok"] is True and kept["s"] == "x"
    assert "NaN" in json.dumps(kept)
    strict = jsonable(obj, nan_as_null=True)   # metrics.jsonl: strict JSON, NaN/inf as null
    assert strict["a"] == [3, [1.0, None]] and strict["nan"] is None and strict["inf"] is None
    assert strict["1"] == 0.5
    assert json.loads(json.dumps(strict, allow_nan=False)) == strict


def test_configure_script_strips_verbose_and_sets_the_mode(monkeypatch):
    """Benchmark scripts: `--verbose` picks the mode and never reaches their argument parser."""
    from facegan import noise
    calls = []
    monkeypatch.setattr(noise, "quiet", lambda: calls.append("quiet"))
    monkeypatch.setattr(noise, "verbose", lambda: calls.append("verbose"))
    argv = ["bench/x.py", "--steps", "3", "--verbose"]
    noise.configure_script(argv)
    assert argv == ["bench/x.py", "--steps", "3"] and calls == ["verbose"]
    argv = ["bench/x.py"]
    noise.configure_script(argv)
    assert argv == ["bench/x.py"] and calls == ["verbose", "quiet"]
