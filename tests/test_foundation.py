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
