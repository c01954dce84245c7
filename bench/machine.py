"""The machine a benchmark ran on, for its JSON: CPU model, bf16/AMX flags, cores, load.

The detection lives in facegan/machine.py (TensorFlow-free, shared with the trainer's
`run.mixed_precision: auto`); this module keeps `from machine import cpu_info` working for the
benchmarks (bench/ is on their sys.path).
"""
from __future__ import annotations

from facegan.machine import FLAGS, bf16_units, cpu_flags, cpu_info  # noqa: F401
