"""The machine a benchmark ran on, for its JSON: CPU model, bf16/AMX flags, cores, load.

Figures from different machines are not comparable; every benchmark records this next to them
(avx512_bf16 / amx_bf16 / amx_tile decide whether oneDNN can run bf16 / AMX kernels).
"""
from __future__ import annotations

import os
import platform

FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    model, flags, found_model = platform.processor() or "unknown", set(), False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not found_model:
                    model, found_model = value.strip(), True
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:   # not Linux: the model from platform, flags unknown
        pass
    return {"cpu_model": model, "cpu_count": os.cpu_count(), **{f: f in flags for f in FLAGS},
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
