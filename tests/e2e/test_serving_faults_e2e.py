"""Faults `facegan serve` must survive over real HTTP: REST body limits (413, chunked) and shapes through GetModelMetadata."""
import argparse
import http.client
import json
import re
import shutil
import signal
import socket
import threading
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from facegan.generator import CONDITIONAL, IMAGE_TO_IMAGE, load_generator  # noqa: E402
from facegan.generator import export_generator as export_kind  # noqa: E402
from facegan.serving import rest_api, serve_cli  # noqa: E402
from facegan.serving import server as server_lib  # noqa: E402
from facegan.serving.manager import ModelManager, ModelSpec, ServingError  # noqa: E402
from tests.testlib.serving import tiny_conditional_generator, tiny_generator, tiny_translator  # noqa: E402
from tests.testlib.serving_faults import ATTRS, MAX_BATCH, RES, Z_DIM, exports



# -- e2e: REST bodies, shapes through GetModelMetadata -------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, exports):
    root = tmp_path_factory.mktemp("served")
    for name in ("plain", "cond", "i2i"):
        shutil.copytree(exports[name], root / name / "1")
    srv = server_lib.Server([ModelSpec(n, str(root / n)) for n in ("plain", "cond", "i2i")], port=0,
                            host="127.0.0.1", rest_api_port=0, poll_wait_s=0, rest_max_body_bytes=64 << 10).start()
    yield srv, {n: load_generator(exports[n]) for n in exports}
    srv.stop()


def _raw_http(port, data: bytes, reads=1, timeout=60):
    """Send raw bytes on one connection; read `reads` responses (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        out = []
        for _ in range(reads):
            status = int(f.readline().split()[1])
            headers = {}
            while True:
                line = f.readline().decode("latin-1").strip()
                if not line:
                    break
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            out.append((status, json.loads(f.read(int(headers["content-length"]))), headers))
        return out


def _sample_body(num=2, seed=4):
    return json.dumps({"signature_name": "sample", "inputs": {"num": num, "seed": seed, "truncation": 1.0}}).encode()


def _chunked(body: bytes, size=7) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


pytestmark_e2e = pytest.mark.e2e


def _shape_text(tensor_info) -> str:
    from tensorflow.python.framework import dtypes
    dims = tensor_info.tensor_shape.dim
    if tensor_info.tensor_shape.unknown_rank:
        shape = "any shape"
    else:
        shape = "[" + ", ".join("N" if i == 0 and d.size == -1 else "?" if d.size == -1 else str(d.size)
                                for i, d in enumerate(dims)) + "]"
    return f"{dtypes.as_dtype(tensor_info.dtype).name} {shape}"


@pytestmark_e2e
def test_rest_over_the_limit_is_413_from_content_length(served):
    srv, _ = served
    # The header alone: answered without sending (or reading) a byte of the body.
    (status, body, headers), = _raw_http(srv.rest_api_port, b"POST /v1/models/plain:predict HTTP/1.1\r\n"
                                         b"Host: x\r\nContent-Length: 100000000\r\n\r\n", timeout=30)
    assert status == 413 and "--rest_api_max_body_bytes" in body["error"] and "65536" in body["error"]
    assert headers.get("connection") == "close"
    # A client that sends its whole (too large) body first still reads the 413.
    conn = http.client.HTTPConnection("127.0.0.1", srv.rest_api_port, timeout=60)
    conn.request("POST", "/v1/models/plain:predict", body=b" " * (200 << 10))
    resp = conn.getresponse()
    assert resp.status == 413 and "larger than the limit" in json.loads(resp.read())["error"]
    conn.close()
    # Expect: 100-continue gets the 413 instead of "100 Continue".
    (status, _, _), = _raw_http(srv.rest_api_port, b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\n"
                                b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n", timeout=30)
    assert status == 413
    (status, body, _), = _raw_http(srv.rest_api_port, b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(_sample_body()) + _sample_body())
    assert status == 200 and np.asarray(body["outputs"]["images"]).shape == (2, RES, RES, 3)   # still serving


@pytestmark_e2e
def test_rest_chunked_body_is_read_and_keeps_the_connection(served):
    srv, direct = served
    first = (b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             + _chunked(_sample_body(2, 4)))
    second = (b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % len(_sample_body(3, 5)) + _sample_body(3, 5))
    (s1, b1, _), (s2, b2, _) = _raw_http(srv.rest_api_port, first + second, reads=2)
    assert (s1, s2) == (200, 200), (b1, b2)
    np.testing.assert_array_equal(np.asarray(b1["outputs"]["images"], np.uint8), direct["plain"].sample(2, 4))
    np.testing.assert_array_equal(np.asarray(b2["outputs"]["images"], np.uint8), direct["plain"].sample(3, 5))
    # Chunked past the limit: 413 as well.
    big = b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + \
        _chunked(b" " * (70 << 10), size=16 << 10)
    (status, body, _), = _raw_http(srv.rest_api_port, big)
    assert status == 413 and "at least" in body["error"]


@pytestmark_e2e
def test_rest_images_round_trip_at_array_speed(served):
    """translate over REST equals the SavedModel; the request goes through the whole-array path."""
    from facegan.serving.client import RestClient
    srv, direct = served
    x = np.random.default_rng(5).integers(0, 256, (8, RES, RES, 3), dtype=np.uint8)
    rest = RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
    np.testing.assert_array_equal(rest.translate("i2i", x, "b_to_a"), direct["i2i"].translate(x, "b_to_a"))
    z = np.random.default_rng(6).standard_normal((4, Z_DIM)).astype(np.float32)
    np.testing.assert_array_equal(rest.generate("plain", z), direct["plain"].generate(z))


@pytestmark_e2e
def test_rest_images_are_read_as_arrays_and_server_timing_is_asked_for(served, monkeypatch):
    """A large image batch is read from the JSON text as one array by the server and by the client
    (jsoncodec), with the same pixels; a request that asks for Server-Timing gets the phases and
    the same answer; one that does not gets TF Serving's headers only."""
    from facegan.serving import jsoncodec
    from facegan.serving.client import RestClient
    srv, direct = served
    read_as_array = []
    real = jsoncodec._integer_array
    monkeypatch.setattr(jsoncodec, "_integer_array", lambda text: read_as_array.append(real(text)) or read_as_array[-1])
    x = np.random.default_rng(7).integers(0, 256, (16, RES, RES, 3), dtype=np.uint8)
    want = direct["i2i"].translate(x, "b_to_a")
    rest = RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
    np.testing.assert_array_equal(rest.translate("i2i", x, "b_to_a"), want)
    assert [type(a) for a in read_as_array] == [np.ndarray, np.ndarray]     # the request, the answer
    body = json.dumps({"signature_name": "translate_b_to_a", "inputs": {"images": x.tolist()}}).encode()
    answers = {}
    for timing in (False, True):
        head = (b"POST /v1/models/i2i:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + (rest_api.TIMING_REQUEST_HEADER.encode() + b": 1\r\n" if timing else b"")
                + b"Content-Length: %d\r\n\r\n" % len(body))
        [(status, out, headers)] = _raw_http(srv.rest_api_port, head + body)
        assert status == 200
        answers[timing] = (out, headers)
    assert answers[False][0] == answers[True][0]
    np.testing.assert_array_equal(np.asarray(answers[True][0]["outputs"], np.uint8), want)
    assert "server-timing" not in answers[False][1]
    phases = dict(p.split(";dur=") for p in answers[True][1]["server-timing"].split(", "))
    assert list(phases) == list(rest_api.PHASES) and all(float(v) >= 0 for v in phases.values())
    assert float(phases["run"]) > 0


