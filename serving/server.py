"""`facegan serve`: a local server with TF Serving's gRPC API (and its REST predict API).

For development and tests where the `tensorflow_model_server` binary is not available. It uses
the generated servicers of `tensorflow-serving-api`, so any TF Serving client (including
`facegan sample`) works against it unchanged:

- PredictionService: `Predict`, `GetModelMetadata` (signature_def); Classify/Regress/
  MultiInference answer UNIMPLEMENTED (a generator has no such signatures).
- ModelService: `GetModelStatus`; HandleReloadConfigRequest answers UNIMPLEMENTED.
- REST (optional `--rest_api_port`): `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`
  (row "instances" or columnar "inputs" JSON), `GET /v1/models/<name>[...]` (status) and
  `GET .../metadata`.

With `--enable_batching [--batching_parameters_file F]` concurrent requests are merged like TF
Serving's batching session (serving/batching.py), including its refusal of scalar inputs.

Models come from `--model_base_path` + `--model_name` (TF Serving's flags) or a TF Serving
`--model_config_file`; versions are watched every `--file_system_poll_wait_seconds` (see
serving/manager.py). Status codes follow TF Serving: unknown model or version NOT_FOUND, unknown
signature FAILED_PRECONDITION (TF Serving's predict_util), bad inputs INVALID_ARGUMENT. Requests
run on a thread pool; SIGTERM/SIGINT stop accepting new RPCs and let in-flight ones finish. Like
TF Serving, the server refuses to start (StartupError; `facegan serve` exits 1 with one line) when
a model has no version that loads.

REST JSON is converted as whole arrays (serving/jsoncodec.py); bodies above
`--rest_api_max_body_bytes` get 413 from their Content-Length before being read, chunked bodies
are read to their end (the connection stays usable), other transfer codings get 501.
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import signal
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional

import grpc
import numpy as np

from facegan.serving import jsoncodec
from facegan.serving.batching import Batcher, BatchingParameters, parse_batching_parameters
from facegan.serving.manager import ModelManager, ModelSpec, ServingError, parse_model_config

log = logging.getLogger("facegan.serving")

# TF Serving's server builder sets the gRPC message limit to INT32_MAX (~2 GB), not gRPC's 4 MB.
GRPC_MAX_RECEIVE_BYTES = 2 ** 31 - 1
# Largest REST request body (JSON text is ~4 bytes per uint8 value: 64 MiB holds ~16M values, e.g.
# 256 images at 128 px); larger ones get 413 from their Content-Length, before being read.
DEFAULT_REST_MAX_BODY_BYTES = 64 << 20

_STATE_CODES = {"UNKNOWN": 0, "START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
_HTTP_CODES = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
               grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503}


def _version_of(spec):
    """(version or None, label) from a ModelSpec proto's version choice."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), ""
    if choice == "version_label":
        return None, spec.version_label
    return None, ""


