"""Benchmark: serving DCGAN-sized generators over gRPC vs calling the SavedModel directly.

Prints JSON. `results`: p50/p99 latency (ms) and images/s for num = 1, 16, 64 images per request
from a 64x64 generator, each with 8 concurrent clients, (a) through `facegan serve` (a separate
process, TF Serving's gRPC API on 127.0.0.1, `sample` signature) and (b) calling the same signature
of the same SavedModel in this process from 8 threads, in the same run, alternating direct and
gRPC rounds. Overhead = direct images/s / gRPC images/s - 1 (goal: <= 10% at num = 16; negative =
gRPC was faster, i.e. noise). `sizing`: the same measurement at num = 16 for 32, 64 and 128 px
generators (random weights: the cost does not depend on them), requests/s and p50/p95 to size a
deployment. Bounded request counts; loopback only. `machine` records the CPU model, its
avx512_bf16 / amx flags, the load average and this process's priority (the machine may be shared).

`rest` (REST vs gRPC, same server, same run, alternating rounds): `translate` of 16 uint8 images
through pix2pix U-Nets (the pix2pix preset's widths, random weights) at 32 and 128 px, and
`sample` num = 16 from the 64 px DCGAN; per case p50/p95 of one client's sequential requests and
requests/s of `--clients` concurrent clients, and their REST / gRPC ratios (goal: <= 2). A third
side, `rest_before`, is REST through the earlier JSON path (every value a Python object, the
garbage collector free to run; a second server and client, same rounds), so before/after are
ratios of one run. Per case also: CPU ms per request of the server process and of the clients'
process under concurrency, and `phases_ms`, where one REST request's time goes (client encode,
the server's read/parse/convert/run/encode from its Server-Timing header, transfer, client
receive and decode).

`batching` (`--clients` concurrent clients, a server with and one without `--enable_batching
--batching_parameters_file serving/configs/batching.config`, alternating rounds): requests/s and
p50/p95 for `serving_default` with 1 and 16 latents per request and for `facegan sample`'s path
(num = 16: the `sample` signature, or with batching the client's own latents through
`serving_default`, as TF Serving's batching refuses scalar inputs).

    .venv/bin/python bench/serving.py [--requests-scale 1.0] [--clients 8] [--sizing 32,64,128]
        [--sections grpc,rest,batching]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facegan.machine import cpu_info  # noqa: E402

NUMS = (1, 16, 64)
REQUESTS_PER_CLIENT = {1: 4, 16: 1, 64: 1}   # per client per round
ROUNDS = 3   # direct and gRPC alternate (D G, G D, D G) so load drift on a shared machine cancels
SIZING_ROUNDS = 2


# -- the benchmarked generator ------------------------------------------------------------------
def dcgan_generator(z_dim: int = 100, resolution: int = 64, filters: int = 64, seed: int = 0):
    """The DCGAN generator shape (Radford et al. 2016: project to 4x4x8f, stride-2 5x5 transposed
    convs with BN + ReLU, tanh), used only if trainer.networks is unavailable."""
    import math

    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    n = int(math.log2(resolution // 4))
    z = tf.keras.Input([z_dim])
    x = tf.keras.layers.Dense(4 * 4 * filters * 2 ** (n - 1), use_bias=False)(z)
    x = tf.keras.layers.Reshape([4, 4, filters * 2 ** (n - 1)])(x)
    x = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(x))
    for i in range(n - 1):
        x = tf.keras.layers.Conv2DTranspose(filters * 2 ** (n - 2 - i), 5, 2, "same", use_bias=False)(x)
        x = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(x))
    x = tf.keras.layers.Conv2DTranspose(3, 5, 2, "same", activation="tanh")(x)
    return tf.keras.Model(z, x, name="dcgan_generator")


def bench_generator(z_dim: int = 100, resolution: int = 64):
    """(generator, cfg or None, source): trainer.networks' DCGAN if it is there, else the stand-in."""
    try:
        from facegan.trainer.config import get_preset
        from facegan.trainer.networks import build_networks
        cfg = get_preset("dcgan", {"network.z_dim": z_dim, "network.resolution": resolution})
        return build_networks(cfg).generator, cfg, "facegan.trainer.networks (dcgan preset)"
    except ImportError:
        return dcgan_generator(z_dim, resolution), None, "bench/serving.py dcgan_generator"


