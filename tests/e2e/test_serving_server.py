"""`facegan serve` + `facegan sample` end to end over real gRPC/HTTP on 127.0.0.1 (free ports).

Checks the served outputs against the SavedModel called directly (pixel-exact), every bad request's
status code (and that the server keeps serving), hot loading, version policies, concurrency,
REST, the CLIs and clean shutdown.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

tf = pytest.importorskip("tensorflow")
grpc = pytest.importorskip("grpc")

from facegan.images import decode_png  # noqa: E402
from facegan.serving import client as client_lib  # noqa: E402
from facegan.serving.client import ClientError, GrpcClient, RestClient, latent_walk  # noqa: E402
from facegan.serving.manager import ModelSpec  # noqa: E402
from facegan.serving.server import Server  # noqa: E402
from facegan.generator import CONDITIONAL, IMAGE_TO_IMAGE, load_generator  # noqa: E402
from facegan.generator import export_generator as export_kind  # noqa: E402
from tests.testlib.serving import tiny_conditional_generator, tiny_generator, tiny_translator  # noqa: E402
from facegan.trainer.export import export_generator  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
Z_DIM, RES, MAX_BATCH = 8, 16, 32


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two exported versions of different generators (v2 is the 'newly trained' one)."""
    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for v, seed in [(1, 0), (2, 1)]:
        paths[v] = export_generator(tiny_generator(Z_DIM, RES, seed=seed), str(root / str(v)),
                                    metadata={"steps": v * 100}, max_batch=MAX_BATCH)
    return paths


@pytest.fixture(scope="module")
def direct(versions):
    return {v: load_generator(p) for v, p in versions.items()}


def make_base(tmp_path, versions, which):
    base = tmp_path / "facegan"
    base.mkdir()
    for v in which:
        shutil.copytree(versions[v], base / str(v))
    return base


@pytest.fixture(scope="module")
def server(tmp_path_factory, versions):
    base = make_base(tmp_path_factory.mktemp("serving"), versions, [1])
    srv = Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", rest_api_port=0,
                 poll_wait_s=0.2, max_workers=8).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with GrpcClient(f"127.0.0.1:{server.port}", timeout=60) as c:
        yield c


def test_sample_equals_direct_savedmodel(client, direct):
    images, pngs = client.sample("faces", 12, seed=5, png=True)
    want = direct[1].signatures["sample"](num=tf.constant(12), seed=tf.constant(5, tf.int64),
                                          truncation=tf.constant(1.0))
    np.testing.assert_array_equal(images, want["images"].numpy())
    assert images.dtype == np.uint8 and images.shape == (12, RES, RES, 3)
    assert pngs == list(want["png"].numpy())
    np.testing.assert_array_equal(decode_png(pngs[7]), images[7])
    # Truncation through the wire too.
    np.testing.assert_array_equal(client.sample("faces", 4, seed=5, truncation=0.6),
                                  direct[1].sample(4, 5, truncation=0.6))


def test_sample_deterministic_per_seed(client):
    a = client.sample("faces", 6, seed=11)
    np.testing.assert_array_equal(a, client.sample("faces", 6, seed=11))
    assert not np.array_equal(a, client.sample("faces", 6, seed=12))


def test_client_latents_reproduce_server_sample(client):
    """The batching fallback path (client-drawn z -> serving_default) gives the same pixels."""
    for t in (1.0, 0.7):
        np.testing.assert_array_equal(client.sample("faces", 9, seed=3, truncation=t, latents="client"),
                                      client.sample("faces", 9, seed=3, truncation=t, latents="server"))


def test_generate_and_metadata(client, direct):
    z = latent_walk(Z_DIM, 6, seed=2)
    np.testing.assert_array_equal(client.generate("faces", z), direct[1].generate(z))
    assert client.z_dim("faces") == Z_DIM
    sigs = client.signature_defs("faces")
    assert {"serving_default", "sample", "generate"} <= set(sigs)
    assert sigs["sample"].outputs["png"].dtype == tf.string.as_datatype_enum
    assert client.status("faces") == [(1, "AVAILABLE", "")]
    assert client.status("faces", version=1) == [(1, "AVAILABLE", "")]


