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
                cache_dir=None, out=None, report=None, orthogonal_to="", space="z", grid=None, grid_rows=4,
                grid_seed=7)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("field,value,fragment", [
    ("attributes", "smiling,smiling", "--attributes"), ("num", 5, "--num 5"), ("heldout", 1.0, "--heldout"),
    ("truncation", 0.0, "--truncation"), ("strength", float("nan"), "--strength"), ("control_num", 0, "--control-num"),
    ("data", "/nonexistent/examples", "--data /nonexistent/examples"), ("grid_rows", 0, "--grid-rows 0")])
def test_directions_refuses_bad_flags_in_one_line(tmp_path, capsys, field, value, fragment):
    extra = {"grid": str(tmp_path / "grid.png")} if field == "grid_rows" else {}
    assert D.main(_directions_args(tmp_path, **{field: value}, **extra)) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_grid_columns_run_from_minus_to_plus_strength_in_whole_steps():
    assert D.grid_strengths(3.0) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert D.grid_strengths(2.5) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert D.grid_strengths(1.0) == [-1.0, 0.0, 1.0]


def test_directions_refuses_a_model_that_is_no_savedmodel(tmp_path, capsys):
    assert D.main(_directions_args(tmp_path)) == 2
    assert "not a SavedModel version directory" in capsys.readouterr().err


def test_project_refuses_bad_flags(tmp_path, capsys):
    args = argparse.Namespace(model=str(tmp_path), image=str(tmp_path / "none.jpg"), out=str(tmp_path / "o"),
                              steps=10, space=None, crop="center", lr=None, ssim_weight=0.5, discriminator=None,
                              discriminator_weight=0.1, lpips_weights=None, lpips_weight=1.0)
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


def test_orthogonalize_is_interfacegans_conditional_formula():
    rng = np.random.default_rng(2)
    n1, n2, n3 = (v / np.linalg.norm(v) for v in rng.standard_normal((3, 12)))
    got = D.orthogonalize(n1, [n2])
    want = n1 - (n1 @ n2) * n2                       # Shen et al. 2020: n1 - (n1^T n2) n2
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-12)
    assert abs(got @ n2) < 1e-12 and abs(np.linalg.norm(got) - 1) < 1e-12
    both = D.orthogonalize(n1, [n2, n3])
    assert abs(both @ n2) < 1e-12 and abs(both @ n3) < 1e-12 and both @ n1 > 0
    with pytest.raises(ValueError, match="parallel to its condition"):
        D.orthogonalize(n2, [n2])


def test_fit_directions_conditions_remove_the_entangled_attribute():
    """Two entangled attributes (their true normals at cosine 0.6): conditioned on `male`, the
    smiling direction is orthogonal to male's fitted normal; male itself, and every direction
    without a condition, is the raw fit; a condition outside the names is fitted but not served."""
    rng = np.random.default_rng(0)
    d = 10
    a = np.eye(d)[0]
    b = 0.6 * a + 0.8 * np.eye(d)[1]
    x = rng.standard_normal((3000, d))
    labels = np.stack([(x @ a > 0), (x @ b > 0)], axis=1).astype(float)
    plain, fit, raw = D.fit_directions(x, labels, ["smiling", "male"], 2400, 1e-2)
    assert plain[0] @ plain[1] > 0.4                                  # entangled
    assert fit["smiling"]["heldout_accuracy"] > 0.9
    cond, _, raw = D.fit_directions(x, labels, ["smiling", "male"], 2400, 1e-2, conditions=["male"])
    assert abs(cond[0] @ raw["male"]) < 1e-9 and abs(np.linalg.norm(cond[0]) - 1) < 1e-9
    np.testing.assert_allclose(cond[1], raw["male"])
    np.testing.assert_allclose(plain[0], raw["smiling"])
    only, fit, raw = D.fit_directions(x, labels, ["smiling"], 2400, 1e-2, conditions=["male"],
                                      label_names=["smiling", "male"])
    assert only.shape == (1, d) and set(fit) == {"smiling", "male"} and abs(only[0] @ raw["male"]) < 1e-9
    with pytest.raises(ValueError, match="'male' the same on every generated image"):
        D.fit_directions(x, np.stack([labels[:, 0], np.ones(3000)], 1), ["smiling", "male"], 2400, 1e-2)


@pytest.mark.parametrize("field,value,fragment", [
    ("orthogonal_to", "male,male", "--orthogonal-to 'male,male'"),
    ("orthogonal_to", "smiling,male", "every attribute is a condition")])
def test_directions_refuses_bad_conditions(tmp_path, capsys, field, value, fragment):
    assert D.main(_directions_args(tmp_path, **{field: value})) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
