"""A local server with TF Serving's gRPC API (and its REST predict API): the lifecycle.

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

The parts: grpc_api.py (the servicers), rest_api.py (the JSON handler), this module (start,
load-before-listen, stop with grace), serve_cli.py (`facegan serve` and its flags).

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

import logging
import threading
from concurrent import futures
from http.server import ThreadingHTTPServer
from typing import List, Optional

import grpc

from facegan.serving.batching import Batcher, BatchingParameters
from facegan.serving.manager import ModelManager, ModelSpec

from facegan.serving.grpc_api import GRPC_MAX_RECEIVE_BYTES, servicers
from facegan.serving.rest_api import DEFAULT_REST_MAX_BODY_BYTES, make_rest_handler

log = logging.getLogger("facegan.serving")


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
        PredictionServicer, ModelServicer, ps_grpc, ms_grpc = servicers()
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
                                         make_rest_handler(self.manager, self._run, self.rest_max_body_bytes))
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
