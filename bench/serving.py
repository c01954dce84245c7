"""Benchmark: serving DCGAN-sized generators over gRPC vs calling the SavedModel directly.

Prints JSON. `results`: p50/p99 latency (ms) and images/s for num = 1, 16, 64 images per request
from a 64x64 generator, each with 8 concurrent clients, (a) through `facegan serve` (a separate
process, TF Serving's gRPC API on 127.0.0.1, `sample` signature) and (b) calling the same signature
of the same SavedModel in this process from 8 threads, in the same run, alternating direct and
gRPC rounds. Overhead = direct images/s / gRPC images/s - 1 (goal: <= 10% at num = 16; negative =
gRPC was faster, i.e. noise). `sizing`: the same measurement at num = 16 for 32, 64 and 128 px
generators (random weights: the cost does not depend on them), requests/s and p50/p95 to size a
deployment. Bounded request counts; loopback only. `machine` records the CPU model, its
avx512_bf16 / amx flags and the load average (the machine may be shared).

    .venv/bin/python bench/serving.py [--requests-scale 1.0] [--clients 8] [--sizing 32,64,128]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
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


def _percentiles(latencies_s, qs=(50, 99)):
    a = np.asarray(latencies_s) * 1e3
    return tuple(round(float(np.percentile(a, q)), 2) for q in qs)


def run_clients(call, clients: int, requests: int, num: int) -> dict:
    """`clients` threads each making `requests` calls of `num` images: latencies and wall time."""
    lat, errors = [], []
    barrier = threading.Barrier(clients + 1)

    def worker(i):
        barrier.wait()
        for k in range(requests):
            t0 = time.perf_counter()
            try:
                images = call(num, seed=i * 1000 + k)
                assert images.shape[0] == num and images.dtype == np.uint8
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
    return {"latencies": lat, "errors": len(errors), "wall": time.perf_counter() - t0}


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


def start_server(config: str):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "facegan.cli", "serve", "--model_config_file", config,
                             "--port", "0", "--host", "127.0.0.1",
                             "--file_system_poll_wait_seconds", "0", "--workers", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving gRPC on"):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, int(line.split()[3].rsplit(":", 1)[1])
    raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests-scale", type=float, default=1.0, help="multiply the per-client request counts")
    p.add_argument("--sizing", default="32,64,128", help="generator resolutions for the num=16 sizing figures")
    args = p.parse_args(argv)
    sizing = sorted({int(r) for r in args.sizing.split(",") if r})

    import tensorflow as tf

    from facegan.generator import load_generator
    from facegan.serving.client import GrpcClient
    from facegan.serving.testing import bench_generator
    from facegan.trainer.export import export_generator

    tmp = tempfile.mkdtemp(prefix="facegan_bench_serving_")
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
        print(json.dumps({
            "benchmark": "serving",
            "machine": cpu_info(),
            "generator": generators[64],
            "signature": "sample", "clients": args.clients, "rounds": ROUNDS,
            "results": results,
            "sizing": {"num_per_request": 16, "clients": args.clients, "generators": size_rows},
            "goal": "gRPC overhead <= 10% at num=16 (direct images/s / gRPC images/s - 1)",
            "goal_met": bool(ov16 <= 0.10),
        }, indent=2))
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # our progress and the JSON only; TensorFlow/absl/deprecation noise with --verbose (facegan/noise.py)
    from facegan import noise
    noise.configure_script(sys.argv)
    sys.exit(main())
