"""Train -> serve in two commands: `facegan train --serving-dir BASE/NAME` (smoke preset, 4 steps)
writes version 1, `facegan export --run DIR --to BASE/NAME` version 2, the project's own server
(`facegan serve --model_base_path BASE/NAME`, a process) loads the newest, and `facegan sample`
draws a grid over gRPC that equals the exported SavedModel called directly. The commands other
than the server run in this process through the CLI's own entry (`facegan.cli.main`): one
TensorFlow import less per command.

The server is started in its own session and stopped (by its id) in a `finally`."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.testlib.examples import write_synthetic_examples

pytestmark = pytest.mark.e2e
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _facegan(capsys, *argv):
    from facegan import cli
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    assert rc == 0, f"facegan {' '.join(argv)}\n{out.err[-3000:]}"
    return out


def test_train_export_serve_sample(tmp_path, monkeypatch, capsys):
    from facegan.generator import load_generator
    from facegan.images import decode_png, make_grid
    monkeypatch.chdir(tmp_path)
    write_synthetic_examples(str(tmp_path / "examples"), n_train=32, n_eval=8, resolution=32)
    train = _facegan(capsys, "train", "--preset", "smoke", "--data", "examples", "--steps", "4",
                     "--serving-dir", "serving/faces", "--set", "optim.batch_size=8")
    summary = json.loads(train.out)
    assert summary["served_version"] == os.path.join("serving", "faces", "1") and summary["steps"] == 4
    assert f"run folder {summary['run_dir']} (new run)" in train.err
    export = _facegan(capsys, "export", "--run", summary["run_dir"], "--to", "serving/faces")
    version = export.out.strip()
    assert version == os.path.join("serving", "faces", "2")
    meta = load_generator(str(tmp_path / version)).metadata
    assert meta["checkpoint"]["step"] == 4 and meta["checkpoint"]["selected"] == "last"

    server = subprocess.Popen([sys.executable, "-m", "facegan.cli", "serve", "--model_base_path", "serving/faces",
                               "--model_name", "faces", "--port", "0", "--host", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                              env=_env(), start_new_session=True)
    try:
        port, lines = None, []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and port is None:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving gRPC on"):
                port = int(line.split()[3].rsplit(":", 1)[1])
        assert port, "".join(lines)[-3000:]
        assert any("model faces: v2 AVAILABLE" in ln for ln in lines), "".join(lines)
        _facegan(capsys, "sample", "--server", f"127.0.0.1:{port}", "--model", "faces", "--num", "4",
                 "--seed", "1", "--out", "grid.png")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
    with open(tmp_path / "grid.png", "rb") as f:
        served = decode_png(f.read())
    direct = make_grid(load_generator(str(tmp_path / version)).sample(4, 1))
    np.testing.assert_array_equal(served, direct)
    assert len(np.unique(served.reshape(-1, 3), axis=0)) > 1