def _sample_inputs(num=4, seed=1, trunc=1.0):
    return {"num": np.int32(num), "seed": np.int64(seed), "truncation": np.float32(trunc)}


BAD_REQUESTS = [
    # (id, model, signature, inputs, version, expected code, message fragment)
    ("num_too_large", "faces", "sample", _sample_inputs(num=MAX_BATCH + 1), None, "INVALID_ARGUMENT", "outside [1, 32]"),
    ("num_zero", "faces", "sample", _sample_inputs(num=0), None, "INVALID_ARGUMENT", "'num' = 0"),
    ("num_negative", "faces", "sample", _sample_inputs(num=-3), None, "INVALID_ARGUMENT", "'num' = -3"),
    ("num_wrong_dtype", "faces", "sample", {**_sample_inputs(), "num": np.int64(4)}, None,
     "INVALID_ARGUMENT", "expects int32 but int64"),
    ("num_wrong_shape", "faces", "sample", {**_sample_inputs(), "num": np.array([4], np.int32)}, None,
     "INVALID_ARGUMENT", "'num': shape [1]"),
    ("truncation_out_of_range", "faces", "sample", _sample_inputs(trunc=1.5), None, "INVALID_ARGUMENT", "truncation"),
    ("missing_input", "faces", "sample", {"num": np.int32(2), "seed": np.int64(1)}, None,
     "INVALID_ARGUMENT", "Missing but required: {truncation}"),
    ("extra_input", "faces", "sample", {**_sample_inputs(), "z": np.zeros([1, Z_DIM], np.float32)}, None,
     "INVALID_ARGUMENT", "Sent extra: {z}"),
    ("z_wrong_dtype", "faces", "serving_default", {"z": np.zeros([2, Z_DIM], np.float64)}, None,
     "INVALID_ARGUMENT", "expects float but double"),
    ("z_wrong_width", "faces", "serving_default", {"z": np.zeros([2, Z_DIM + 1], np.float32)}, None,
     "INVALID_ARGUMENT", "not compatible"),
    ("z_wrong_rank", "faces", "serving_default", {"z": np.zeros([Z_DIM], np.float32)}, None,
     "INVALID_ARGUMENT", "not compatible"),
    ("z_too_many", "faces", "serving_default", {"z": np.zeros([MAX_BATCH + 1, Z_DIM], np.float32)}, None,
     "INVALID_ARGUMENT", "batch size 33"),
    ("z_empty", "faces", "serving_default", {"z": np.zeros([0, Z_DIM], np.float32)}, None,
     "INVALID_ARGUMENT", "batch size 0"),
    # Non-finite latents are refused by the graph itself (so TF Serving refuses them too).
    ("z_nan", "faces", "serving_default", {"z": np.full([2, Z_DIM], np.nan, np.float32)}, None,
     "INVALID_ARGUMENT", "z must be finite"),
    ("z_inf", "faces", "generate", {"z": np.full([1, Z_DIM], np.inf, np.float32), "truncation": np.float32(0.5)},
     None, "INVALID_ARGUMENT", "z must be finite"),
    ("unknown_model", "nobody", "sample", _sample_inputs(), None, "NOT_FOUND", "nobody"),
    ("unknown_version", "faces", "sample", _sample_inputs(), 7, "NOT_FOUND", "Specific(faces, 7)"),
    # TF Serving answers an unknown signature key with FAILED_PRECONDITION (predict_util.cc).
    ("unknown_signature", "faces", "classify", _sample_inputs(), None, "FAILED_PRECONDITION", '"classify" not found'),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_status_and_server_survives(client, case):
    _, model, signature, inputs, version, code, fragment = case
    with pytest.raises(ClientError) as err:
        client.predict(model, signature, inputs, version)
    assert err.value.code == code, err.value
    assert fragment in err.value.message
    assert client.sample("faces", 2, seed=1).shape == (2, RES, RES, 3)   # still serving


def test_bad_output_filter_and_metadata_field(client):
    with pytest.raises(ClientError) as err:
        client.predict("faces", "sample", _sample_inputs(), output_filter=("nope",))
    assert err.value.code == "INVALID_ARGUMENT" and "output tensor alias not found" in err.value.message
    from tensorflow_serving.apis import get_model_metadata_pb2
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "faces"
    req.metadata_field.append("signature_defs")
    with pytest.raises(grpc.RpcError) as rpc:
        client.predictions.GetModelMetadata(req, timeout=30)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_tensor_proto(client):
    from tensorflow_serving.apis import predict_pb2
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = "faces", "serving_default"
    proto = tf.make_tensor_proto(np.zeros([2, Z_DIM], np.float32))
    proto.tensor_content = proto.tensor_content[:-4]          # 4 bytes short of the declared shape
    req.inputs["z"].CopyFrom(proto)
    with pytest.raises(grpc.RpcError) as rpc:
        client.predictions.Predict(req, timeout=30)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.sample("faces", 1, seed=0).shape == (1, RES, RES, 3)


def test_concurrent_clients(server, direct):
    expected = {s: direct[1].sample(3, s) for s in range(8)}
    errors, done = [], []

    def worker(i):
        try:
            with GrpcClient(f"127.0.0.1:{server.port}", timeout=60) as c:
                for k in range(5):
                    seed = (i + k) % 8
                    np.testing.assert_array_equal(c.sample("faces", 3, seed), expected[seed])
                    done.append(1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(done) == 40


def test_rest_api(server, direct):
    rest = RestClient(f"127.0.0.1:{server.rest_api_port}", timeout=60)
    np.testing.assert_array_equal(rest.sample("faces", 5, seed=4), direct[1].sample(5, 4))
    z = latent_walk(Z_DIM, 3, seed=1)
    np.testing.assert_array_equal(rest.generate("faces", z), direct[1].generate(z))
    assert rest.z_dim("faces") == Z_DIM
    assert rest.status("faces") == [(1, "AVAILABLE", "")]
    with pytest.raises(ClientError) as err:
        rest.sample("faces", 0, seed=1, latents="server")
    assert err.value.code == "HTTP 400" and "'num' = 0" in err.value.message
    with pytest.raises(ClientError) as err:
        rest.sample("nobody", 1, seed=1)
    assert err.value.code == "HTTP 404"
    # Bad bodies: 400 with a message, and the server keeps serving.
    import urllib.error
    import urllib.request
    url = rest._url("faces", None, ":predict")
    for body, fragment in [(b"{not json", "malformed JSON"),
                           (b'{"inputs": {"z": [["a", "b"]]}}', "cannot be converted to float32"),
                           (b'{"signature_name": "nope", "inputs": {}}', '"nope" not found'),
                           (b'{"inputs": {"z": [[1, 2], [3]]}}', "cannot be converted"),
                           (b'{"instances": [], "inputs": {}}', "exactly one of")]:
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30)
        assert http_err.value.code == 400 and fragment in json.loads(http_err.value.read())["error"], body
    np.testing.assert_array_equal(rest.sample("faces", 2, seed=4), direct[1].sample(2, 4))
    # Row ("instances") format as TF Serving accepts it for single-input signatures.
    out = rest._request(rest._url("faces", None, ":predict"), {"instances": z[:2].tolist()})
    np.testing.assert_array_equal(np.asarray(out["predictions"], np.uint8), direct[1].generate(z[:2]))


def _cli_args(**kw):
    parser = argparse.ArgumentParser()
    client_lib.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return parser.parse_args(argv)


def test_sample_cli_grid_and_interpolation(server, direct, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    rc = client_lib.main(_cli_args(server=f"127.0.0.1:{server.port}", model="faces", num=4, seed=9,
                                   out=grid, cols=4))
    assert rc == 0 and "wrote" in capsys.readouterr().out
    img = decode_png(grid.read_bytes())
    pad = 2
    assert img.shape == (RES + 2 * pad, 4 * (RES + pad) + pad, 3)
    want = direct[1].sample(4, 9)
    np.testing.assert_array_equal(img[pad:pad + RES, pad:pad + RES], want[0])
    np.testing.assert_array_equal(img[pad:pad + RES, 3 * (RES + pad) + pad:4 * (RES + pad)], want[3])

    walk = tmp_path / "walk.png"
    rc = client_lib.main(_cli_args(rest=f"127.0.0.1:{server.rest_api_port}", model="faces", interpolate=5,
                                   seed=2, truncation=0.8, out=walk))
    assert rc == 0
    strip = decode_png(walk.read_bytes())
    assert strip.shape == (RES + 2 * pad, 5 * (RES + pad) + pad, 3)
    frames = direct[1].generate(latent_walk(Z_DIM, 5, seed=2, truncation=0.8))
    np.testing.assert_array_equal(strip[pad:pad + RES, pad:pad + RES], frames[0])
    np.testing.assert_array_equal(strip[pad:pad + RES, 4 * (RES + pad) + pad:5 * (RES + pad)], frames[4])

    rc = client_lib.main(_cli_args(server=f"127.0.0.1:{server.port}", model="nobody", out=tmp_path / "x.png"))
    assert rc == 1 and "NOT_FOUND" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def _wait(predicate, timeout=60.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def test_hot_load_new_version(tmp_path, versions, direct):
    base = make_base(tmp_path, versions, [1])
    with Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0.1) as srv, \
            GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        np.testing.assert_array_equal(c.sample("faces", 3, seed=1), direct[1].sample(3, 1))
        # The Pusher's way: copy the new version in while the server runs.
        shutil.copytree(versions[2], base / "2")
        assert _wait(lambda: (2, "AVAILABLE", "") in c.status("faces")), c.status("faces")
        np.testing.assert_array_equal(c.sample("faces", 3, seed=1), direct[2].sample(3, 1))
        assert c.last_version == 2
        assert not np.array_equal(direct[1].sample(3, 1), direct[2].sample(3, 1))
        # Latest policy (1 version): v1 is unloaded after v2 is available.
        assert _wait(lambda: dict((v, s) for v, s, _ in c.status("faces")).get(1) == "END")
        with pytest.raises(ClientError) as err:
            c.sample("faces", 1, seed=1, version=1)
        assert err.value.code == "NOT_FOUND"


def test_broken_version_keeps_previous_serving(tmp_path, versions, direct):
    base = make_base(tmp_path, versions, [1])
    with Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0.1,
                load_retry_interval_s=1.0) as srv, GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a protobuf")   # a half-copied push
        assert _wait(lambda: any(v == 3 and s == "END" and err for v, s, err in c.status("faces")))
        np.testing.assert_array_equal(c.sample("faces", 2, seed=4), direct[1].sample(2, 4))
        (status3,) = c.status("faces", version=3)
        assert status3[1] == "END" and status3[2]
        # The copy completes: the retry loads it and it takes over.
        shutil.rmtree(base / "3")
        shutil.copytree(versions[2], base / "3")
        assert _wait(lambda: (3, "AVAILABLE", "") in c.status("faces"))
        np.testing.assert_array_equal(c.sample("faces", 2, seed=4), direct[2].sample(2, 4))


def test_model_config_file_policies(tmp_path, versions, direct):
    base = make_base(tmp_path, versions, [1, 2])
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
      config {{ name: "both" base_path: "{base}" model_version_policy {{ latest {{ num_versions: 2 }} }}
               version_labels {{ key: "stable" value: 1 }} }}
      config {{ name: "pinned" base_path: "{base}" model_version_policy {{ specific {{ versions: 1 }} }} }}
    }}""")
    from facegan.serving.serve_cli import specs_from_args
    args = argparse.Namespace(model_config_file=str(config), model_base_path=None, model_name=None)
    with Server(specs_from_args(args), port=0, host="127.0.0.1", poll_wait_s=0) as srv, \
            GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        assert [v for v, s, _ in c.status("both")] == [1, 2]
        np.testing.assert_array_equal(c.sample("both", 2, seed=0), direct[2].sample(2, 0))
        np.testing.assert_array_equal(c.sample("both", 2, seed=0, version=1), direct[1].sample(2, 0))
        np.testing.assert_array_equal(c.sample("pinned", 2, seed=0), direct[1].sample(2, 0))
        assert c.status("pinned") == [(1, "AVAILABLE", "")]
        # Version labels (ModelSpec.version_label).
        from tensorflow_serving.apis import predict_pb2
        req = predict_pb2.PredictRequest()
        req.model_spec.name, req.model_spec.signature_name, req.model_spec.version_label = "both", "sample", "stable"
        for k, v in _sample_inputs(num=2, seed=0).items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        resp = c.predictions.Predict(req, timeout=30)
        assert resp.model_spec.version.value == 1
        np.testing.assert_array_equal(tf.make_ndarray(resp.outputs["images"]), direct[1].sample(2, 0))


def test_stop_finishes_in_flight_requests(tmp_path, versions, monkeypatch):
    from facegan.serving import manager
    started = threading.Semaphore(0)
    original = manager.Servable.run

    def slow_run(self, *args, **kwargs):   # a long generator call, so stop() meets in-flight RPCs
        started.release()
        time.sleep(1.0)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(manager.Servable, "run", slow_run)
    base = make_base(tmp_path, versions, [1])
    srv = Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0.1).start()
    c = GrpcClient(f"127.0.0.1:{srv.port}", timeout=60)
    results, errors = [], []

    def call():
        try:
            results.append(c.sample("faces", 4, seed=1).shape[0])
        except ClientError as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(4):
        assert started.acquire(timeout=30)   # all four are inside the server now
    srv.stop(grace=10)
    for t in threads:
        t.join(timeout=60)
    assert results == [4, 4, 4, 4] and not errors, errors
    with pytest.raises(ClientError) as err:
        c.sample("faces", 1, seed=1)
    assert err.value.code == "UNAVAILABLE"
    assert srv.manager._thread is not None and not srv.manager._thread.is_alive()
    c.close()


def test_serve_cli_sigterm(tmp_path, versions, direct):
    """`facegan serve` as users run it: loads, serves `facegan sample`, exits 0 on SIGTERM."""
    base = make_base(tmp_path, versions, [1])
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "facegan.cli", "serve", "--model_base_path", str(base),
                             "--model_name", "faces", "--port", "0", "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
    try:
        port, lines = None, []
        deadline = time.monotonic() + 600   # importing TensorFlow takes minutes on a loaded shared machine
        while time.monotonic() < deadline and port is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving gRPC on"):
                port = int(line.split()[3].rsplit(":", 1)[1])
        assert port, "".join(lines)[-3000:]
        assert any("model faces: v1 AVAILABLE" in ln for ln in lines)
        with GrpcClient(f"127.0.0.1:{port}", timeout=60) as c:
            np.testing.assert_array_equal(c.sample("faces", 3, seed=2), direct[1].sample(3, 2))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-3000:]
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_batching_merges_requests_and_client_falls_back(tmp_path, versions, direct):
    """--enable_batching as TF Serving does it: z requests merge; `sample` (scalars) is refused and
    `facegan sample` transparently draws the same latents itself."""
    from facegan.serving.batching import BatchingParameters, parse_batching_parameters
    base = make_base(tmp_path, versions, [1])
    # A long timeout so the concurrent requests below surely share batches.
    params = BatchingParameters(max_batch_size=64, max_execution_batch_size=16, batch_timeout_micros=300_000,
                                allowed_batch_sizes=[4, 16], enable_large_batch_splitting=True, num_batch_threads=2)
    with Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0, batching=params) as srv, \
            GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        with pytest.raises(ClientError) as err:
            c.sample("faces", 4, seed=3, latents="server")
        assert err.value.code == "INVALID_ARGUMENT" and "at least one dimension" in err.value.message
        np.testing.assert_array_equal(c.sample("faces", 4, seed=3), direct[1].sample(4, 3))   # auto fallback

        zs = [latent_walk(Z_DIM, 3, seed=i) for i in range(8)]
        out, errors = {}, []

        def call(i):
            try:
                out[i] = c.generate("faces", zs[i])
            except ClientError as e:
                errors.append(e)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        for i in range(8):   # merged batches may pick other kernels: last-bit float differences
            assert np.abs(out[i].astype(int) - direct[1].generate(zs[i]).astype(int)).max() <= 1
        assert max(srv.batcher.batch_sizes) == 16                 # 8 x 3 rows merged, padded to 16
        assert set(srv.batcher.batch_sizes) <= {4, 16}
        # A 30-row request is split into executions of <= 16 and reassembled in order.
        n_batches = srv.batcher.batches_run
        z30 = latent_walk(Z_DIM, 30, seed=9)
        got = c.generate("faces", z30)
        assert got.shape[0] == 30 and np.abs(got.astype(int) - direct[1].generate(z30).astype(int)).max() <= 1
        assert srv.batcher.batches_run - n_batches == 2
    # The committed deployment file configures the same batcher.
    parse_batching_parameters((REPO / "serving/configs/batching.config").read_text())


def test_port_in_use_is_a_clear_error(server, tmp_path, versions):
    base = make_base(tmp_path, versions, [1])
    with pytest.raises(OSError, match=f"could not bind the gRPC port 127.0.0.1:{server.port}"):
        Server([ModelSpec("faces", str(base))], port=server.port, host="127.0.0.1", poll_wait_s=0).start()


# -- issue 9: REST types, big requests -------------------------------------------------------------
def _rest_post(server, body: dict):
    import urllib.error
    import urllib.request
    url = f"http://127.0.0.1:{server.rest_api_port}/v1/models/faces:predict"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=json.dumps(body).encode()), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("field,value,fragment", [
    ("num", 2.9, "2.9 (number) cannot be converted to int32"),
    ("num", True, "true (boolean) cannot be converted to int32"),
    ("seed", 1.7, "1.7 (number) cannot be converted to int64"),
    ("truncation", "0.5", '"0.5" (string) cannot be converted to float32'),
    ("seed", 2 ** 70, "outside int64's range"),
])
def test_rest_refuses_type_coercion(server, field, value, fragment):
    """TF Serving's JSON parser does not coerce; neither do we (400 with a message, never 500)."""
    inputs = {"num": 2, "seed": 1, "truncation": 1.0, field: value}
    code, body = _rest_post(server, {"signature_name": "sample", "inputs": inputs})
    assert code == 400 and fragment in body["error"], (code, body)
    code, body = _rest_post(server, {"signature_name": "sample", "inputs": {"num": 2, "seed": 1, "truncation": 1}})
    assert code == 200 and np.asarray(body["outputs"]["images"]).shape == (2, RES, RES, 3)   # ints are floats


