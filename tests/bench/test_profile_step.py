"""bench/profile_step.py's reading of the TF profiler's tensorflow_stats table and its op groups
(hand-encoded protocol buffers and hand-computed shares; no TensorFlow)."""
import importlib.util
import os
import struct

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def prof():
    spec = importlib.util.spec_from_file_location("bench_profile_step", os.path.join(REPO, "bench", "profile_step.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, value):
    if isinstance(value, float):
        return _varint(num << 3 | 1) + struct.pack("<d", value)
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    value = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _record(rank, op_type, op_name, occ, total_us, self_us):
    # TfStatsRecord: 1 rank, 2 host_or_device, 3 op_type, 4 op_name, 5 occurrences, 6 total, 8 self
    return (_field(1, rank) + _field(2, "Host") + _field(3, op_type) + _field(4, op_name) + _field(5, occ)
            + _field(6, total_us) + _field(7, total_us / occ) + _field(8, self_us) + _field(12, 0.5)
            + _field(17, "Unknown"))


def test_tf_stats_records_reads_the_without_idle_table(prof):
    idle = _field(1, _record(1, "IDLE", "IDLE", 1, 9e6, 9e6))
    table = _field(1, _record(1, "_MklNativeConv2DBackpropFilter", "gan/d/conv1/Conv2DBackpropFilter", 4,
                              3000.0, 2500.0)) + _field(1, _record(2, "Cast", "gan/g/Cast", 300, 70000.0, 70000.0))
    db = _field(4, idle) + _field(5, table) + _field(6, "CPU")
    recs = prof.tf_stats_records(db)
    assert recs == [
        {"op_type": "_MklNativeConv2DBackpropFilter", "op_name": "gan/d/conv1/Conv2DBackpropFilter",
         "occurrences": 4, "total_us": 3000.0, "self_us": 2500.0},
        {"op_type": "Cast", "op_name": "gan/g/Cast", "occurrences": 300, "total_us": 70000.0, "self_us": 70000.0}]
    assert prof.decode_proto(_field(300, 2 ** 40) + _field(2, b"\x00\xff")) == {300: [2 ** 40], 2: [b"\x00\xff"]}


@pytest.mark.parametrize("op_type, op_name, group", [
    ("_MklNativeFusedConv2D", "gan/d/conv/BiasAdd", "conv_forward"),
    ("_MklNativeConv2DBackpropInput", "gan/g/deconv/conv2d_transpose", "conv_backprop_input"),
    ("Conv2DBackpropFilter", "x", "conv_backprop_filter"),
    ("_MklNativeFusedBatchNormEx", "gan/g/bn/FusedBatchNormV3", "batchnorm"),
    ("LeakyReluGrad", "gradients/lrelu", "activation"),
    ("Cast", "Adam/Cast_3", "cast"),                        # a cast is a cast wherever it runs
    ("Mul", "Adam/update/mul_1", "optimizer_ema_variables"),   # elementwise inside the optimizer
    ("AssignVariableOp", "AssignVariableOp_12", "optimizer_ema_variables"),
    ("Mul", "gan/d/lrelu/mul", "elementwise_other"),
    ("Sum", "gradients/Sum", "reduction"),
    ("StatelessRandomNormalV2", "random_normal", "random"),
    ("IteratorGetNext", "IteratorGetNext", "data"),
    ("Dataset", "Iterator::Prefetch", "data_pipeline_threads"),
    ("NoOp", "NoOp", "other"),
])
def test_group_of(prof, op_type, op_name, group):
    assert prof.group_of(op_type, op_name) == group


def test_summarize_shares_and_conv_kernel_rate(prof):
    recs = [{"op_type": "_MklNativeConv2D", "op_name": "a/Conv2D", "occurrences": 4, "total_us": 8000.0, "self_us": 6000.0},
            {"op_type": "_MklNativeFusedConv2D", "op_name": "b/Conv2D", "occurrences": 2, "total_us": 2000.0, "self_us": 2000.0},
            {"op_type": "Cast", "op_name": "c/Cast", "occurrences": 20, "total_us": 1000.0, "self_us": 1000.0},
            {"op_type": "Mul", "op_name": "Adam/mul", "occurrences": 10, "total_us": 1000.0, "self_us": 1000.0},
            # tf.data's iterator span: beside the step, listed but not in the shares
            {"op_type": "Dataset", "op_name": "Iterator::Prefetch", "occurrences": 2, "total_us": 9e4, "self_us": 9e4}]
    # 2 profiled steps, 10 ms per step: conv 8000 us -> 4 ms per step of 5 ms op time per step
    out = prof.summarize(recs, steps=2, step_s=0.01, step_flops_by_op={"Conv2D": 4e9}, top=2)
    assert out["op_time_ms_per_step"] == 5.0
    assert out["op_time_over_step_time"] == 0.5
    conv = out["groups"]["conv_forward"]
    assert conv["self_ms_per_step"] == 4.0 and conv["share_of_op_time"] == 0.8
    assert conv["kernel_gflops"] == pytest.approx(4.0 / 0.004)        # 4 GFLOP in 4 ms
    assert conv["ops"] == {"Conv2D": 3.0, "FusedConv2D": 1.0}
    assert list(out["groups"])[0] == "conv_forward"                   # costliest group first
    assert out["groups"]["cast"]["share_of_op_time"] == 0.1
    assert out["groups"]["optimizer_ema_variables"]["self_ms_per_step"] == 0.5
    assert out["groups"]["data_pipeline_threads"]["self_ms_per_step"] == 45.0
    assert out["groups"]["data_pipeline_threads"]["share_of_op_time"] is None
    assert [e["op_type"] for e in out["top_ops"]] == ["Conv2D", "FusedConv2D"]
    assert out["top_ops"][0]["occurrences_per_step"] == 2.0
    assert [(e["op_name"], e["self_ms_per_step"]) for e in out["top_op_names"]] == [("a/Conv2D", 3.0), ("b/Conv2D", 1.0)]
