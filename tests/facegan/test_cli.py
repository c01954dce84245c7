"""The shared conventions: schema helpers, grids, CLI dispatch."""
import subprocess
import sys

import numpy as np
import pytest

from facegan import cli, images, schema


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
    repo = pathlib.Path(__file__).resolve().parents[2]
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
    repo = pathlib.Path(__file__).resolve().parents[2]
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