def _servicers():
    # Imported lazily: tensorflow_serving.apis pulls in TensorFlow (~11 s).
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def __init__(self, manager: ModelManager, run):
            self.manager, self.run = manager, run

        def Predict(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                servable = self.manager.get(request.model_spec.name, version, label)
                signature = request.model_spec.signature_name or "serving_default"
                inputs = {}
                for alias, proto in request.inputs.items():
                    try:
                        inputs[alias] = tf.make_ndarray(proto)
                    except Exception as e:  # noqa: BLE001 - malformed TensorProto
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"tensor parsing error: {alias}: {e}") from None
                outputs = self.run(servable, signature, inputs, list(request.output_filter))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature
                for k, v in outputs.items():
                    response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def GetModelMetadata(self, request, context):
            try:
                fields = list(request.metadata_field)
                if not fields:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       "GetModelMetadataRequest must specify at least one metadata_field")
                for f in fields:
                    if f != "signature_def":
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {f} is not supported")
                version, label = _version_of(request.model_spec)
                servable = self.manager.get(request.model_spec.name, version, label)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, v in servable.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(v)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.metadata["signature_def"].Pack(sig_map)
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def Classify(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

        def Regress(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

        def MultiInference(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        def __init__(self, manager: ModelManager):
            self.manager = manager

        def GetModelStatus(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                if label:
                    version = self.manager.get(request.model_spec.name, None, label).version
                states = self.manager.status(request.model_spec.name, version)
                response = get_model_status_pb2.GetModelStatusResponse()
                for v in sorted(states):
                    st = states[v]
                    mvs = response.model_version_status.add()
                    mvs.version = v
                    mvs.state = _STATE_CODES[st.state]
                    mvs.status.error_code = 2 if st.error else 0   # UNKNOWN for a failed load
                    mvs.status.error_message = st.error
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def HandleReloadConfigRequest(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "restart facegan serve to change its model config")

    return PredictionServicer, ModelServicer, prediction_service_pb2_grpc, model_service_pb2_grpc


# -- REST (TF Serving's JSON predict API) -------------------------------------------------------------
_REST_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<verb>:predict|/metadata)?$")


def _json_value(arr: np.ndarray):
    """A Predict output as JSON-ready data: numeric arrays stay numpy (jsoncodec writes them from
    their buffer); strings are valid UTF-8 text, else {"b64": ...} (TF Serving's binary form)."""
    if arr.dtype == object:
        def enc(b):
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(b).decode("ascii")}
        return np.vectorize(enc, otypes=[object])(arr).tolist() if arr.ndim else enc(arr.item())
    return arr


def _json_leaf_ok(v, dtype, bounds) -> bool:
    """Whether one JSON scalar is of the input's type, as TF Serving's JSON parser decides.

    TF Serving does not coerce: an int input takes JSON integers only (not 2.9, 2.0 or true) within
    the dtype's range (`bounds`), a float input takes numbers (not strings or booleans), a bool
    input booleans.
    """
    if dtype.is_bool:
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if dtype.is_integer:
        return isinstance(v, int) and bounds[0] <= v <= bounds[1]
    if dtype.is_floating:
        return isinstance(v, (int, float))
    return False


def _check_json_types(value, dtype, alias: str, bounds=None):
    """Value-by-value check (the slow path: bodies the whole-array check could not decide); raises
    INVALID_ARGUMENT naming the first value of the wrong kind."""
    if bounds is None:   # tf.DType.min/max cost ~37 us each: read them once per input, not per value
        bounds = (dtype.min, dtype.max) if dtype.is_integer else (None, None)
    if isinstance(value, list):
        for v in value:
            _check_json_types(v, dtype, alias, bounds)
    elif not _json_leaf_ok(value, dtype, bounds):
        kind = {bool: "boolean", str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)
        extra = (f" (outside {dtype.name}'s range [{bounds[0]}, {bounds[1]}])"
                 if dtype.is_integer and isinstance(value, int) and not isinstance(value, bool) else "")
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias!r}: JSON value {json.dumps(value)[:40]} ({kind}) cannot be converted to "
                           f"{dtype.name}{extra}")


def _from_json(value, spec, alias: str = "", may_hold_booleans: bool = True) -> np.ndarray:
    """A JSON input as the signature's dtype: whole-array checks first (jsoncodec.numeric_array),
    the value-by-value check only where those cannot decide (a wrong value, or booleans that
    numpy would read as numbers)."""
    def dec(v):
        if isinstance(v, dict) and "b64" in v:
            return base64.b64decode(v["b64"])
        return v.encode("utf-8") if isinstance(v, str) else v
    if spec.dtype.name == "string":
        return np.vectorize(dec, otypes=[object])(np.asarray(value, dtype=object))
    if not may_hold_booleans or spec.dtype.is_bool:
        arr = jsoncodec.numeric_array(value, spec.dtype.as_numpy_dtype)
        if arr is not None:
            return arr
    _check_json_types(value, spec.dtype, alias)
    try:
        return np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias!r}: JSON value cannot be converted to {spec.dtype.name}: {e}") from None