@pytestmark_e2e
def test_signatures_declare_real_shapes_and_the_asset_agrees(served):
    """GetModelMetadata (over gRPC) and assets/facegan_metadata.json list the same signatures,
    inputs, outputs, dtypes and shapes, for every kind."""
    from facegan.serving.client import GrpcClient
    srv, direct = served
    with GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as c:
        for model in ("plain", "cond", "i2i"):
            # (TF Serving lists the SavedModel's internal __saved_model_init_op too)
            sigs = {k: v for k, v in c.signature_defs(model).items() if not k.startswith("__")}
            asset = direct[model].metadata["signatures"]
            assert set(sigs) == set(asset), model
            for name, sig in sigs.items():
                for side in ("inputs", "outputs"):
                    got = {k: _shape_text(v) for k, v in getattr(sig, side).items()}
                    want = {k: v.split(" in ")[0] for k, v in asset[name][side].items()}   # drop range notes
                    assert got == want, (model, name, side)
        cond, i2i = c.signature_defs("cond"), c.signature_defs("i2i")
    assert _shape_text(i2i["translate_a_to_b"].inputs["images"]) == f"uint8 [N, {RES}, {RES}, 3]"
    assert _shape_text(cond["serving_default"].inputs["attributes"]) == f"float32 [N, {len(ATTRS)}]"
    assert _shape_text(cond["sample"].inputs["attributes"]) == f"float32 [{len(ATTRS)}]"
    assert "attributes" not in direct["cond"].metadata["signatures"]["attribute_names"]["inputs"]