def _percentiles(latencies_s, qs=(50, 99)):
    a = np.asarray(latencies_s) * 1e3
    return tuple(round(float(np.percentile(a, q)), 2) for q in qs)


def run_clients(call, clients: int, requests: int, num=None) -> dict:
    """`clients` threads each making `requests` calls of `num` images (None: `call(seed)`, any
    uint8 array back): latencies and wall time."""
    lat, errors = [], []
    barrier = threading.Barrier(clients + 1)

    def worker(i):
        barrier.wait()
        for k in range(requests):
            t0 = time.perf_counter()
            try:
                images = call(num, seed=i * 1000 + k) if num is not None else call(i * 1000 + k)
                assert images.dtype == np.uint8 and (num is None or images.shape[0] == num)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e))
                continue
            lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return {"latencies": lat, "errors": len(errors), "first_error": errors[0][:300] if errors else None,
            "wall": time.perf_counter() - t0}


def summarize(runs, num: int) -> dict:
    lat = [x for r in runs for x in r["latencies"]]
    wall = sum(r["wall"] for r in runs)
    p50, p95, p99 = _percentiles(lat, (50, 95, 99)) if lat else (None, None, None)
    return {"requests": len(lat), "errors": sum(r["errors"] for r in runs), "p50_ms": p50, "p95_ms": p95,
            "p99_ms": p99,
            "images_per_s": round(len(lat) * num / wall, 1), "wall_s": round(wall, 2),
            "round_images_per_s": [round(len(r["latencies"]) * num / r["wall"], 1) for r in runs]}