class HttpError(Exception):
    """A REST failure that is about the HTTP message itself (size, framing), not the model.
    close: the connection cannot be reused (part of the body is still unread)."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def _early_batch_check(servable, specs, raw: dict):
    """Refuse an oversized batch from the parsed JSON's list length, before converting it (a
    60 MB body of latents would otherwise be turned into arrays first)."""
    for k, v in raw.items():
        spec = specs.get(k)
        if (spec is not None and isinstance(v, list) and (spec.shape.rank or 0) >= 2 and spec.shape[0] is None
                and len(v) > servable.max_batch):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {k!r}: batch size {len(v)} is outside [1, {servable.max_batch}]")


# How long a refused request's unread body is still read and dropped before the connection closes,
# so that a client that sends its whole body before reading gets the 413 instead of a reset.
_DISCARD_SECONDS = 2.0
_MAX_CHUNK_LINE = 1024


def _make_rest_handler(manager: ModelManager, run, max_body_bytes: int = DEFAULT_REST_MAX_BODY_BYTES):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # route to logging, not stderr spam
            log.debug("rest: " + fmt, *args)

        def _send(self, code: int, body: dict, close: bool = False, unread: bool = False):
            """unread: the request body was not (fully) read: close, after dropping the rest."""
            close = close or unread
            data = jsoncodec.dumps(body)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
            if unread:
                self._discard_unread()

        def _discard_unread(self):
            """After a refusal with the body unread: send our answer (FIN), then drop what the
            client still sends for a short while, so it reads the answer rather than a reset."""
            import socket
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + _DISCARD_SECONDS
                while time.monotonic() < deadline:
                    self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                    if not self.connection.recv(1 << 16):
                        break
            except OSError:
                pass

        def _too_large(self, size: int, what: str) -> HttpError:
            return HttpError(413, f"request body {what}{size} bytes is larger than the limit of {max_body_bytes} "
                                  f"bytes (--rest_api_max_body_bytes)", close=True)

        def handle_expect_100(self):
            # "Expect: 100-continue": refuse an oversized body before the client sends it.
            length = self.headers.get("Content-Length")
            if length and length.strip().isdigit() and int(length) > max_body_bytes:
                err = self._too_large(int(length), "of ")
                self._send(err.status, {"error": err.message}, unread=True)
                return False
            return super().handle_expect_100()

        def _read_body(self) -> bytes:
            """The request body: Content-Length (refused above the limit before any of it is read),
            or chunked transfer coding (read to its end, so the connection's next request parses)."""
            coding = self.headers.get("Transfer-Encoding")
            if coding is not None:
                if coding.strip().lower() != "chunked":
                    raise HttpError(501, f"Transfer-Encoding {coding!r} is not supported (only chunked)", close=True)
                return self._read_chunked()
            length = self.headers.get("Content-Length")
            if length is None:
                return b""
            if not length.strip().isdigit():
                raise HttpError(400, f"Content-Length {length!r} is not a byte count", close=True)
            size = int(length)
            if size > max_body_bytes:
                raise self._too_large(size, "of ")
            data = self.rfile.read(size)
            if len(data) < size:
                raise HttpError(400, f"request body ended after {len(data)} of {size} bytes", close=True)
            return data

        def _read_chunked(self) -> bytes:
            parts, total = [], 0
            while True:
                line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
                if not line.endswith(b"\n") or len(line) > _MAX_CHUNK_LINE:
                    raise HttpError(400, "malformed chunked body (bad or missing chunk size line)", close=True)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError(400, f"malformed chunked body (chunk size {line[:40]!r})", close=True) from None
                if size < 0:
                    raise HttpError(400, "malformed chunked body (negative chunk size)", close=True)
                if size == 0:
                    break
                total += size
                if total > max_body_bytes:
                    raise self._too_large(total, "of at least ")
                data = self.rfile.read(size)
                if len(data) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise HttpError(400, "malformed chunked body (chunk shorter than its size)", close=True)
                parts.append(data)
            while True:   # trailer fields, up to the empty line
                line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
                if line in (b"\r\n", b"\n", b""):
                    break
                if len(line) > _MAX_CHUNK_LINE:
                    raise HttpError(400, "malformed chunked body (trailer line too long)", close=True)
            return b"".join(parts)

        def _route(self):
            m = _REST_PATH.match(self.path)
            if not m:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"unknown path {self.path}")
            version = int(m["version"]) if m["version"] else None
            return m["name"], version, m["label"] or "", m["verb"] or ""

        def do_GET(self):
            try:
                name, version, label, verb = self._route()
                if verb == ":predict":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "predict needs POST")
                if verb == "/metadata":
                    from google.protobuf import json_format
                    s = manager.get(name, version, label)
                    sigs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
                            for k, v in s.signature_defs.items()}
                    return self._send(200, {"model_spec": {"name": name, "version": str(s.version)},
                                            "metadata": {"signature_def": {"signature_def": sigs}}})
                if label:
                    version = manager.get(name, None, label).version
                states = manager.status(name, version)
                return self._send(200, {"model_version_status": [
                    {"version": str(v), "state": st.state,
                     "status": {"error_code": "UNKNOWN" if st.error else "OK", "error_message": st.error}}
                    for v, st in sorted(states.items())]})
            except ServingError as e:
                self._send(_HTTP_CODES.get(e.code, 500), {"error": e.message})
            except Exception as e:  # noqa: BLE001 - never kill the handler thread silently
                log.exception("REST request failed")
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

        def do_POST(self):
            try:
                body_bytes = self._read_body()   # first: an unread body would be parsed as the next request
                name, version, label, verb = self._route()
                if verb != ":predict":
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"unknown POST path {self.path}")
                try:
                    body = jsoncodec.loads(body_bytes or b"{}")
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed JSON body: {e}") from None
                if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       'JSON body must be an object with exactly one of "instances" or "inputs"')
                servable = manager.get(name, version, label)
                signature = body.get("signature_name") or "serving_default"
                if signature not in servable.input_specs:
                    servable.check(signature, {})   # raises FAILED_PRECONDITION with the names
                specs = servable.input_specs[signature]
                if "inputs" in body:
                    raw = body["inputs"]
                    if not isinstance(raw, dict):
                        if len(specs) != 1:
                            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                               f'"inputs" must name the signature inputs {sorted(specs)}')
                        raw = {next(iter(specs)): raw}
                else:
                    inst = body["instances"]
                    if not isinstance(inst, list) or not inst:
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '"instances" must be a non-empty list')
                    if all(isinstance(i, dict) for i in inst) and not (len(specs) == 1 and "b64" in inst[0]):
                        keys = set(inst[0])
                        if any(set(i) != keys for i in inst):
                            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "every instance must have the same keys")
                        raw = {k: [i[k] for i in inst] for k in keys}
                    elif len(specs) == 1:
                        raw = {next(iter(specs)): inst}
                    else:
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"instances must be objects naming the inputs {sorted(specs)}")
                _early_batch_check(servable, specs, raw)
                bools = jsoncodec.may_hold_booleans(body_bytes)
                inputs = {k: _from_json(v, specs[k], k, bools) if k in specs else np.asarray(v) for k, v in raw.items()}
                outputs = run(servable, signature, inputs, ())
                if "inputs" in body:
                    payload = {k: _json_value(v) for k, v in outputs.items()}
                    return self._send(200, {"outputs": payload if len(payload) > 1 else next(iter(payload.values()))})
                if len(outputs) == 1:
                    preds = _json_value(next(iter(outputs.values())))
                else:
                    cols = {k: _json_value(v) for k, v in outputs.items()}
                    preds = [{k: cols[k][i] for k in cols} for i in range(len(next(iter(cols.values()))))]
                return self._send(200, {"predictions": preds})
            except HttpError as e:
                self._send(e.status, {"error": e.message}, unread=e.close)
            except ServingError as e:
                self._send(_HTTP_CODES.get(e.code, 500), {"error": e.message})
            except Exception as e:  # noqa: BLE001 - never kill the handler thread silently
                log.exception("REST request failed")
                self._send(500, {"error": f"{type(e).__name__}: {e}"}, close=True)

    return Handler


