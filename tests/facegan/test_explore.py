"""Unit tests of `facegan directions` / `facegan project` / `facegan ui` pieces that need no
TensorFlow: the boundary fit, and the one-line refusals of bad flags."""
import argparse

import numpy as np
import pytest

from facegan import directions as D
from facegan import project as P


def test_logistic_boundary_recovers_a_known_hyperplane():
    rng = np.random.default_rng(0)
    normal = rng.standard_normal(16)
    normal /= np.linalg.norm(normal)
    x = rng.standard_normal((3000, 16))
    y = (x @ normal + 0.3 + 0.2 * rng.standard_normal(3000) > 0).astype(float)   # noisy labels, offset plane
    w, b = D.fit_logistic(x[:2400], y[:2400])
    assert float(w @ normal / np.linalg.norm(w)) > 0.98
    assert D.boundary_accuracy(w, b, x[2400:], y[2400:]) > 0.9
    flipped, _ = D.fit_logistic(x[:2400], 1 - y[:2400])          # the other side: the opposite normal
    assert float(flipped @ normal / np.linalg.norm(flipped)) < -0.98


def _directions_args(tmp_path, **kw):
    base = dict(model=str(tmp_path / "missing"), data=str(tmp_path), attributes="smiling,male", num=100,
                heldout=0.2, seed=0, truncation=1.0, strength=3.0, control_num=10, l2=1e-2, classifier_steps=None,
                cache_dir=None, out=None, report=None)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("field,value,fragment", [
    ("attributes", "smiling,smiling", "--attributes"), ("num", 5, "--num 5"), ("heldout", 1.0, "--heldout"),
    ("truncation", 0.0, "--truncation"), ("strength", float("nan"), "--strength"), ("control_num", 0, "--control-num"),
    ("data", "/nonexistent/examples", "--data /nonexistent/examples")])
def test_directions_refuses_bad_flags_in_one_line(tmp_path, capsys, field, value, fragment):
    assert D.main(_directions_args(tmp_path, **{field: value})) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_directions_refuses_a_model_that_is_no_savedmodel(tmp_path, capsys):
    assert D.main(_directions_args(tmp_path)) == 2
    assert "not a SavedModel version directory" in capsys.readouterr().err


def test_project_refuses_bad_flags(tmp_path, capsys):
    args = argparse.Namespace(model=str(tmp_path), image=str(tmp_path / "none.jpg"), out=str(tmp_path / "o"),
                              steps=10, space=None, crop="center", lr=None, ssim_weight=0.5)
    assert P.main(args) == 2
    assert "--image" in capsys.readouterr().err
    (tmp_path / "face.jpg").write_bytes(b"x")
    args.image = str(tmp_path / "face.jpg")
    assert P.main(args) == 2
    assert "not a SavedModel version directory" in capsys.readouterr().err
    args.steps = 0
    assert P.main(args) == 2
    assert "--steps 0" in capsys.readouterr().err


def test_ui_refuses_bad_flags():
    from facegan.serving.ui import UiServer
    with pytest.raises(ValueError, match="--rest"):
        UiServer("localhost", "faces")
    with pytest.raises(ValueError, match="--model"):
        UiServer("localhost:8501", "../etc")
