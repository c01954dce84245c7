"""Benchmark: where a training step's time goes (TF profiler op breakdown), 64x64 dcgan and stylegan2_small.

Prints one JSON object. For each architecture and precision it runs the library's real training
loop (`trainer.train_lib.Trainer.run`, as bench/train.py: MirroredStrategy, metrics fetched every
step, EMA generator, NaN check) on real faces (FFHQ 256px from $FACEGAN_FACES_DIR, downscaled into
a temporary Examples artifact that is deleted afterwards) and records:

- `step_s`: seconds per step over `--steps` timed steps after `--warmup` (no profiler running),
  images/s, and the step's analytic FLOPs (every Conv2D / Conv2DBackpropInput /
  Conv2DBackpropFilter / MatMul of the traced step at its static shapes, bench/train.py's count;
  stylegan2_small's lazy R1 and path-length steps are counted in the proportion the timed window
  holds them);
- `fraction_of_conv_rate`: the step's achieved GFLOP/s as a fraction of this CPU's conv rate of
  the same dtype (bfloat16 for mixed_bfloat16), measured in the same process at the start and
  after every row (bench/train.py's `measure_rates`, the best of them) -- the figure
  bench/train.py reports, plus the same against the other dtype's rate;
  `fraction_of_conv_rate_per_cpu_second`: the same in GFLOP per CPU-second of the process (step
  and microbenchmark alike, `measure_cpu_rates`), which a shared machine's load moves much less;
- `profile`: the op breakdown of `--profile-steps` further steps traced with
  `tf.profiler.experimental` (host tracer level 2) into a temporary directory, read back with
  TensorFlow's own `tensorflow_stats` tool (the table TensorBoard's profile plugin shows: per op
  type and name, occurrences, self time). Ops are grouped (`GROUPS`): conv forward / backprop
  input / backprop filter, matmul, BatchNorm, activations, casts, optimizer (Adam/RMSprop update
  ops and the EMA), other elementwise, reductions, random, data input and the rest; each group
  has its self time per step (ms), its share of the step's op time (tf.data's iterator spans,
  which run on their own threads beside the step, are listed but not counted), and for the conv
  groups the FLOPs
  of that op type divided by its self time, i.e. the rate the convolution kernels themselves
  reach at the step's real shapes (vs the conv rate of the microbenchmark). `top_ops` lists the
  costliest op types, `top_op_names` the costliest single ops of the graph (name scopes say which
  layer). Op self times on the 2 cores can overlap (inter-op parallelism): the
  shares are of the summed op time, `op_time_over_step_time` says how much they overlap (with
  `--inter-op 1` ops run one at a time and the kernel rates are not diluted by overlap).

The profiler slows the traced steps slightly (`profiled_step_s` vs `step_s`); the shares come from
the profile, the step time and fraction of the conv rate from the unprofiled window.

The rows run one after the other in one process, float32 then mixed_bfloat16 of one
architecture back to back (this machine's load drifts); run it in its own process group at raised
priority on a shared machine (the JSON records the load and the autogroup nice).

    python bench/profile_step.py [--archs dcgan,stylegan2_small] [--precisions float32,mixed_bfloat16]
                                 [--steps 16] [--warmup 5] [--profile-steps 16] [--top 12]
                                 [--inter-op N] [--intra-op N] [--fused-adam] [--set key=value ...]
"""
import argparse
import glob
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train as bench_train  # noqa: E402  (bench/train.py: FLOP count, conv/matmul rates, faces)

RES = bench_train.RES
ARCHS = {
    # the 64px DCGAN of bench/train.py (its preset, batch 64)
    "dcgan": ("dcgan", {"network.resolution": RES, "optim.batch_size": 64}),
    # the stylegan2_small preset at 64x64 (batch 32, lazy R1 every 16 / path length every 4, ADA)
    "stylegan2_small": ("stylegan2_small", {"network.resolution": RES}),
}