# -- the server ---------------------------------------------------------------------------------
class StartupError(RuntimeError):
    """The server cannot start serving (TF Serving exits non-zero in the same cases)."""


class Server:
    """gRPC (+ optional REST) server over a ModelManager. Bind to 127.0.0.1 in tests.

    port 0 binds any free port (read `.port` after start); rest_api_port None disables REST,
    0 picks a free one (read `.rest_api_port`).
    """

    def __init__(self, specs: List[ModelSpec], port: int = 8500, rest_api_port: Optional[int] = None,
                 host: str = "0.0.0.0",
                 poll_wait_s: float = 1.0, max_workers: int = 16, max_batch: Optional[int] = None,
                 max_request_bytes: int = GRPC_MAX_RECEIVE_BYTES, batching: Optional[BatchingParameters] = None,
                 load_retry_interval_s: float = 5.0, max_load_retries: int = 5,
                 rest_max_body_bytes: int = DEFAULT_REST_MAX_BODY_BYTES):
        self.manager = ModelManager(specs, poll_wait_s=poll_wait_s, max_batch=max_batch,
                                    load_retry_interval_s=load_retry_interval_s, max_load_retries=max_load_retries)
        self.rest_max_body_bytes = rest_max_body_bytes
        self.batching = batching
        self.batcher: Optional[Batcher] = None
        self.host, self.requested_port, self.rest_api_port = host, port, rest_api_port
        self.max_workers, self.max_request_bytes = max_workers, max_request_bytes
        self.port: Optional[int] = None
        self._grpc = None
        self._http: Optional[ThreadingHTTPServer] = None
        self._http_thread: Optional[threading.Thread] = None

    def start(self) -> "Server":
        """Load every model, then open the ports. Like TF Serving, refuse to start (StartupError
        naming each model and why) when a model has no version that loads: a missing base path,
        no versions, or only versions that failed every load attempt."""
        PredictionServicer, ModelServicer, ps_grpc, ms_grpc = _servicers()
        problems = self.manager.load_initial()   # models are loaded before the port opens
        if problems:
            self.manager.stop()
            raise StartupError("no servable became available at start-up: "
                               + "; ".join(f"model {n}: {why}" for n, why in sorted(problems.items())))
        self.manager.start_watching()
        if self.batching is not None:
            self.batcher = Batcher(self.batching)
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="facegan-grpc"),
            options=[("grpc.max_receive_message_length", self.max_request_bytes),
                     ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        ps_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.manager, self._run), self._grpc)
        ms_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager), self._grpc)
        try:
            self.port = self._grpc.add_insecure_port(f"{self.host}:{self.requested_port}")
        except RuntimeError:
            self.port = 0
        if not self.port:
            self.manager.stop()
            if self.batcher is not None:
                self.batcher.stop()
            raise OSError(f"could not bind the gRPC port {self.host}:{self.requested_port} (in use?)")
        self._grpc.start()
        if self.rest_api_port is not None:
            self.start_rest(self.rest_api_port)
        return self

    def _run(self, servable, signature, inputs, output_filter):
        if self.batcher is not None:
            return self.batcher.run(servable, signature, inputs, output_filter)
        return servable.run(signature, inputs, output_filter)

    def start_rest(self, port: int) -> int:
        """Serve the REST API on `port` (0 = any free port); returns the bound port."""
        self._http = ThreadingHTTPServer((self.host, port),
                                         _make_rest_handler(self.manager, self._run, self.rest_max_body_bytes))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="facegan-rest", daemon=True)
        self._http_thread.start()
        self.rest_api_port = self._http.server_address[1]
        return self.rest_api_port

    def stop(self, grace: float = 5.0):
        """Refuse new RPCs, let in-flight ones finish (up to `grace` s), stop polling."""
        if self._http:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc:
            self._grpc.stop(grace).wait(grace + 1)
            self._grpc = None
        if self.batcher is not None:   # after gRPC: in-flight requests may still wait on batches
            self.batcher.stop()
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _flag(value: str) -> bool:
    """TF Serving's boolean flag spellings: --enable_batching, --enable_batching=true/false."""
    v = str(value).lower()
    if v not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return v in ("true", "1")


