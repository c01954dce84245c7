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
from tests.testlib.serving import tiny_conditional_generator, tiny_generator, tiny_translator  # noqa: E402
from tests.testlib.serving_faults import ATTRS, MAX_BATCH, RES, Z_DIM, exports


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