def test_rest_nan_z_refused(server):
    code, body = _rest_post(server, {"inputs": {"z": [[float("nan")] * Z_DIM]}})
    assert code == 400 and "z must be finite" in body["error"]


def test_grpc_accepts_large_requests_like_tf_serving(client):
    """A 51 MB request reaches the model (and is refused for its batch size, not its bytes)."""
    z = np.zeros([1_600_000, Z_DIM], np.float32)
    with pytest.raises(ClientError) as err:
        client.predict("faces", "serving_default", {"z": z})
    assert err.value.code == "INVALID_ARGUMENT" and "batch size 1600000" in err.value.message


def test_grpc_receive_limit_is_a_setting(tmp_path, versions):
    base = make_base(tmp_path, versions, [1])
    with Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0,
                max_request_bytes=1 << 20) as srv, GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        with pytest.raises(ClientError) as err:
            c.predict("faces", "serving_default", {"z": np.zeros([80_000, Z_DIM], np.float32)})   # 2.5 MB
        assert err.value.code == "RESOURCE_EXHAUSTED"
        assert c.sample("faces", 2, seed=0).shape == (2, RES, RES, 3)


# -- the other two kinds of the generator contract, served ------------------------------------------
ATTRS = ["Smiling", "Male", "Eyeglasses"]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    export_kind(tiny_conditional_generator(Z_DIM, len(ATTRS), RES), str(root / "cond" / "1"), kind=CONDITIONAL,
                attributes=ATTRS, max_batch=MAX_BATCH)
    export_kind({"a_to_b": tiny_translator(RES, 1, 0), "b_to_a": tiny_translator(RES, 1, 1)},
                str(root / "i2i" / "1"), kind=IMAGE_TO_IMAGE, max_batch=MAX_BATCH)
    srv = Server([ModelSpec("cond", str(root / "cond")), ModelSpec("i2i", str(root / "i2i"))], port=0,
                 host="127.0.0.1", rest_api_port=0, poll_wait_s=0).start()
    yield srv, {k: load_generator(str(root / k / "1")) for k in ("cond", "i2i")}
    srv.stop()