# op type (oneDNN prefixes stripped, see `base_type`) -> group; anything else by the rules in `group_of`
GROUPS = {
    "Conv2D": "conv_forward", "FusedConv2D": "conv_forward", "DepthwiseConv2dNative": "conv_forward",
    "Conv2DBackpropInput": "conv_backprop_input", "Conv2DBackpropFilter": "conv_backprop_filter",
    "Conv2DBackpropFilterWithBias": "conv_backprop_filter",
    "MatMul": "matmul", "FusedMatMul": "matmul", "BatchMatMulV2": "matmul", "BatchMatMul": "matmul",
    "FusedBatchNormV3": "batchnorm", "FusedBatchNormGradV3": "batchnorm", "FusedBatchNorm": "batchnorm",
    "FusedBatchNormGrad": "batchnorm", "FusedBatchNormEx": "batchnorm",
    "Relu": "activation", "ReluGrad": "activation", "LeakyRelu": "activation", "LeakyReluGrad": "activation",
    "Tanh": "activation", "TanhGrad": "activation", "Sigmoid": "activation", "SigmoidGrad": "activation",
    "Selu": "activation", "SeluGrad": "activation", "Elu": "activation", "EluGrad": "activation",
    "Softplus": "activation", "SoftplusGrad": "activation",
    "Cast": "cast",
    "ResourceApplyAdam": "optimizer_ema_variables", "ResourceApplyRMSProp": "optimizer_ema_variables",
    "Sum": "reduction", "Mean": "reduction", "Max": "reduction", "Min": "reduction", "Prod": "reduction",
    "BiasAddGrad": "reduction", "L2Loss": "reduction",
    "StatelessRandomNormalV2": "random", "StatelessRandomUniformV2": "random",
    "StatelessRandomGetKeyCounter": "random", "StatelessTruncatedNormalV2": "random",
    "RandomStandardNormal": "random", "RandomUniform": "random", "StatefulUniformFullInt": "random",
    "IteratorGetNext": "data", "MultiDeviceIteratorGetNextFromShard": "data", "ParseExampleV2": "data",
    "DecodeRaw": "data", "DecodePng": "data",
    # tf.data's iterator spans (prefetch waits included) on its own threads: not step work
    "Dataset": "data_pipeline_threads",
}
ELEMENTWISE = {"Mul", "AddV2", "Add", "Sub", "RealDiv", "Square", "Sqrt", "Rsqrt", "Neg", "Maximum", "Minimum",
               "BiasAdd", "AddN", "Exp", "Log", "Log1p", "Abs", "Sign", "SquaredDifference", "DivNoNan",
               "Select", "SelectV2", "Pow", "Reciprocal", "ZerosLike", "OnesLike", "Fill", "Pad", "Tile",
               "ClipByValue", "Floor", "Round", "Greater", "Less", "GreaterEqual", "LessEqual", "Equal",
               "LogicalAnd", "IsFinite", "Softsign", "MirrorPad", "Transpose", "ConcatV2", "Reshape", "Slice",
               "StridedSlice", "StridedSliceGrad", "Pack", "Unpack", "Split", "SplitV", "Identity",
               "BroadcastTo", "ResizeBilinear", "ResizeNearestNeighbor", "ImageProjectiveTransformV3",
               "GatherV2", "ScatterNd", "TensorScatterUpdate"}
OPTIMIZER_SCOPES = ("adam", "rmsprop", "sgd/")
VARIABLE_OPS = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "ReadVariableOp",
                "ResourceGather", "VarHandleOp"}
OUTSIDE_STEP = ("data_pipeline_threads",)
CONV_GROUPS = {"conv_forward": ("Conv2D",), "conv_backprop_input": ("Conv2DBackpropInput",),
               "conv_backprop_filter": ("Conv2DBackpropFilter",), "matmul": ("MatMul",)}