EXAMPLES = """example:
  facegan serve --model_base_path /srv/models/facegan --model_name facegan --rest_api_port 8501
  facegan sample --server localhost:8500 --model facegan --num 16 --seed 7 --out grid.png"""


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--model_base_path", help="directory of numbered SavedModel versions (<base>/<version>/)")
    parser.add_argument("--model_name", default="facegan", help="name clients address")
    parser.add_argument("--model_config_file", help="TF Serving ModelServerConfig text proto (instead of the two above)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 disables REST")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (127.0.0.1 for local only)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="how often to look for new versions; 0 loads once")
    parser.add_argument("--load_retry_interval_seconds", type=float, default=5.0,
                        help="wait between attempts to load a version that failed")
    parser.add_argument("--max_num_load_retries", type=int, default=5,
                        help="attempts after a failed load (TF Serving's flag); a version whose folder changes "
                             "or disappears starts afresh")
    parser.add_argument("--max_batch", type=int, default=None,
                        help="images per request bound (None: the model's max_batch metadata)")
    parser.add_argument("--grpc_max_receive_message_bytes", type=int, default=GRPC_MAX_RECEIVE_BYTES,
                        help="largest gRPC request accepted (TF Serving's limit: INT32_MAX, ~2 GB)")
    parser.add_argument("--rest_api_max_body_bytes", type=int, default=DEFAULT_REST_MAX_BODY_BYTES,
                        help="largest REST request body; larger ones get HTTP 413 from their Content-Length, "
                             "before being read")
    parser.add_argument("--workers", type=int, default=16, help="request thread pool size")
    parser.add_argument("--enable_batching", nargs="?", const="true", default="false", type=_flag,
                        metavar="true|false",
                        help="merge concurrent requests like TF Serving's --enable_batching (refuses scalar inputs)")
    parser.add_argument("--batching_parameters_file",
                        help="TF Serving BatchingParameters text proto (e.g. serving/configs/batching.config)")


