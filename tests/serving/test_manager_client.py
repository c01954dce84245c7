"""serving/: config parsing, version policies, latent walks, deployment files (no server)."""
import pathlib
import re

import numpy as np
import pytest

from facegan.serving.client import format_status, latent_walk
from facegan.serving.manager import ModelSpec, list_versions, parse_model_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_committed_models_config_parses():
    specs = parse_model_config((REPO / "serving/configs/models.config").read_text())
    assert len(specs) == 1
    s = specs[0]
    assert (s.name, s.base_path, s.policy, s.num_versions) == ("facegan", "/models/facegan", "latest", 2)


def test_model_config_policies_and_errors():
    text = """
    model_config_list {
      config { name: "a" base_path: "/m/a" }
      config { name: "b" base_path: "/m/b" model_version_policy { all {} } }
      config { name: "c" base_path: "/m/c" model_version_policy { specific { versions: 3 versions: 5 } }
               version_labels { key: "stable" value: 3 } }
    }"""
    a, b, c = parse_model_config(text)
    assert (a.policy, a.num_versions) == ("latest", 1)
    assert b.policy == "all"
    assert c.policy == "specific" and c.versions == (3, 5) and c.labels == {"stable": 3}
    with pytest.raises(ValueError, match="x.config: not a ModelServerConfig"):
        parse_model_config("model_config_list { config { nme: 1 } }", "x.config")
    with pytest.raises(ValueError, match="needs a name and a base_path"):
        parse_model_config('model_config_list { config { name: "a" } }')
    with pytest.raises(ValueError, match="duplicate model names"):
        parse_model_config('model_config_list { config { name: "a" base_path: "/x" } '
                           'config { name: "a" base_path: "/y" } }')
    with pytest.raises(ValueError, match="no models"):
        parse_model_config("")


@pytest.mark.parametrize("spec,expected", [
    (ModelSpec("m", "/x"), [9]),
    (ModelSpec("m", "/x", num_versions=2), [7, 9]),
    (ModelSpec("m", "/x", policy="all"), [1, 7, 9]),
    (ModelSpec("m", "/x", policy="specific", versions=(1, 4)), [1]),
])
def test_version_policy_select(spec, expected):
    assert spec.select([7, 1, 9]) == expected


def test_list_versions_needs_complete_numeric_dirs(tmp_path):
    for name in ["1", "2", "10", "tmp", "0", "3"]:
        (tmp_path / name).mkdir()
    for name in ["1", "10", "tmp", "0"]:
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    # "2" and "3" lack saved_model.pb (an export in progress), "tmp" is not a version, 0 is invalid
    assert list_versions(str(tmp_path)) == [1, 10]
    assert list_versions(str(tmp_path / "missing")) == []


def test_latent_walk_is_slerp():
    z = latent_walk(512, 5, seed=3)
    assert z.shape == (5, 512) and z.dtype == np.float32
    z0, z1 = np.random.default_rng(3).standard_normal((2, 512))
    np.testing.assert_allclose(z[0], z0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[-1], z1, rtol=1e-5, atol=1e-6)
    # Slerp stays on the Gaussian shell (|z| ~ sqrt(d)); lerp's midpoint would shrink to ~0.71x.
    norms = np.linalg.norm(z, axis=1)
    ends = (np.linalg.norm(z0) + np.linalg.norm(z1)) / 2
    assert np.all(np.abs(norms / ends - 1) < 0.05), norms / ends
    assert np.linalg.norm((z0 + z1) / 2) / ends < 0.8
    # Frames lie in the plane of the endpoints and move monotonically from z0 to z1.
    coef, *_ = np.linalg.lstsq(np.stack([z0, z1], 1), z.T.astype(np.float64), rcond=None)
    np.testing.assert_allclose(np.stack([z0, z1], 1) @ coef, z.T, atol=1e-4)
    assert np.all(np.diff(coef[0]) < 0) and np.all(np.diff(coef[1]) > 0)
    np.testing.assert_allclose(latent_walk(512, 5, seed=3, truncation=0.5), z * 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 steps"):
        latent_walk(16, 1, seed=0)


def test_batching_config_fields():
    text = (REPO / "serving/configs/batching.config").read_text()
    fields = {m.group(1) for m in re.finditer(r"^([a-z_]+)\s*[:{]", text, re.M)}
    # Field names of TF Serving's BatchingParameters (session_bundle_config.proto).
    known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
             "thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs",
             "enable_large_batch_splitting", "max_execution_batch_size"}
    assert fields and fields <= known, fields - known
    sizes = [int(v) for v in re.findall(r"^allowed_batch_sizes:\s*(\d+)", text, re.M)]
    exec_size = int(re.search(r"max_execution_batch_size \{ value: (\d+) \}", text).group(1))
    assert sizes == sorted(sizes) and sizes[-1] == exec_size   # TF Serving's rule