# -- the profiler's tensorflow_stats table (a TfStatsDatabase protocol buffer) ----------------------
def _varint(buf, i):
    out, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def decode_proto(buf: bytes) -> dict:
    """A protocol buffer's fields, {number: [values]} (varints as int, 64-bit as double, 32-bit as
    float, length-delimited as bytes). Enough for TfStatsDatabase without its generated module,
    which TensorFlow's wheel does not ship (tensorflow/core/profiler/protobuf/tf_stats.proto)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 1:
            val, i = struct.unpack_from("<d", buf, i)[0], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = bytes(buf[i:i + n]), i + n
        elif wire == 5:
            val, i = struct.unpack_from("<f", buf, i)[0], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(num, []).append(val)
    return out


# TfStatsRecord fields (tf_stats.proto): 3 op_type, 4 op_name, 5 occurrences, 6 total_time_in_us,
# 8 total_self_time_in_us; TfStatsDatabase: 5 = without_idle table, whose field 1 holds the records.
def tf_stats_records(data: bytes) -> list:
    db = decode_proto(data)
    table = decode_proto(db.get(5, [b""])[0])
    recs = []
    for raw in table.get(1, []):
        r = decode_proto(raw)
        recs.append({"op_type": r.get(3, [b""])[0].decode(), "op_name": r.get(4, [b""])[0].decode(),
                     "occurrences": int(r.get(5, [0])[0]), "total_us": float(r.get(6, [0.0])[0]),
                     "self_us": float(r.get(8, [0.0])[0])})
    return recs


def read_profile(logdir: str) -> list:
    """The op records of the (one) trace written under `logdir` by tf.profiler.experimental."""
    from tensorflow.python.profiler.internal import _pywrap_profiler
    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    data, ok = _pywrap_profiler.xspace_to_tools_data(paths[-1:], "tensorflow_stats", {})
    if not ok or not data:
        raise RuntimeError("TensorFlow's tensorflow_stats tool could not read the trace")
    return tf_stats_records(data)


def base_type(op_type: str) -> str:
    """oneDNN's kernel names to the TF op: _MklNativeFusedConv2D -> FusedConv2D, _MklCast -> Cast."""
    for prefix in ("_MklNative", "_Mkl", "_"):
        if op_type.startswith(prefix):
            op_type = op_type[len(prefix):]
            break
    return op_type


def group_of(op_type: str, op_name: str) -> str:
    """The group of one profiled op: by its type first (a Cast is a cast wherever it runs), then
    the optimizers' name scopes and variable reads/writes, then elementwise or other."""
    t = base_type(op_type)
    if t in GROUPS and GROUPS[t] != "reduction":
        return GROUPS[t]
    if any(s in op_name.lower() for s in OPTIMIZER_SCOPES) or t in VARIABLE_OPS:
        return "optimizer_ema_variables"      # Keras optimizers' update ops, the EMA assigns
    if t in GROUPS:
        return GROUPS[t]
    if t in ELEMENTWISE:
        return "elementwise_other"
    return "other"


