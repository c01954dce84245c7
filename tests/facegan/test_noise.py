"""facegan.noise: third-party noise patterns, quiet mode, the CI noise checker."""
import subprocess
import sys

import numpy as np
import pytest

from facegan import cli, images, schema



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


def _warning_shown(code, env_extra=None):
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stderr


def test_noise_patterns_match_each_known_third_party_line_and_none_of_ours():
    from facegan import noise
    assert len(noise.noise_lines(_NOISY_SAMPLE)) == len(_NOISY_SAMPLE.splitlines())
    assert noise.noise_lines(_OURS) == []


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
