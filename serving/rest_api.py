"""TF Serving's REST API over a ModelManager: `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`
(row "instances" or columnar "inputs" JSON), `GET /v1/models/<name>[...]` (status) and
`GET .../metadata`.

REST JSON is converted as whole arrays (serving/jsoncodec.py: a large integer array, e.g. an image
batch, is read from the text straight into numpy, and the garbage collector is held off while a
body is parsed); a request with the `Facegan-Server-Timing` header gets a `Server-Timing` header
with the ms of each phase (read, parse, convert, run, encode), the body unchanged. Bodies above the server's
`--rest_api_max_body_bytes` get 413 from their Content-Length before being read, chunked bodies
are read to their end (the connection stays usable), other transfer codings get 501. gRPC status
codes map to HTTP ones as TF Serving's do."""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from http.server import BaseHTTPRequestHandler

import grpc
import numpy as np

from facegan.serving import jsoncodec
from facegan.serving.manager import ModelManager, ServingError


log = logging.getLogger("facegan.serving")

# Largest REST request body (JSON text is ~4 bytes per uint8 value: 64 MiB holds ~16M values, e.g.
# 256 images at 128 px); larger ones get 413 from their Content-Length, before being read.
DEFAULT_REST_MAX_BODY_BYTES = 64 << 20

_HTTP_CODES = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
               grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503}


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
        value = value.tolist() if isinstance(value, np.ndarray) else value
        return np.vectorize(dec, otypes=[object])(np.asarray(value, dtype=object))
    if not may_hold_booleans or spec.dtype.is_bool:
        arr = jsoncodec.numeric_array(value, spec.dtype.as_numpy_dtype)
        if arr is not None:
            return arr
    if isinstance(value, np.ndarray):   # read from the text as integers (jsoncodec.loads): as the parser's lists
        value = value.tolist()
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
        if (spec is not None and isinstance(v, (list, np.ndarray)) and (spec.shape.rank or 0) >= 2
                and spec.shape[0] is None
                and len(v) > servable.max_batch):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {k!r}: batch size {len(v)} is outside [1, {servable.max_batch}]")


# A request carrying this header (any value) gets a `Server-Timing` header (W3C Server Timing) on
# its predict answer: ms spent per phase of the request in the server. Without it the answer is
# unchanged (TF Serving's headers and body).
TIMING_REQUEST_HEADER = "Facegan-Server-Timing"
PHASES = ("read", "parse", "convert", "run", "encode")


class _Timing:
    """Phase durations of one REST predict request: read (the body off the socket), parse (JSON
    text to Python values), convert (to the signature's arrays, with the type checks), run (the
    model), encode (the answer's JSON). Writing the answer comes after the headers, so it is not
    in them (a client sees it as its own receive time)."""

    def __init__(self, wanted):
        self.wanted = wanted is not None
        self.last = time.perf_counter()
        self.ms = {}

    def mark(self, phase: str):
        now = time.perf_counter()
        self.ms[phase] = (now - self.last) * 1e3
        self.last = now

    def header(self) -> str:
        return ", ".join(f"{k};dur={v:.2f}" for k, v in self.ms.items())


# How long a refused request's unread body is still read and dropped before the connection closes,
# so that a client that sends its whole body before reading gets the 413 instead of a reset.
_DISCARD_SECONDS = 2.0
_MAX_CHUNK_LINE = 1024


def make_rest_handler(manager: ModelManager, run, max_body_bytes: int = DEFAULT_REST_MAX_BODY_BYTES):
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
            timing = getattr(self, "_timing", None)
            if timing is not None and timing.wanted:
                timing.mark("encode")
                self.send_header("Server-Timing", timing.header())
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
            timing = _Timing(self.headers.get(TIMING_REQUEST_HEADER))
            self._timing = timing
            try:
                body_bytes = self._read_body()   # first: an unread body would be parsed as the next request
                timing.mark("read")
                name, version, label, verb = self._route()
                if verb != ":predict":
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"unknown POST path {self.path}")
                with jsoncodec.gc_paused():
                    try:
                        body = jsoncodec.loads(body_bytes or b"{}", arrays=True)
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed JSON body: {e}") from None
                    timing.mark("parse")
                    servable, signature, inputs = self._inputs(body, body_bytes, name, version, label)
                    columnar = "inputs" in body
                    del body, body_bytes   # the parsed lists: freed before the model runs
                timing.mark("convert")
                outputs = run(servable, signature, inputs, ())
                timing.mark("run")
                if columnar:
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
            finally:
                self._timing = None

        def _inputs(self, body, body_bytes: bytes, name: str, version, label: str):
            """(servable, signature, inputs as arrays) of a parsed predict body."""
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
                inst = body["instances"]     # a list, or one integer array (jsoncodec.loads)
                if not isinstance(inst, (list, np.ndarray)) or not len(inst):
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
            return servable, signature, inputs

    return Handler