def summarize(records: list, steps: int, step_s: float, step_flops_by_op: dict, top: int) -> dict:
    """Per-group and per-op-type self time per step (ms) and shares; conv groups' own GFLOP/s."""
    groups, types = {}, {}
    for r in records:
        g = group_of(r["op_type"], r["op_name"])
        d = groups.setdefault(g, {"self_ms_per_step": 0.0, "ops": {}})
        d["self_ms_per_step"] += r["self_us"] / 1e3 / steps
        t = base_type(r["op_type"])
        d["ops"][t] = d["ops"].get(t, 0.0) + r["self_us"] / 1e3 / steps
        k = (t, g)
        e = types.setdefault(k, {"op_type": t, "group": g, "self_ms_per_step": 0.0, "occurrences_per_step": 0.0})
        e["self_ms_per_step"] += r["self_us"] / 1e3 / steps
        e["occurrences_per_step"] += r["occurrences"] / steps
    # shares are of the step's op time: tf.data's iterator spans run beside the step (prefetch)
    total = sum(d["self_ms_per_step"] for g, d in groups.items() if g not in OUTSIDE_STEP)
    for g, d in groups.items():
        d["share_of_op_time"] = d["self_ms_per_step"] / total if total and g not in OUTSIDE_STEP else None
        d["ops"] = {k: round(v, 3) for k, v in sorted(d["ops"].items(), key=lambda kv: -kv[1])[:6]}
        if g in CONV_GROUPS:
            flops = sum(step_flops_by_op.get(t, 0) for t in CONV_GROUPS[g])
            d["gflop_per_step"] = flops / 1e9
            d["kernel_gflops"] = flops / 1e9 / (d["self_ms_per_step"] / 1e3) if d["self_ms_per_step"] else None
        d["self_ms_per_step"] = round(d["self_ms_per_step"], 3)
        if d["share_of_op_time"] is not None:
            d["share_of_op_time"] = round(d["share_of_op_time"], 4)
    ordered = dict(sorted(groups.items(), key=lambda kv: (kv[0] in OUTSIDE_STEP, -kv[1]["self_ms_per_step"])))
    top_ops = sorted((e for e in types.values() if e["group"] not in OUTSIDE_STEP),
                     key=lambda e: -e["self_ms_per_step"])[:top]
    for e in top_ops:
        e["share_of_op_time"] = round(e["self_ms_per_step"] / total, 4) if total else 0.0
        e["self_ms_per_step"] = round(e["self_ms_per_step"], 3)
        e["occurrences_per_step"] = round(e["occurrences_per_step"], 2)
    names = sorted((r for r in records if group_of(r["op_type"], r["op_name"]) not in OUTSIDE_STEP),
                   key=lambda r: -r["self_us"])[:top]
    top_names = [{"op_name": r["op_name"], "op_type": base_type(r["op_type"]), "group": group_of(r["op_type"], r["op_name"]),
                  "self_ms_per_step": round(r["self_us"] / 1e3 / steps, 3),
                  "share_of_op_time": round(r["self_us"] / 1e3 / steps / total, 4) if total else 0.0} for r in names]
    return {"op_time_ms_per_step": round(total, 2), "op_time_over_step_time": round(total / 1e3 / step_s, 3),
            "groups": ordered, "top_ops": top_ops, "top_op_names": top_names}


def measure_cpu_rates(calls: int = 8) -> dict:
    """GFLOP per CPU-second (process CPU time over all threads) of bench/train.py's conv
    microbenchmark (4x4, 128->256, stride 2, batch 16 at 32x32), float32 and bfloat16, after one
    warm-up call. On a shared machine a step's wall time depends on how much of the two cores the
    process got; its CPU time much less, so the per-CPU-second fraction is the steadier figure."""
    import tensorflow as tf
    out = {}
    for dtype in (tf.float32, tf.bfloat16):
        x = tf.cast(tf.random.normal([16, 32, 32, 128]), dtype)
        w = tf.cast(tf.random.normal([4, 4, 128, 256]), dtype)
        fn = tf.function(lambda: tf.nn.conv2d(x, w, 2, "SAME"), autograph=False)
        flops = 2 * 16 * 16 * 16 * 256 * 4 * 4 * 128
        fn().numpy()
        best = float("inf")
        for _ in range(3):     # best of three batches of `calls`: a load spike hits one batch
            c = time.process_time()
            for _ in range(calls):
                fn().numpy()
            best = min(best, (time.process_time() - c) / calls)
        out[dtype.name] = {"conv_gflop_per_cpu_s": flops / best / 1e9}
    return out


# -- FLOPs of the step, per lazy phase ------------------------------------------------------------
def phase_flops(cfg, run_dir, phases) -> dict:
    """{phase: {"total", "by_op"}} for each lazy phase of the step (bench/train.py's count)."""
    import tensorflow as tf
    from facegan.trainer import train_lib
    trainer = train_lib.Trainer(cfg.override({"run.mixed_precision": "float32", "eval.every_images": 0}), None,
                                run_dir, steps=0, synthetic=True, progress=False,
                                strategy=tf.distribute.get_strategy())
    n = trainer.gan.global_batch_size * cfg.tricks.d_steps
    spec = (tf.TensorSpec([n, RES, RES, 3], tf.float32), tf.TensorSpec([2], tf.int64))
    out = {}
    for phase in phases:
        fn = (lambda data, p=phase: trainer.gan.train_step(data, phases=phase_names(trainer.gan, p)))
        graph = tf.function(fn, autograph=False).get_concrete_function(spec).graph
        by_type = {}
        for op in graph.get_operations():
            f = bench_train.op_flops(op)
            if f:
                by_type[op.type] = by_type.get(op.type, 0) + f
        out[phase] = {"total": sum(by_type.values()), "by_op": by_type, "images": n}
    return out


