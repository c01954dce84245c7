"""The README's "Your faces" recipe, run as written: ingest -> train -> evaluate -> export -> serve
-> `facegan sample` over gRPC.

The commands are read from README.md between `<!-- your-faces:begin -->` and
`<!-- your-faces:end -->` and run in a fresh working directory with three substitutions only:
`--steps N` becomes `--steps 1` (a real run takes hours on a CPU), the data folder `~/faces`
becomes real faces (200 FFHQ photos from $FACEGAN_FACES_DIR, else scikit-image's 100 bundled LFW
crops enlarged to 64x64), and port 8500 becomes a free port (CI machines run other servers).
Everything else, flags, paths and order included, is the README's.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.docs.test_readme import README, YOUR_FACES_BEGIN, YOUR_FACES_END, _read, commands_in

pytestmark = pytest.mark.e2e

STEPS = "1"
FACEGAN = os.path.join(os.path.dirname(sys.executable), "facegan")


def recipe():
    text = _read(README)
    assert text.count(YOUR_FACES_BEGIN) == 1 and text.count(YOUR_FACES_END) == 1
    part = text[text.index(YOUR_FACES_BEGIN):text.index(YOUR_FACES_END)]
    return commands_in(part)


def test_recipe_is_the_users_path():
    names = [argv[0] for argv, _ in recipe()]
    assert names == ["ingest", "train", "evaluate", "export", "serve", "sample"]
    lines = [line for _, line in recipe()]
    assert lines[4].endswith("&") and "~/faces" in lines[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _substitute(argv, data_dir, port):
    out = []
    for i, w in enumerate(argv):
        if i and argv[i - 1] == "--steps":
            w = STEPS
        elif w == "~/faces":
            w = data_dir
        elif w == "8500" and argv[i - 1] == "--port":
            w = str(port)
        elif w.endswith(":8500"):
            w = w[:-len("8500")] + str(port)
        out.append(w)
    return out


def _faces(tmp_path):
    """200 real FFHQ photos (symlinked in place), else the embedded LFW crops enlarged to 64x64."""
    from conftest import faces_dir
    d = tmp_path / "faces"
    d.mkdir()
    ffhq = faces_dir() / "ffhq256" / "images"
    if ffhq.is_dir():
        for f in sorted(os.listdir(ffhq))[:200]:
            os.symlink(ffhq / f, d / f)
        return str(d)
    from PIL import Image
    from facegan.pipeline.demo import write_lfw_faces
    write_lfw_faces(str(d))
    for f in os.listdir(d):
        with Image.open(d / f) as im:
            im.resize((64, 64), Image.LANCZOS).save(d / f)
    return str(d)


def _wait_for_port(port, proc, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"facegan serve exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"facegan serve did not listen on {port} within {timeout} s")


def test_your_faces_recipe_runs_as_written(tmp_path):
    import numpy as np
    from PIL import Image

    data_dir = _faces(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = None
    try:
        for argv, line in recipe():
            args = [FACEGAN] + _substitute(argv, data_dir, port)
            if line.rstrip().endswith("&"):
                server = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
                _wait_for_port(port, server)
                continue
            r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"`{line}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    # What the README says each step leaves behind.
    assert (work / "data" / "faces64" / "Split-train").is_dir()
    assert (work / "runs" / "faces64" / "export" / "saved_model.pb").is_file()
    assert os.listdir(work / "serving" / "faces64") == ["1"]
    assert (work / "serving" / "faces64" / "1" / "saved_model.pb").is_file()
    metrics = _read(str(work / "runs" / "faces64" / "evaluation" / "metrics.json"))
    assert re.search(r'"swd', metrics) and re.search(r'"face_detection', metrics)
    with Image.open(work / "faces64.png") as im:
        grid = np.asarray(im)
    # 16 samples of 64x64 in a 4x4 grid with 2-pixel gaps (facegan/images.make_grid), not flat.
    assert grid.shape == (4 * 66 + 2, 4 * 66 + 2, 3)
    assert grid[2:66, 2:66].std() > 1.0
    shutil.rmtree(work / "runs", ignore_errors=True)