def test_k8s_manifest():
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all((REPO / "serving/k8s/facegan-serving.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].startswith("tensorflow/serving:")
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
    assert args["model_config_file"] == "/config/models.config"
    assert args["batching_parameters_file"] == "/config/batching.config"
    assert args["enable_batching"] == "true"
    assert {p["containerPort"] for p in c["ports"]} == {8500, 8501}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["models"] == "/models" and mounts["config"] == "/config"
    # models.config's base_path lives under the mounted model volume.
    assert parse_model_config((REPO / "serving/configs/models.config").read_text())[0].base_path.startswith("/models/")
    svc_ports = {p["port"] for p in kinds["Service"]["spec"]["ports"]}
    assert svc_ports == {8500, 8501}
    assert kinds["Service"]["spec"]["selector"] == kinds["Deployment"]["spec"]["selector"]["matchLabels"]


def test_batching_parameters_parse():
    from facegan.serving.batching import parse_batching_parameters
    p = parse_batching_parameters((REPO / "serving/configs/batching.config").read_text())
    assert (p.max_batch_size, p.max_execution_batch_size, p.batch_timeout_micros) == (256, 64, 2000)
    assert p.enable_large_batch_splitting is True and p.pad_variable_length_inputs is False
    assert p.allowed_batch_sizes == [1, 4, 16, 64] and p.num_batch_threads == 4
    with pytest.raises(ValueError, match="unknown BatchingParameters field 'max_batch'"):
        parse_batching_parameters("max_batch { value: 3 }", "b.config")
    with pytest.raises(ValueError, match="must increase and end with max_batch_size"):
        parse_batching_parameters("max_batch_size { value: 8 }\nallowed_batch_sizes: 4")
    with pytest.raises(ValueError, match="enable_large_batch_splitting has an invalid value"):
        parse_batching_parameters("enable_large_batch_splitting { value: 3 }")


def test_status_is_printed_for_people():
    assert format_status([(1796019555, "AVAILABLE", "")]) == "version 1796019555 AVAILABLE"
    assert (format_status([(1, "END", "NotFoundError: gone"), (2, "AVAILABLE", "")])
            == "version 1 END (NotFoundError: gone), version 2 AVAILABLE")
    assert format_status([]) == "no versions"


@pytest.mark.parametrize("command", ["serve", "sample"])
def test_help_shows_defaults_and_an_example(command, capsys):
    from facegan import cli
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())   # argparse wraps lines
    assert "example: facegan serve --model_base_path" in text or "example: facegan sample --server" in text
    expected = {"serve": ["--port PORT gRPC port (default: 8500)", "(default: 2147483647)", "(default: facegan)"],
                "sample": ["--num NUM images in the grid (default: 16)", "--truncation TRUNCATION",
                           "(default: 1.0)", "(default: samples.png)"]}[command]
    for fragment in expected:
        assert fragment in text, fragment


def test_serving_modules_do_not_import_tensorflow():
    import subprocess
    import sys
    code = ("import sys; import facegan.serving.client, facegan.serving.manager, facegan.serving.server; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