def test_conditional_served_equals_direct(kinds):
    srv, direct = kinds
    z = latent_walk(Z_DIM, 5, seed=1)
    a = np.random.default_rng(0).uniform(0, 1, (5, len(ATTRS))).astype(np.float32)
    want = direct["cond"].generate(z, attributes=a)
    with GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        np.testing.assert_array_equal(c.generate("cond", z, attributes=a), want)
        vec = np.float32([1, 0, 1])
        out = c.predict("cond", "sample", {"num": np.int32(4), "seed": np.int64(3), "truncation": np.float32(0.7),
                                           "attributes": vec})
        np.testing.assert_array_equal(out["images"], direct["cond"].sample(4, 3, 0.7, attributes=vec))
        # A wrong length is refused by the signature's shape [N, 3], naming the attributes.
        for bad, fragment in [(a[:, :2], "not compatible with the signature's [None, 3] (float32 [N, 3] in [0, 1]: "
                                         "Smiling, Male, Eyeglasses)"), (a + 1.5, "in [0, 1]")]:
            with pytest.raises(ClientError) as err:
                c.generate("cond", z, attributes=bad)
            assert err.value.code == "INVALID_ARGUMENT" and fragment in err.value.message
        with pytest.raises(ClientError) as err:
            c.predict("cond", "sample", {"num": np.int32(2), "seed": np.int64(3), "truncation": np.float32(1),
                                         "attributes": np.float32([1, 0])})
        assert err.value.code == "INVALID_ARGUMENT" and "signature's [3] (float32 [3] in [0, 1]" in err.value.message
    rest = RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
    np.testing.assert_array_equal(rest.generate("cond", z, attributes=a), want)


def test_image_to_image_served_equals_direct(kinds):
    srv, direct = kinds
    x = np.random.default_rng(5).integers(0, 256, (4, RES, RES, 3), dtype=np.uint8)
    with GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        for d in ("a_to_b", "b_to_a"):
            np.testing.assert_array_equal(c.translate("i2i", x, d), direct["i2i"].translate(x, d))
        np.testing.assert_array_equal(c.translate("i2i", x), direct["i2i"].translate(x))      # default direction
        for bad in (x[:, :8, :8], x[..., :1], x.astype(np.float32)):
            with pytest.raises(ClientError) as err:
                c.translate("i2i", bad)
            assert err.value.code == "INVALID_ARGUMENT", err.value
    rest = RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
    np.testing.assert_array_equal(rest.translate("i2i", x, "b_to_a"), direct["i2i"].translate(x, "b_to_a"))
