"""Faults `facegan serve` must survive (issue 21, Serving): failed versions tried again, refusing to
start without a servable, REST at array speed, REST body limits and chunked bodies, signatures
that declare their real shapes (and the metadata asset that agrees with GetModelMetadata),
style_mix's crossover bound, and the batching flags/queues.

Unit tests drive the ModelManager, the JSON conversion and the batcher directly; the `e2e` ones
run a server on 127.0.0.1 (free ports) and talk to it over raw sockets, HTTP and gRPC.
"""
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
from tests.serving_testlib import tiny_conditional_generator, tiny_generator, tiny_translator  # noqa: E402

Z_DIM, RES, MAX_BATCH = 8, 16, 32
ATTRS = ["Smiling", "Male", "Eyeglasses"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {
        "plain": export_kind(tiny_generator(Z_DIM, RES), str(root / "plain"), max_batch=MAX_BATCH),
        "cond": export_kind(tiny_conditional_generator(Z_DIM, len(ATTRS), RES), str(root / "cond"),
                            kind=CONDITIONAL, attributes=ATTRS, max_batch=MAX_BATCH),
        "i2i": export_kind({"a_to_b": tiny_translator(RES, 1, 0), "b_to_a": tiny_translator(RES, 1, 1)},
                           str(root / "i2i"), kind=IMAGE_TO_IMAGE, max_batch=MAX_BATCH),
    }


def _corrupt(folder):
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not a protobuf")


def _states(manager, name="faces"):
    try:
        return {v: (st.state, bool(st.error)) for v, st in manager.status(name).items()}
    except ServingError:
        return {}


# -- 7: a version that failed to load is tried again when its folder changes or disappears ----------
def test_failed_version_is_tried_again_when_its_folder_is_replaced(tmp_path, exports):
    base = tmp_path / "faces"
    _corrupt(base / "1")
    m = ModelManager([ModelSpec("faces", str(base))], poll_wait_s=0, max_load_retries=0, load_retry_interval_s=0)
    m.start()
    assert _states(m) == {1: ("END", True)}
    m.poll_once()                                   # no retries left, nothing changed: not tried again
    assert _states(m) == {1: ("END", True)}
    shutil.rmtree(base / "1")                       # a good copy under the same number, between two polls
    shutil.copytree(exports["plain"], base / "1")
    m.poll_once()
    assert _states(m) == {1: ("AVAILABLE", False)}
    assert m.get("faces").version == 1
    m.stop()


def test_failed_version_is_forgotten_when_its_folder_disappears(tmp_path, exports):
    base = tmp_path / "faces"
    shutil.copytree(exports["plain"], base / "1")
    _corrupt(base / "2")
    m = ModelManager([ModelSpec("faces", str(base))], poll_wait_s=0, max_load_retries=0, load_retry_interval_s=0)
    m.start()
    assert _states(m) == {2: ("END", True)}          # the latest policy aspires v2 only; v1 never loaded
    shutil.rmtree(base / "2")
    m.poll_once()                                    # gone: its failure is dropped, v1 (now the latest) loads
    assert _states(m) == {1: ("AVAILABLE", False)}
    shutil.copytree(exports["plain"], base / "2")    # back, good this time
    m.poll_once()
    assert _states(m)[2] == ("AVAILABLE", False)
    m.stop()


def test_unchanged_failed_version_keeps_its_retry_budget(tmp_path):
    base = tmp_path / "faces"
    _corrupt(base / "1")
    m = ModelManager([ModelSpec("faces", str(base))], poll_wait_s=0, max_load_retries=1, load_retry_interval_s=0)
    problems = m.load_initial()
    assert list(problems) == ["faces"] and "version 1 failed to load (2 attempts)" in problems["faces"]
    assert m.status("faces")[1].failures == 2         # the first attempt and one retry, then no more
    m.poll_once()
    assert m.status("faces")[1].failures == 2
    m.stop()


# -- 8: no servable at start-up: refuse to start, one line ------------------------------------------
@pytest.mark.parametrize("case,fragment", [
    ("corrupt_only", "model faces: version 3 failed to load (2 attempts)"),
    ("missing_base", "does not exist"),
    ("empty_base", "no versions under"),
])
def test_server_refuses_to_start_without_a_servable(tmp_path, case, fragment):
    base = tmp_path / "faces"
    if case == "corrupt_only":
        _corrupt(base / "3")
    elif case == "empty_base":
        base.mkdir()
    srv = server_lib.Server([ModelSpec("faces", str(base))], port=0, host="127.0.0.1", poll_wait_s=0,
                            load_retry_interval_s=0.05, max_load_retries=1)
    with pytest.raises(server_lib.StartupError) as err:
        srv.start()
    msg = str(err.value)
    assert msg.startswith("no servable became available at start-up") and fragment in msg, msg
    assert "\n" not in msg and srv.port is None     # one line, and no port was opened


@pytest.fixture
def busy_port():
    """A port in use: a `facegan serve` that got past its start-up checks fails to bind it at once
    (rather than serving until stopped)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def _serve_main(argv, capsys):
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = serve_cli.main(parser.parse_args(argv))
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    out = capsys.readouterr()
    return rc, [ln for ln in out.out.splitlines() if ln.strip()]


def test_serve_cli_exits_1_with_one_line(tmp_path, capsys, busy_port):
    missing = tmp_path / "nowhere"
    rc, lines = _serve_main(["--model_base_path", str(missing), "--port", str(busy_port), "--host", "127.0.0.1",
                             "--file_system_poll_wait_seconds", "0"], capsys)
    assert rc == 1 and len(lines) == 1, lines
    assert lines[0] == (f"facegan serve: no servable became available at start-up: model facegan: "
                        f"base path {missing} does not exist")
    _corrupt(tmp_path / "bad" / "1")
    rc, lines = _serve_main(["--model_base_path", str(tmp_path / "bad"), "--port", str(busy_port),
                             "--host", "127.0.0.1", "--max_num_load_retries", "0"], capsys)
    assert rc == 1 and len(lines) == 1 and "version 1 failed to load (1 attempt)" in lines[0], lines


# -- 9: REST JSON checked as whole arrays -------------------------------------------------------------
def _spec(shape, dtype):
    return tf.TensorSpec(shape, dtype)


def test_rest_json_is_checked_as_whole_arrays(monkeypatch):
    """A valid array never goes value by value (that path cost ~37 us per value: 3.3 s for one
    translate of 16 images at 32 px); the slow path remains only for bodies it must explain."""
    def per_value(*a, **k):
        raise AssertionError("value-by-value check on a valid array")
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).tolist()
    z = np.random.default_rng(1).standard_normal((16, Z_DIM)).tolist()
    with monkeypatch.context() as mp:
        mp.setattr(rest_api, "_check_json_types", per_value)
        u8 = rest_api._from_json(images, _spec([None, 32, 32, 3], tf.uint8), "images", may_hold_booleans=False)
        f32 = rest_api._from_json(z, _spec([None, Z_DIM], tf.float32), "z", may_hold_booleans=False)
        i64 = rest_api._from_json(2 ** 62, _spec([], tf.int64), "seed", may_hold_booleans=False)
    np.testing.assert_array_equal(u8, np.asarray(images, np.uint8))
    assert u8.dtype == np.uint8 and f32.dtype == np.float32 and i64 == 2 ** 62
    np.testing.assert_array_equal(f32, np.asarray(z, np.float32))
    # What TF Serving refuses is still refused, with the value named (the slow path explains it).
    for value, dtype, fragment in [([1, 2.0], tf.int32, "2.0 (number) cannot be converted to int32"),
                                   ([[1, True]], tf.float32, "true (boolean) cannot be converted to float32"),
                                   ([256], tf.uint8, "outside uint8's range [0, 255]"),
                                   ([2 ** 70], tf.int64, "outside int64's range"),
                                   (["0.5"], tf.float32, '"0.5" (string) cannot be converted'),
                                   ([[1, 2], [3]], tf.float32, "cannot be converted to float32")]:
        with pytest.raises(ServingError, match=re.escape(fragment)):
            rest_api._from_json(value, _spec(None, dtype), "x", may_hold_booleans=b"true" in json.dumps(value).encode())


# -- 12: style_mix's crossover bound --------------------------------------------------------------
@pytest.fixture(scope="module")
def style_export(tmp_path_factory):
    from facegan.trainer.networks import stylegan2 as S
    cfg = S.StyleGANConfig(resolution=16, z_dim=Z_DIM, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    G, _ = S.build_stylegan(cfg)
    path = str(tmp_path_factory.mktemp("style") / "1")
    export_kind(G, path, max_batch=MAX_BATCH, z_dim=Z_DIM)
    return load_generator(path)


def test_crossover_above_the_layers_is_refused(style_export):
    gen = style_export
    n = int(gen.metadata["num_ws"])
    args = dict(seed_a=tf.constant(1, tf.int64), seed_b=tf.constant(2, tf.int64), num=tf.constant(2),
                truncation=tf.constant(1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"crossover must be in \[0, {n}\]"):
        gen.signatures["style_mix"](crossover=tf.constant(n + 1), **args)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"crossover must be in \[0, {n}\]"):
        gen.signatures["style_mix_cutoff"](crossover=tf.constant(99), truncation_cutoff=tf.constant(1), **args)
    with pytest.raises(ValueError, match=f"at most {n}"):
        gen.style_mix(1, 2, 2, 99)
    np.testing.assert_array_equal(gen.style_mix(1, 2, 2, n), gen.sample(2, 1))    # n: every layer from seed_a
    np.testing.assert_array_equal(gen.style_mix(1, 2, 2, 0), gen.sample(2, 2))


def test_style_mix_grid_sends_no_crossover_past_the_layers():
    """The CLI's first row (seed_a's images) comes from `sample`, not a huge crossover."""
    from facegan.serving import client as client_lib
    calls = []

    class Fake:
        def sample(self, model, num, seed, truncation, version, truncation_cutoff=None):
            calls.append(("sample", seed, truncation_cutoff))
            return np.zeros([num, 4, 4, 3], np.uint8)

        def style_mix(self, model, seed_a, seed_b, num, crossover, truncation, version, truncation_cutoff=None):
            calls.append(("style_mix", crossover, truncation_cutoff))
            return np.zeros([num, 4, 4, 3], np.uint8)

    rows = client_lib.style_mix_rows(Fake(), "sg", 1, 2, 3, [2, 4], 0.7, None, truncation_cutoff=3)
    assert len(rows) == 4
    assert calls == [("sample", 1, 3), ("style_mix", 2, 3), ("style_mix", 4, 3), ("style_mix", 0, 3)]


# -- 13: batching flags and queues --------------------------------------------------------------------
def test_batching_file_without_enable_batching_is_refused(tmp_path, capsys, busy_port, exports):
    shutil.copytree(exports["plain"], tmp_path / "1")
    rc, lines = _serve_main(["--model_base_path", str(tmp_path), "--port", str(busy_port), "--host", "127.0.0.1",
                             "--batching_parameters_file", "serving/configs/batching.config"], capsys)
    assert rc == 2 and lines == ["facegan serve: --batching_parameters_file is only read with --enable_batching "
                                 "(add --enable_batching, or drop the file)"]


def test_batcher_drops_emptied_queues():
    """A queue holds its servable: kept forever, every unloaded version would stay in memory."""
    import gc
    import weakref
    from facegan.serving.batching import Batcher, BatchingParameters

    class FakeServable:
        max_batch = 8

        def check(self, signature, inputs):
            pass

        def execute(self, signature, inputs, output_filter=()):
            return {"images": inputs["z"] * 2}

    batcher = Batcher(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    try:
        s = FakeServable()
        out = batcher.run(s, "serving_default", {"z": np.ones([3, 2], np.float32)})
        np.testing.assert_array_equal(out["images"], np.full([3, 2], 2, np.float32))
        ref = weakref.ref(s)
        del s
        gc.collect()
        assert batcher._queues == {} and ref() is None
    finally:
        batcher.stop()


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


def test_jsoncodec_reads_what_the_standard_parser_reads():
    """orjson (when installed) must not change what a body means: integers past 64 bits stay exact
    (orjson would read them as floats), NaN literals parse, float32 values survive the round trip."""
    from facegan.serving import jsoncodec
    big = 2 ** 70
    assert jsoncodec.loads(json.dumps({"seed": big, "z": [1.5, 2]}).encode()) == {"seed": big, "z": [1.5, 2]}
    assert np.isnan(jsoncodec.loads(b"[NaN]")[0])
    z = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32)
    back = np.asarray(jsoncodec.loads(jsoncodec.dumps({"z": z}))["z"], np.float32)
    np.testing.assert_array_equal(back, z)
    u8 = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    assert jsoncodec.loads(jsoncodec.dumps(u8)) == u8.tolist()
