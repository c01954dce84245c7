"""Shared fixtures. Unit tests (not marked e2e) must not import TFX: checked at session end.

Real face photos are read in place from $FACEGAN_FACES_DIR (set by .ci/run), defaulting to
../shared/data/faces next to the repository; they are never copied into the repository.
"""
import os
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def faces_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("FACEGAN_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


@pytest.fixture(scope="session")
def faces_root() -> pathlib.Path:
    root = faces_dir()
    if not root.is_dir():
        pytest.skip(f"real face data not found at {root}; set FACEGAN_FACES_DIR")
    return root


@pytest.fixture(scope="session")
def ffhq_dir(faces_root) -> pathlib.Path:
    return faces_root / "ffhq256" / "images"


@pytest.fixture(scope="session")
def celeba_dir(faces_root) -> pathlib.Path:
    return faces_root / "celeba89x109" / "images"


@pytest.fixture(scope="session")
def celeba_attributes(faces_root) -> pathlib.Path:
    """CelebA's 40-attribute table for the shared CelebA images (read in place, issue 11)."""
    path = faces_root / "celeba89x109" / "list_attr_celeba.txt"
    if not path.is_file():
        pytest.skip(f"CelebA attribute table not found at {path}")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session", autouse=True)
def _unit_tests_do_not_import_tfx(request):
    """A fixture, not a sessionfinish hook: its teardown error reaches the run's result also from a
    pytest-xdist worker (a worker's exit status is not the controller's)."""
    yield
    markexpr = request.config.getoption("-m") or ""
    if markexpr.replace(" ", "") == "note2e" and "tfx" in sys.modules:
        pytest.fail("a unit test imported TFX (30 s per import); move it to an e2e test "
                    "or keep TFX imports out of the module it tests.", pytrace=False)


E2E_DIR = REPO / "tests" / "e2e"
# Unit-test files by their measured time, longest first (pytest --durations; the three are ~55%
# of the unit suite).
HEAVY_FILES = ("test_train_loop.py", "test_image_to_image.py", "test_user_path.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """End-to-end tests live in tests/e2e/ and are marked `e2e` here; a test marked e2e anywhere
    else is refused, so `-m e2e` and the folder never disagree."""
    misplaced = []
    for item in items:
        if E2E_DIR in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
        elif item.get_closest_marker("e2e"):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError("e2e tests outside tests/e2e/: " + ", ".join(misplaced))
    # The longest files first: `make test` runs the unit tests on 2 workers with `--dist loadfile`,
    # which hands files out in this order; a long file last would run alone at the end.
    heavy = {name: i for i, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: heavy.get(pathlib.Path(str(item.fspath)).name, len(heavy)))