def lazy_phase(gan, step: int):
    """(R1 due, path length due) at `step`: the loss's Dreg / Greg phases (trainer/gan_base.py)."""
    due = gan.due_phases(step)
    return "Dreg" in due, "Greg" in due


def phase_names(gan, phase):
    """The phase names of a (R1, path length) pair: every every-step phase plus the lazy ones."""
    r1, pl = phase
    return [p.name for p in gan.family_loss.phases
            if p.interval == 1 or (p.name == "Dreg" and r1) or (p.name == "Greg" and pl)]


def window_flops(gan_phase, flops_by_phase, start: int, steps: int) -> dict:
    """Mean FLOPs per step over steps start..start+steps-1 with the phase each step runs."""
    total, by_op = 0.0, {}
    for s in range(start, start + steps):
        f = flops_by_phase[gan_phase(s)]
        total += f["total"]
        for k, v in f["by_op"].items():
            by_op[k] = by_op.get(k, 0) + v
    return {"total": total / steps, "by_op": {k: v / steps for k, v in by_op.items()}}


# -- one row ----------------------------------------------------------------------------------------
def profile_row(cfg, data, run_dir, warmup, steps, profile_steps, flops, rates, cpu_rates, top, logdir):
    """Time `steps` steps after `warmup`, then trace `profile_steps` more under the profiler."""
    import tensorflow as tf
    from facegan.trainer import train_lib
    marks = {}
    t_start, t_end, p_end = warmup, warmup + steps, warmup + steps + profile_steps

    def on_step(trainer, step, metrics):
        now, cpu = time.perf_counter(), time.process_time()
        if step == t_start:
            marks["t0"], marks["c0"], marks["i0"] = now, cpu, trainer.images_shown
        if step == t_end:
            marks["t1"], marks["c1"], marks["i1"] = now, cpu, trainer.images_shown
            tf.profiler.experimental.start(logdir, options=tf.profiler.experimental.ProfilerOptions(
                host_tracer_level=2, python_tracer_level=0, device_tracer_level=0))
            marks["p0"] = time.perf_counter()
        if step == p_end:
            marks["p1"] = time.perf_counter()
            tf.profiler.experimental.stop()

    cfg = cfg.override({"run.checkpoint_every": 10 ** 6, "run.image_every": 10 ** 6, "run.log_every": 10 ** 6,
                        "eval.every_images": 0})
    trainer = train_lib.Trainer(cfg, data, run_dir, steps=p_end, progress=False, on_step=on_step)
    policy = trainer.cfg.run.mixed_precision
    trainer.run()
    step_s = (marks["t1"] - marks["t0"]) / steps
    images = (marks["i1"] - marks["i0"]) / steps
    fl = window_flops(lambda s: lazy_phase(trainer.gan, s), flops, t_start, steps)
    fl_prof = window_flops(lambda s: lazy_phase(trainer.gan, s), flops, t_end, profile_steps)
    conv_flops = sum(v for k, v in fl["by_op"].items() if k in bench_train.CONV_OPS)
    gflops = fl["total"] / step_s / 1e9
    dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    cpu_s = (marks["c1"] - marks["c0"]) / steps
    row = {"policy": policy, "batch": trainer.gan.global_batch_size, "step_s": round(step_s, 4),
           "step_cpu_s": round(cpu_s, 4), "gflop_per_cpu_s": round(fl["total"] / cpu_s / 1e9, 1),
           "images_per_s": round(images / step_s, 2),
           "step_gflop": round(fl["total"] / 1e9, 3), "step_conv_gflop": round(conv_flops / 1e9, 3),
           "step_gflop_by_op": {k: round(v / 1e9, 3) for k, v in fl["by_op"].items()},
           "achieved_gflops": round(gflops, 1),
           "fraction_of_conv_rate": round(gflops / rates[dtype]["conv_gflops"], 3),
           "rate_dtype": dtype,
           "fraction_of_conv_rate_by_dtype": {d: round(gflops / rates[d]["conv_gflops"], 3) for d in rates},
           "fraction_of_conv_rate_per_cpu_second": round(fl["total"] / cpu_s / 1e9 / cpu_rates[dtype]["conv_gflop_per_cpu_s"], 3),
           "profiled_step_s": round((marks["p1"] - marks["p0"]) / profile_steps, 4),
           "profile_steps": profile_steps, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    if any(lazy_phase(trainer.gan, s) != (False, False) for s in range(t_start, p_end)):
        row["timed_window"] = bench_train.lazy_window(cfg.loss, warmup, steps)
        row["step_gflop_by_phase"] = {f"r1={p[0]},path_length={p[1]}": round(f["total"] / 1e9, 3)
                                      for p, f in flops.items()}
    row["profile"] = summarize(read_profile(logdir), profile_steps, row["profiled_step_s"], fl_prof["by_op"], top)
    # what the step would reach if every non-conv op took no time (against the conv rate measured
    # at the start of the run; meaningful with --inter-op 1, where op self times do not overlap)
    g = row["profile"]["groups"]
    conv_ms = sum(g[k]["self_ms_per_step"] for k in CONV_GROUPS if k in g)
    row["profile"]["conv_and_matmul_share_of_op_time"] = round(
        conv_ms / row["profile"]["op_time_ms_per_step"], 4) if row["profile"]["op_time_ms_per_step"] else None
    row["profile"]["fraction_of_conv_rate_if_only_conv_ops_ran"] = round(
        fl_prof["total"] / 1e9 / (conv_ms / 1e3) / rates[dtype]["conv_gflops"], 3) if conv_ms else None
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="dcgan,stylegan2_small")
    ap.add_argument("--precisions", default="float32,mixed_bfloat16")
    ap.add_argument("--steps", type=int, default=16, help="timed steps (stylegan2_small: a multiple of 16)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile-steps", type=int, default=16)
    ap.add_argument("--images", type=int, default=256, help="faces in the temporary Examples")
    ap.add_argument("--top", type=int, default=12, help="op types listed in top_ops")
    ap.add_argument("--inter-op", type=int, default=0,
                    help="TensorFlow inter-op threads (0: TensorFlow's default); 1 runs one op at a "
                         "time, so op self times add up to the step")
    ap.add_argument("--intra-op", type=int, default=0, help="TensorFlow intra-op threads (0: default)")
    ap.add_argument("--fused-adam", action="store_true",
                    help="optim.optimizer=adam_fused (trainer/fused_adam.py: one fused kernel per variable): "
                         "the optimizer's share with the fused update")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every row (e.g. run.xla=true), recorded in the JSON")
    args = ap.parse_args()
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        ap.error(f"--archs: unknown {bad}; known: {sorted(ARCHS)}")
    bad = [p for p in precisions if p not in bench_train.PRECISIONS]
    if bad:
        ap.error(f"--precisions: unknown {bad}; known: {list(bench_train.PRECISIONS)}")
    overrides = {"optim.optimizer": "adam_fused"} if args.fused_adam else {}
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep:
            ap.error(f"--set {kv!r}: expected KEY=VALUE")
        try:
            overrides[k] = json.loads(v)
        except ValueError:
            overrides[k] = v
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from facegan import machine
    from facegan.trainer.config import get_preset
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)

    tmp = tempfile.mkdtemp(prefix="facegan_bench_profile_")
    try:
        data = bench_train.make_examples(os.path.join(tmp, "examples"), args.images)
        cfgs = {a: get_preset(ARCHS[a][0], dict(ARCHS[a][1], **overrides)) for a in archs}
        for a, cfg in cfgs.items():   # lazy regularizers: time a whole number of their periods
            if cfg.loss.family == "nsgan_r1":
                period = math.lcm(cfg.loss.r1_interval, cfg.loss.pl_interval)
                for name in ("steps", "profile_steps"):
                    v = getattr(args, name)
                    if v % period:
                        setattr(args, name, v + period - v % period)
                        print(f"bench/profile_step.py: --{name.replace('_', '-')} rounded up to "
                              f"{getattr(args, name)} (a multiple of {period}, the lazy regularizers' period)",
                              file=sys.stderr)
        phases = [(False, False), (True, True), (False, True)]
        flops = {a: phase_flops(cfg, os.path.join(tmp, f"flops_{a}"),
                                phases if cfg.loss.family == "nsgan_r1" else phases[:1])
                 for a, cfg in cfgs.items()}
        rates0 = bench_train.measure_rates()
        rates_runs = [rates0]
        cpu_runs = [measure_cpu_rates()]
        print(f"rates: {json.dumps(rates0)}", file=sys.stderr)
        out = {"resolution": RES, "steps": args.steps, "warmup": args.warmup, "profile_steps": args.profile_steps,
               "overrides": overrides, "fused_adam": args.fused_adam, "threads": {"inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                                                   "intra_op": tf.config.threading.get_intra_op_parallelism_threads()},
               "machine": dict(machine.cpu_info(), bf16_units=machine.bf16_units(machine.cpu_flags())),
               "rows": {}}
        for a, cfg in cfgs.items():
            for prec in precisions:
                # the nsgan_r1 phases are keyed by lazy_phase(step); other families always (False, False)
                fl = flops[a] if len(flops[a]) > 1 else {p: flops[a][(False, False)] for p in phases}
                row = profile_row(cfg.override({"run.mixed_precision": prec}), data, os.path.join(tmp, f"run_{a}_{prec}"),
                                  args.warmup, args.steps, args.profile_steps, fl, rates0, cpu_runs[0], args.top,
                                  os.path.join(tmp, f"trace_{a}_{prec}"))
                out["rows"].setdefault(a, {})[prec] = row
                rates_runs.append(bench_train.measure_rates())   # between rows too: the load drifts
                cpu_runs.append(measure_cpu_rates())
                print(f"{a} {prec}: {row['images_per_s']} images/s, {row['fraction_of_conv_rate']} of the "
                      f"{row['rate_dtype']} conv rate ({row['fraction_of_conv_rate_per_cpu_second']} per CPU second)",
                      file=sys.stderr)
        rates = {d: {k: max(r[d][k] for r in rates_runs) for k in rates0[d]} for d in rates0}
        out["rates"] = rates
        out["rates_runs"] = rates_runs
        cpu_rates = {d: {k: max(r[d][k] for r in cpu_runs) for k in cpu_runs[0][d]} for d in cpu_runs[0]}
        out["cpu_rates"], out["cpu_rates_runs"] = cpu_rates, cpu_runs
        for a, rows in out["rows"].items():   # fractions against the better of the two rate measurements
            for row in rows.values():
                g = row["achieved_gflops"]
                row["fraction_of_conv_rate_by_dtype"] = {d: round(g / rates[d]["conv_gflops"], 3) for d in rates}
                row["fraction_of_conv_rate"] = row["fraction_of_conv_rate_by_dtype"][row["rate_dtype"]]
                row["fraction_of_conv_rate_per_cpu_second"] = round(
                    row["gflop_per_cpu_s"] / cpu_rates[row["rate_dtype"]]["conv_gflop_per_cpu_s"], 3)
                for gname, grp in row["profile"]["groups"].items():
                    if grp.get("kernel_gflops"):
                        grp["kernel_fraction_of_conv_rate"] = round(grp["kernel_gflops"] / rates[row["rate_dtype"]]["conv_gflops"], 3)
                        grp["kernel_gflops"] = round(grp["kernel_gflops"], 1)
            if "float32" in rows and "mixed_bfloat16" in rows:
                out["rows"][a]["ratio_bfloat16_vs_float32"] = round(
                    rows["mixed_bfloat16"]["images_per_s"] / rows["float32"]["images_per_s"], 3)
        if "dcgan" in out["rows"] and "stylegan2_small" in out["rows"]:
            out["ratio_stylegan2_small_vs_dcgan_images_per_s"] = {
                p: round(out["rows"]["stylegan2_small"][p]["images_per_s"] / out["rows"]["dcgan"][p]["images_per_s"], 3)
                for p in precisions}
        out["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from facegan import noise
    noise.configure_script(sys.argv)
    main()