def specs_from_args(args) -> List[ModelSpec]:
    if args.model_config_file:
        if args.model_base_path:
            raise ValueError("give either --model_config_file or --model_base_path, not both")
        with open(args.model_config_file) as f:
            return parse_model_config(f.read(), args.model_config_file)
    if not args.model_base_path:
        raise ValueError("--model_base_path (or --model_config_file) is required")
    return [ModelSpec(name=args.model_name, base_path=args.model_base_path)]


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        specs = specs_from_args(args)
    except (ValueError, OSError) as e:
        print(f"facegan serve: {e}")
        return 2
    batching = None
    if args.batching_parameters_file and not args.enable_batching:
        print("facegan serve: --batching_parameters_file is only read with --enable_batching "
              "(add --enable_batching, or drop the file)")
        return 2
    if args.enable_batching:
        try:
            batching = (parse_batching_parameters(open(args.batching_parameters_file).read(),
                                                  args.batching_parameters_file)
                        if args.batching_parameters_file else BatchingParameters())
        except (ValueError, OSError) as e:
            print(f"facegan serve: {e}")
            return 2
    if not 0 < args.grpc_max_receive_message_bytes <= GRPC_MAX_RECEIVE_BYTES:
        print(f"facegan serve: --grpc_max_receive_message_bytes must be in [1, {GRPC_MAX_RECEIVE_BYTES}], "
              f"got {args.grpc_max_receive_message_bytes}")
        return 2
    if args.rest_api_max_body_bytes < 1:
        print(f"facegan serve: --rest_api_max_body_bytes must be >= 1, got {args.rest_api_max_body_bytes}")
        return 2
    if args.max_num_load_retries < 0 or args.load_retry_interval_seconds < 0:
        print("facegan serve: --max_num_load_retries and --load_retry_interval_seconds must be >= 0")
        return 2
    server = Server(specs, port=args.port, host=args.host, poll_wait_s=args.file_system_poll_wait_seconds,
                    max_request_bytes=args.grpc_max_receive_message_bytes, max_workers=args.workers, max_batch=args.max_batch, batching=batching,
                    load_retry_interval_s=args.load_retry_interval_seconds,
                    max_load_retries=args.max_num_load_retries, rest_max_body_bytes=args.rest_api_max_body_bytes,
                    rest_api_port=args.rest_api_port or None)   # 0 disables REST, as in TF Serving
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except (OSError, StartupError) as e:
        print(f"facegan serve: {e}", flush=True)
        server.stop(grace=0)
        return 1
    rest = server.rest_api_port
    for spec in specs:
        try:
            states = server.manager.status(spec.name)
            summary = ", ".join(f"v{v} {st.state}" + (f" ({st.error})" if st.error else "") for v, st in states.items())
        except ServingError as e:
            summary = e.message
        print(f"model {spec.name}: {summary}", flush=True)
    print(f"serving gRPC on {args.host}:{server.port}" + (f", REST on {args.host}:{rest}" if rest else "")
          + " (Ctrl-C to stop)", flush=True)
    stop.wait()
    print("shutting down: finishing in-flight requests", flush=True)
    server.stop(grace=5.0)
    print("stopped", flush=True)
    return 0
