"""Benchmark: serving a DCGAN-sized 64x64 generator over gRPC vs calling the SavedModel directly.

Prints JSON: p50/p99 latency (ms) and images/s for num = 1, 16, 64 images per request, each with
8 concurrent clients, (a) through `facegan serve` (a separate process, TF Serving's gRPC API on
127.0.0.1, `sample` signature) and (b) calling the same signature of the same SavedModel in this
process from 8 threads, in the same run, alternating direct and gRPC rounds. Overhead = direct
images/s / gRPC images/s - 1 (goal: <= 10% at num = 16; negative = gRPC was faster, i.e. noise).
Bounded request counts; loopback only. `load_avg_1m` shows how busy the machine was.

    .venv/bin/python bench/serving.py [--requests-scale 1.0] [--clients 8]
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

NUMS = (1, 16, 64)
REQUESTS_PER_CLIENT = {1: 4, 16: 1, 64: 1}   # per client per round
ROUNDS = 3   # direct and gRPC alternate (D G, G D, D G) so load drift on a shared machine cancels


def _percentiles(latencies_s):
    a = np.asarray(latencies_s) * 1e3
    return round(float(np.percentile(a, 50)), 2), round(float(np.percentile(a, 99)), 2)


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
    p50, p99 = _percentiles(lat) if lat else (None, None)
    return {"requests": len(lat), "errors": sum(r["errors"] for r in runs), "p50_ms": p50, "p99_ms": p99,
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


def start_server(base: str):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "facegan.cli", "serve", "--model_base_path", base,
                             "--model_name", "bench", "--port", "0", "--host", "127.0.0.1",
                             "--file_system_poll_wait_seconds", "0", "--workers", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving gRPC on"):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, int(line.split()[3].rsplit(":", 1)[1])
    raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests-scale", type=float, default=1.0, help="multiply the per-client request counts")
    args = p.parse_args(argv)

    import tensorflow as tf

    from facegan.serving.client import GrpcClient
    from facegan.serving.testing import bench_generator
    from facegan.trainer.export import export_generator, load_generator

    tmp = tempfile.mkdtemp(prefix="facegan_bench_serving_")
    proc = None
    try:
        generator, cfg, source = bench_generator(z_dim=100, resolution=64)
        base = os.path.join(tmp, "bench")
        export_generator(generator, os.path.join(base, "1"), cfg=cfg, metadata={"steps": 0})
        direct = load_generator(os.path.join(base, "1"))
        sig = direct.signatures["sample"]

        def direct_call(num, seed):
            return sig(num=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int64),
                       truncation=tf.constant(1.0))["images"].numpy()

        proc, port = start_server(base)
        clients = [GrpcClient(f"127.0.0.1:{port}", timeout=300) for _ in range(args.clients)]
        local = threading.local()
        ids = iter(range(10 ** 6))
        lock = threading.Lock()

        def grpc_call(num, seed):
            if not hasattr(local, "c"):   # one channel per client thread, like separate clients
                with lock:
                    local.c = clients[next(ids) % len(clients)]
            return local.c.sample("bench", num, seed)

        # Same pixels both ways (sanity), and warm-up of every batch shape on both sides.
        for num in NUMS:
            a, b = direct_call(num, 7), grpc_call(num, 7)
            if not np.array_equal(a, b):
                raise AssertionError(f"gRPC and direct outputs differ at num={num}")

        results = {}
        for num in NUMS:
            n_req = max(1, int(round(REQUESTS_PER_CLIENT[num] * args.requests_scale)))
            runs = {"direct": [], "grpc": []}
            for r in range(ROUNDS):
                order = ("direct", "grpc") if r % 2 == 0 else ("grpc", "direct")
                for side in order:
                    runs[side].append(run_clients(direct_call if side == "direct" else grpc_call,
                                                  args.clients, n_req, num))
            d, g = summarize(runs["direct"], num), summarize(runs["grpc"], num)
            # The deterministic part of the gRPC cost: one response's proto round trip, against one
            # unloaded direct call (no concurrency) of the same size.
            out = sig(num=tf.constant(num), seed=tf.constant(1, tf.int64), truncation=tf.constant(1.0))
            single = []
            for _ in range(3):
                t0 = time.perf_counter()
                direct_call(num, 1)
                single.append(time.perf_counter() - t0)
            ser = serialization_ms(out["images"].numpy(), out["png"].numpy())
            single_ms = round(float(np.median(single)) * 1e3, 2)
            results[str(num)] = {
                "direct": d, "grpc": g,
                "single_direct_call_ms": single_ms, "proto_round_trip_ms": ser,
                "proto_share_of_call": round(ser / single_ms, 4),
                "grpc_overhead_throughput": round(d["images_per_s"] / g["images_per_s"] - 1, 3),
                "grpc_overhead_p50": round(g["p50_ms"] / d["p50_ms"] - 1, 3),
            }
        for c in clients:
            c.close()
        ov16 = results["16"]["grpc_overhead_throughput"]
        print(json.dumps({
            "benchmark": "serving",
            "generator": {"source": source, "resolution": direct.resolution, "z_dim": direct.z_dim,
                          "params": int(generator.count_params())},
            "signature": "sample", "clients": args.clients, "rounds": ROUNDS, "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "results": results,
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
    sys.exit(main())
