"""`facegan serve`: TF Serving's flags (`--model_base_path`/`--model_name` or
`--model_config_file`, `--port`, `--rest_api_port`, `--enable_batching`, ...) -> a running Server
until SIGTERM/SIGINT (in-flight requests finish). Bad flags: one line, exit 2; a model with no
version that loads: one line, exit 1 (server.StartupError)."""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import List


from facegan.serving.batching import BatchingParameters, parse_batching_parameters
from facegan.serving.manager import ModelSpec, ServingError, parse_model_config

from facegan.serving.grpc_api import GRPC_MAX_RECEIVE_BYTES
from facegan.serving.rest_api import DEFAULT_REST_MAX_BODY_BYTES
from facegan.serving.server import Server, StartupError


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