def serialization_ms(images: np.ndarray, pngs, repeats: int = 10) -> float:
    """Median ms for one Predict response's proto round trip (server encode + client decode)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        resp = predict_pb2.PredictResponse()
        resp.outputs["images"].CopyFrom(tf.make_tensor_proto(images))
        resp.outputs["png"].CopyFrom(tf.make_tensor_proto(np.asarray(pngs, dtype=object)))
        back = predict_pb2.PredictResponse.FromString(resp.SerializeToString())
        tf.make_ndarray(back.outputs["images"])
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 2)


def _free_port() -> int:
    import socket
    with socket.socket() as s:   # --rest_api_port 0 disables REST (TF Serving's meaning): pick one
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The REST JSON path as it was before integer arrays were read from the text and the collector
# was held off while parsing (the `rest_before` side of the rest section, same run): every JSON
# value a Python object, collections free to run.
_LISTS_JSON = """
import contextlib, sys
from facegan.serving import jsoncodec
jsoncodec.loads = lambda data, arrays=False: jsoncodec._loads(data)
jsoncodec.gc_paused = contextlib.nullcontext
from facegan.cli import main
sys.exit(main())
"""


def start_server(config: str, *extra: str, rest: bool = False, lists_json: bool = False):
    """`facegan serve` in a subprocess: (process, gRPC port) or, with rest=True, (process, gRPC
    port, REST port). lists_json: REST JSON parsed the earlier way (_LISTS_JSON)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    entry = ["-c", _LISTS_JSON] if lists_json else ["-m", "facegan.cli"]
    proc = subprocess.Popen([sys.executable, *entry, "serve", "--model_config_file", config,
                             "--port", "0", "--host", "127.0.0.1", "--file_system_poll_wait_seconds", "0",
                             "--workers", "16", *(["--rest_api_port", str(_free_port())] if rest else []), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving gRPC on"):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            ports = [int(m) for m in re.findall(r":(\d+)", line)]
            return (proc, ports[0], ports[1]) if rest else (proc, ports[0])
    raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def write_config(tmp: str, names) -> str:
    config = os.path.join(tmp, f"models_{'_'.join(names)}.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n" + "".join(
            f'  config {{ name: "{n}" base_path: "{os.path.join(tmp, n)}" model_platform: "tensorflow" }}\n'
            for n in names) + "}\n")
    return config


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_rounds(calls: dict, rounds: int, clients: int, requests: int, server_pids: dict = None) -> dict:
    """Alternating rounds over the named calls (A B, B A, ...): each round `clients` threads make
    `requests` calls each. Returns per name: p50/p95 ms, requests/s, errors; with `server_pids`
    (name -> pid of the server it calls) also the CPU ms per request of that server process and
    of this (the clients') process: on a shared machine the CPU a request costs moves less than
    its wall time."""
    names = list(calls)
    runs = {n: [] for n in names}
    cpu = {n: [0.0, 0.0] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            pid = (server_pids or {}).get(n)
            s0, c0 = (process_cpu_s(pid) if pid else 0.0), time.process_time()
            runs[n].append(run_clients(calls[n], clients, requests))
            cpu[n][0] += (process_cpu_s(pid) - s0) if pid else 0.0
            cpu[n][1] += time.process_time() - c0
    out = {}
    for n in names:
        lat = [x for run in runs[n] for x in run["latencies"]]
        wall = sum(run["wall"] for run in runs[n])
        p50, p95 = _percentiles(lat, (50, 95)) if lat else (None, None)
        out[n] = {"requests": len(lat), "errors": sum(run["errors"] for run in runs[n]), "p50_ms": p50,
                  "p95_ms": p95, "requests_per_s": round(len(lat) / wall, 3) if wall else None,
                  "first_error": next((run["first_error"] for run in runs[n] if run["first_error"]), None)}
        if server_pids and n in server_pids and lat:
            out[n]["server_cpu_ms_per_request"] = round(cpu[n][0] / len(lat) * 1e3, 1)
            out[n]["client_cpu_ms_per_request"] = round(cpu[n][1] / len(lat) * 1e3, 1)
    return out


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def _lists_rest_client(target: str, timeout: float):
    """A RestClient that reads answers the earlier way (every value a Python object, then
    np.asarray; the collector free to run), for the `rest_before` side."""
    from facegan.serving import jsoncodec
    from facegan.serving.client import RestClient

    class ListsRestClient(RestClient):
        def _request(self, url, body=None, convert=None):
            import urllib.request
            req = urllib.request.Request(url, data=jsoncodec.dumps(body) if body is not None else None,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                parsed = jsoncodec._loads(r.read())
            return convert(parsed) if convert is not None else parsed

    return ListsRestClient(target, timeout=timeout)


def rest_phases(url: str, body: dict, requests: int, lists_json: bool = False) -> dict:
    """Median ms per phase of `requests` sequential REST requests: the client's (encode the body,
    wait for the answer's headers, receive its body, decode it to arrays) and the server's, from
    the Server-Timing header it sends when asked (read, parse, convert, run, encode).
    `transfer_and_other` = wait - the server's phases (HTTP, connection, threads, queueing)."""
    import urllib.request

    from facegan.serving import jsoncodec
    from facegan.serving.rest_api import PHASES, TIMING_REQUEST_HEADER
    rows = []
    for _ in range(requests):
        t0 = time.perf_counter()
        data = jsoncodec.dumps(body)
        t1 = time.perf_counter()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                              TIMING_REQUEST_HEADER: "1"})
        with urllib.request.urlopen(req, timeout=900) as r:
            t2 = time.perf_counter()
            raw = r.read()
            timing = r.headers.get("Server-Timing", "")
        t3 = time.perf_counter()
        if lists_json:
            out = jsoncodec._loads(raw)["outputs"]
            np.asarray(out["images"] if isinstance(out, dict) else out, np.uint8)
        else:
            with jsoncodec.gc_paused():
                out = jsoncodec.loads(raw, arrays=True)["outputs"]
                np.asarray(out["images"] if isinstance(out, dict) else out, np.uint8)
        t4 = time.perf_counter()
        server = {k: float(v) for k, v in (p.split(";dur=") for p in timing.split(", ") if ";dur=" in p)}
        rows.append({"client_encode": (t1 - t0) * 1e3, **{f"server_{k}": server.get(k, 0.0) for k in PHASES},
                     "transfer_and_other": (t2 - t1) * 1e3 - sum(server.values()),
                     "client_receive": (t3 - t2) * 1e3, "client_decode": (t4 - t3) * 1e3,
                     "total": (t4 - t0) * 1e3, "response_bytes": len(raw), "request_bytes": len(data)})
    return {k: round(float(np.median([r[k] for r in rows])), 2) for k in rows[0]}


def rest_section(tmp: str, args) -> dict:
    """REST vs gRPC on one server, and REST the earlier way on a second one (module docstring)."""
    from facegan.generator import IMAGE_TO_IMAGE, export_generator
    from facegan.serving.client import GrpcClient, RestClient
    from facegan.trainer.export import export_generator as export_latent
    from facegan.trainer.networks.image_to_image import unet_generator

    names = []
    for res in (32, 128):   # the pix2pix preset's U-Net widths (filters 64, max 512), random weights
        name = f"p2p{res}"
        export_generator(unet_generator(res, 64, 512), os.path.join(tmp, name, "1"), kind=IMAGE_TO_IMAGE)
        names.append(name)
    if not os.path.isdir(os.path.join(tmp, "bench64")):
        generator, cfg, _ = bench_generator(z_dim=100, resolution=64)
        export_latent(generator, os.path.join(tmp, "bench64", "1"), cfg=cfg, metadata={"steps": 0})
    names.append("bench64")
    config = write_config(tmp, names)
    proc, port, rest_port = start_server(config, rest=True)
    before = start_server(config, rest=True, lists_json=True)
    try:
        grpc_clients = [GrpcClient(f"127.0.0.1:{port}", timeout=900) for _ in range(args.clients)]
        rest = RestClient(f"127.0.0.1:{rest_port}", timeout=900)
        rest_before = _lists_rest_client(f"127.0.0.1:{before[2]}", timeout=900)
        rng = np.random.default_rng(0)
        images = {r: rng.integers(0, 256, (16, r, r, 3), dtype=np.uint8) for r in (32, 128)}
        local, lock, ids = threading.local(), threading.Lock(), iter(range(10 ** 6))

        def grpc():
            if not hasattr(local, "c"):
                with lock:
                    local.c = grpc_clients[next(ids) % len(grpc_clients)]
            return local.c

        def both(client, model, method, *a, **kw):
            return lambda s: getattr(client() if callable(client) else client, method)(model, *a, **kw)

        # name: (model, method, args, kwargs, REST body for the phase breakdown, weight). The cheap
        # cases (~0.1 s a request) get `weight` x the rounds and requests: on a shared machine
        # single requests swing 2x with its load, so few of them make a noisy median.
        cases = {
            "translate_16x32px": ("p2p32", "translate", (images[32],), {},
                                  {"signature_name": "translate", "inputs": {"images": images[32]}}, 3),
            "translate_16x128px": ("p2p128", "translate", (images[128],), {},
                                   {"signature_name": "translate", "inputs": {"images": images[128]}}, 1),
            "sample_num16_64px": ("bench64", "sample", (16, 3), {"latents": "server"},
                                  {"signature_name": "sample", "inputs": {"num": 16, "seed": 3, "truncation": 1.0}}, 3),
        }
        rows = {}
        pids = {"grpc": proc.pid, "rest": proc.pid, "rest_before": before[0].pid}
        for case, (model, method, a, kw, body, weight) in cases.items():
            calls = {"grpc": both(grpc, model, method, *a, **kw), "rest": both(rest, model, method, *a, **kw),
                     "rest_before": both(rest_before, model, method, *a, **kw)}
            first = {k: f(3) for k, f in calls.items()}   # also the warm-up of every path
            same = all(np.array_equal(first["grpc"], v) for v in first.values())
            n_seq = max(1, int(round(2 * weight * args.requests_scale)))
            seq = timed_rounds(calls, ROUNDS * (2 if weight > 1 else 1), 1, n_seq)
            conc = timed_rounds(calls, SIZING_ROUNDS * (2 if weight > 1 else 1), args.clients,
                                max(1, int(round(weight * args.requests_scale))), server_pids=pids)
            n_phase = max(1, int(round(3 * weight * args.requests_scale)))
            phases = {"rest": rest_phases(f"http://127.0.0.1:{rest_port}/v1/models/{model}:predict", body, n_phase),
                      "rest_before": rest_phases(f"http://127.0.0.1:{before[2]}/v1/models/{model}:predict", body,
                                                 n_phase, lists_json=True)}
            rows[case] = {"pixel_equal": bool(same), "sequential": seq, f"clients_{args.clients}": conc,
                          "rest_over_grpc_p50": _ratio(seq["rest"]["p50_ms"], seq["grpc"]["p50_ms"]),
                          "rest_over_grpc_throughput": _ratio(conc["grpc"]["requests_per_s"],
                                                              conc["rest"]["requests_per_s"]),
                          "before_rest_over_grpc_p50": _ratio(seq["rest_before"]["p50_ms"], seq["grpc"]["p50_ms"]),
                          "before_rest_over_grpc_throughput": _ratio(conc["grpc"]["requests_per_s"],
                                                                     conc["rest_before"]["requests_per_s"]),
                          "phases_ms": phases}
            print(f"rest: {case}: {json.dumps(rows[case])}", file=sys.stderr, flush=True)
        for c in grpc_clients:
            c.close()
    finally:
        stop_server(proc)
        stop_server(before[0])
    worst = max(max(v["rest_over_grpc_p50"] or 0, v["rest_over_grpc_throughput"] or 0) for v in rows.values())
    return {"cases": rows, "goal": "REST within 2x of gRPC (REST p50 / gRPC p50 and gRPC req/s / REST req/s)",
            "worst_ratio": worst, "goal_met": bool(worst <= 2.0),
            "sides": {"grpc": "gRPC, the server below", "rest": "REST, the same server: integer arrays read from "
                      "the JSON text, collector held off while parsing (server and client)",
                      "rest_before": "REST, a second server and client with the earlier JSON path: every "
                      "value a Python object, the collector free to run"},
            "models": {"translate": "pix2pix U-Net (filters 64, max_filters 512), random weights",
                       "sample": "dcgan preset 64 px, z_dim 100, random weights"}}


def batching_section(tmp: str, args) -> dict:
    """With and without --enable_batching, `--clients` concurrent clients (module docstring)."""
    from facegan.serving.client import GrpcClient
    from facegan.trainer.export import export_generator as export_latent

    if not os.path.isdir(os.path.join(tmp, "bench64")):
        generator, cfg, _ = bench_generator(z_dim=100, resolution=64)
        export_latent(generator, os.path.join(tmp, "bench64", "1"), cfg=cfg, metadata={"steps": 0})
    config = write_config(tmp, ["bench64"])
    batching_file = REPO / "serving" / "configs" / "batching.config"
    procs = []
    try:
        procs.append(start_server(config))
        procs.append(start_server(config, "--enable_batching", "--batching_parameters_file", str(batching_file)))
        sides = {"unbatched": procs[0][1], "batched": procs[1][1]}
        pools = {k: [GrpcClient(f"127.0.0.1:{p}", timeout=900) for _ in range(args.clients)] for k, p in sides.items()}
        local, lock, ids = threading.local(), threading.Lock(), iter(range(10 ** 6))
        zs = {n: np.random.default_rng(n).standard_normal((n, 100)).astype(np.float32) for n in (1, 16)}

        def client(side):
            if not hasattr(local, side):
                with lock:
                    setattr(local, side, pools[side][next(ids) % args.clients])
            return getattr(local, side)

        rows = {}
        for case, make in {
            "serving_default_z1": lambda side: (lambda s: client(side).generate("bench64", zs[1])),
            "serving_default_z16": lambda side: (lambda s: client(side).generate("bench64", zs[16])),
            "facegan_sample_num16": lambda side: (lambda s: client(side).sample("bench64", 16, s)),
        }.items():
            calls = {side: make(side) for side in sides}
            for f in calls.values():
                f(1)   # warm-up (and the batching server's refusal of `sample`, remembered by the client)
            n = max(1, int(round((4 if case.endswith("z1") else 1) * args.requests_scale)))
            res = timed_rounds(calls, ROUNDS, args.clients, n)
            rows[case] = {**res, "batched_over_unbatched_requests_per_s": _ratio(res["batched"]["requests_per_s"],
                                                                                res["unbatched"]["requests_per_s"])}
            print(f"batching: {case}: {json.dumps(rows[case])}", file=sys.stderr, flush=True)
        for pool in pools.values():
            for c in pool:
                c.close()
    finally:
        for p in procs:
            stop_server(p[0])
    return {"clients": args.clients, "batching_parameters_file": "serving/configs/batching.config",
            "model": "dcgan preset 64 px, z_dim 100, random weights", "cases": rows}


def measure(call_a, call_b, clients: int, requests: int, num: int, rounds: int) -> dict:
    """Alternating rounds (A B, B A, ...) so load drift on a shared machine cancels."""
    runs = {"direct": [], "grpc": []}
    calls = {"direct": call_a, "grpc": call_b}
    for r in range(rounds):
        for side in (("direct", "grpc") if r % 2 == 0 else ("grpc", "direct")):
            runs[side].append(run_clients(calls[side], clients, requests, num))
    d, g = summarize(runs["direct"], num), summarize(runs["grpc"], num)
    return {"direct": d, "grpc": g,
            "grpc_overhead_throughput": round(d["images_per_s"] / g["images_per_s"] - 1, 3),
            "grpc_overhead_p50": round(g["p50_ms"] / d["p50_ms"] - 1, 3)}


def grpc_section(tmp: str, args, sizing) -> dict:
    """gRPC vs the SavedModel called in-process (module docstring)."""
    import tensorflow as tf

    from facegan.generator import load_generator
    from facegan.serving.client import GrpcClient
    from facegan.trainer.export import export_generator

    proc = None
    try:
        models, direct, generators = {}, {}, {}
        for res in sorted({64, *sizing}):
            generator, cfg, source = bench_generator(z_dim=100, resolution=res)
            name = f"bench{res}"
            export_generator(generator, os.path.join(tmp, name, "1"), cfg=cfg, metadata={"steps": 0})
            direct[res] = load_generator(os.path.join(tmp, name, "1"))
            generators[res] = {"source": source, "resolution": res, "z_dim": 100,
                               "params": int(generator.count_params())}
            models[res] = name
        config = os.path.join(tmp, "models.config")
        with open(config, "w") as f:
            f.write("model_config_list {\n" + "".join(
                f'  config {{ name: "{n}" base_path: "{os.path.join(tmp, n)}" model_platform: "tensorflow" }}\n'
                for n in models.values()) + "}\n")

        def direct_for(res):
            sig = direct[res].signatures["sample"]
            return lambda num, seed: sig(num=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int64),
                                         truncation=tf.constant(1.0))["images"].numpy()

        proc, port = start_server(config)
        clients = [GrpcClient(f"127.0.0.1:{port}", timeout=600) for _ in range(args.clients)]
        local = threading.local()
        ids = iter(range(10 ** 6))
        lock = threading.Lock()

        def grpc_for(res):
            def call(num, seed):
                if not hasattr(local, "c"):   # one channel per client thread, like separate clients
                    with lock:
                        local.c = clients[next(ids) % len(clients)]
                return local.c.sample(models[res], num, seed)
            return call

        # Same pixels both ways (sanity), and warm-up of every batch shape on both sides.
        for res, num in [(64, n) for n in NUMS] + [(r, 16) for r in sizing]:
            if not np.array_equal(direct_for(res)(num, 7), grpc_for(res)(num, 7)):
                raise AssertionError(f"gRPC and direct outputs differ at {res}px num={num}")

        results = {}
        for num in NUMS:
            n_req = max(1, int(round(REQUESTS_PER_CLIENT[num] * args.requests_scale)))
            results[str(num)] = measure(direct_for(64), grpc_for(64), args.clients, n_req, num, ROUNDS)
            # The deterministic part of the gRPC cost: one response's proto round trip, against one
            # unloaded direct call (no concurrency) of the same size.
            out = direct[64].signatures["sample"](num=tf.constant(num), seed=tf.constant(1, tf.int64),
                                                  truncation=tf.constant(1.0))
            single = []
            for _ in range(3):
                t0 = time.perf_counter()
                direct_for(64)(num, 1)
                single.append(time.perf_counter() - t0)
            ser = serialization_ms(out["images"].numpy(), out["png"].numpy())
            single_ms = round(float(np.median(single)) * 1e3, 2)
            results[str(num)].update(single_direct_call_ms=single_ms, proto_round_trip_ms=ser,
                                     proto_share_of_call=round(ser / single_ms, 4))

        # Sizing: num = 16 per request, `clients` concurrent clients, per generator resolution.
        size_rows = {}
        for res in sizing:
            if res == 64:
                row = results["16"]
            else:
                row = measure(direct_for(res), grpc_for(res), args.clients,
                              max(1, int(round(args.requests_scale))), 16, SIZING_ROUNDS)
            g = row["grpc"]
            size_rows[f"{res}px"] = {
                "generator_params": generators[res]["params"],
                "grpc_requests_per_s": round(g["images_per_s"] / 16, 2), "grpc_images_per_s": g["images_per_s"],
                "grpc_p50_ms": g["p50_ms"], "grpc_p95_ms": g["p95_ms"], "grpc_errors": g["errors"],
                "direct_images_per_s": row["direct"]["images_per_s"],
                "grpc_overhead_throughput": row["grpc_overhead_throughput"]}
        for c in clients:
            c.close()
        ov16 = results["16"]["grpc_overhead_throughput"]
        return {
            "generator": generators[64],
            "signature": "sample", "clients": args.clients, "rounds": ROUNDS,
            "results": results,
            "sizing": {"num_per_request": 16, "clients": args.clients, "generators": size_rows},
            "goal": "gRPC overhead <= 10% at num=16 (direct images/s / gRPC images/s - 1)",
            "goal_met": bool(ov16 <= 0.10),
        }
    finally:
        if proc is not None:
            stop_server(proc)




SECTIONS = ("grpc", "rest", "batching")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests-scale", type=float, default=1.0, help="multiply the per-client request counts")
    p.add_argument("--sizing", default="32,64,128", help="generator resolutions for the num=16 sizing figures")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"which of {', '.join(SECTIONS)} to run")
    args = p.parse_args(argv)
    sizing = sorted({int(r) for r in args.sizing.split(",") if r})
    sections = [x for x in args.sections.split(",") if x]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    machine = cpu_info()
    tmp = tempfile.mkdtemp(prefix="facegan_bench_serving_")
    out = {"benchmark": "serving", "machine": machine, "command": "bench/serving.py " + " ".join(argv or sys.argv[1:])}
    try:
        if "grpc" in sections:
            out.update(grpc_section(tmp, args, sizing))
        if "rest" in sections:
            out["rest_vs_grpc"] = rest_section(tmp, args)
        if "batching" in sections:
            out["batching"] = batching_section(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine_at_end"] = {"load_avg_1m": cpu_info()["load_avg_1m"]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    # our progress and the JSON only; TensorFlow/absl/deprecation noise with --verbose (facegan/noise.py)
    from facegan import noise
    noise.configure_script(sys.argv)
    sys.exit(main())
