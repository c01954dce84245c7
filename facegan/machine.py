"""The machine we run on, TensorFlow-free: CPU model, bf16/AMX flags, and the `auto` precision.

`cpu_info()` is what every benchmark records next to its figures (figures from different
machines are not comparable; avx512_bf16 / amx_bf16 / amx_tile decide whether oneDNN can run
native bf16 / AMX kernels, otherwise bf16 is emulated and slower than float32).

`resolve_precision(requested, ...)` turns `run.mixed_precision: auto` into a Keras policy name
plus the reason, both logged and saved in the run's config.json:
  * a GPU -> mixed_float16 (tensor cores; the GAN's optimizers get loss scaling);
  * a CPU with AMX (amx_bf16 + amx_tile) or AVX512_BF16 -> mixed_bfloat16, where bench/train.py
    shows it faster than float32 (see ARCHITECTURE.md "Precision" for the measured ratios);
  * anything else -> float32 (bf16 would be emulated: measured 0.13x float32 on an EPYC without
    bf16 units).
An explicit policy is kept as given (the reason says so).
"""
from __future__ import annotations

import os
import platform
from typing import Iterable, Optional, Tuple

FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
AUTO = "auto"
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


# /proc/cpuinfo keys that tell two CPUs with the same (often virtualised, e.g. "AMD EPYC") model
# name apart: AMD family 25 (0x19) is Zen 3/Zen 4, 26 (0x1a) Zen 5; the microcode revision too.
IDENTITY_KEYS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
                 "microcode": "microcode"}


def _read_cpuinfo(path: str = "/proc/cpuinfo") -> Tuple[str, set, dict]:
    model, flags, found_model, ident = platform.processor() or "unknown", set(), False, {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not found_model:
                    model, found_model = value.strip(), True
                elif key == "flags":
                    flags = set(value.split())
                elif key in IDENTITY_KEYS and IDENTITY_KEYS[key] not in ident:
                    ident[IDENTITY_KEYS[key]] = value.strip()
    except OSError:   # not Linux: the model from platform, flags unknown (treated as absent)
        pass
    return model, flags, ident


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist)."""
    return _read_cpuinfo(path)[1]


def cpu_identity(path: str = "/proc/cpuinfo") -> dict:
    """Vendor, family, model number, stepping and microcode of the first CPU ({} where unknown).
    Benchmarks record them: a virtual machine may report only "AMD EPYC" as its model name while
    landing on different hosts from one session to the next, and a figure such as numpy's sort
    rate differs between CPU generations that share that name."""
    return _read_cpuinfo(path)[2]


def scheduling_priority(autogroup_path: str = "/proc/self/autogroup") -> dict:
    """This process's nice value and, where the kernel groups processes by session (autogroup), the
    group's nice. On a shared machine the load average alone does not say how much CPU a
    benchmark got: a run whose autogroup nice is -15 over load 12 gets most of the cores."""
    out = {"nice": os.nice(0) if hasattr(os, "nice") else None, "autogroup_nice": None}
    try:
        with open(autogroup_path) as f:             # "/autogroup-145 nice -15"
            out["autogroup_nice"] = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """CPU model and identity (family/model/stepping/microcode), core count, the bf16/AMX flags, the
    1-minute load and this process's scheduling priority (for benchmark JSON)."""
    model, flags, ident = _read_cpuinfo(path)
    return {"cpu_model": model, "cpu_identity": ident, "cpu_count": os.cpu_count(), **{f: f in flags for f in FLAGS},
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "priority": scheduling_priority()}


def bf16_units(flags: Iterable[str]) -> Optional[str]:
    """'amx' / 'avx512_bf16' when the CPU computes bf16 natively, else None."""
    flags = set(flags)
    if {"amx_bf16", "amx_tile"} <= flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def resolve_precision(requested: str, *, has_gpu: bool, flags: Optional[Iterable[str]] = None) -> Tuple[str, str]:
    """(policy, reason) for `run.mixed_precision`; `auto` picks by hardware (module docstring).

    `flags` defaults to this machine's /proc/cpuinfo flags; `has_gpu` comes from the caller (the
    only part that needs TensorFlow)."""
    if requested != AUTO:
        if requested not in POLICIES:
            raise ValueError(f"run.mixed_precision {requested!r} is not one of {(AUTO,) + POLICIES}")
        return requested, f"run.mixed_precision={requested} set explicitly"
    if has_gpu:
        return "mixed_float16", "auto: a GPU is visible (float16 tensor cores; loss scaling on)"
    units = bf16_units(cpu_flags() if flags is None else flags)
    if units == "amx":
        return "mixed_bfloat16", "auto: CPU has AMX (amx_bf16, amx_tile): native bf16 matmul/conv"
    if units == "avx512_bf16":
        return "mixed_bfloat16", "auto: CPU has avx512_bf16: native bf16 dot products"
    return "float32", ("auto: CPU has neither AMX nor avx512_bf16 (bf16 would be emulated, "
                       "slower than float32)")
