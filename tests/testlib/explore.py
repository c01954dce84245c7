"""Fixtures of the explore tests: a random-weight LPIPS file in `facegan project`'s format (narrow
VGG16 widths, so it is small; the format reads the widths from the file)."""
from __future__ import annotations

import numpy as np

BLOCKS = (2, 2, 3, 3, 3)


def lpips_arrays(widths=(4, 4, 6, 6, 6), seed: int = 0) -> dict:
    """{key: array} of a VGG16-shaped net with `widths` channels per block and LPIPS linear weights."""
    rng = np.random.default_rng(seed)
    out, c_in = {}, 3
    for b, (n, width) in enumerate(zip(BLOCKS, widths)):
        for c in range(n):
            name = f"block{b + 1}_conv{c + 1}"
            out[f"{name}/kernel"] = (rng.standard_normal((3, 3, c_in, width)) / np.sqrt(9 * c_in)).astype(np.float32)
            out[f"{name}/bias"] = (0.1 * rng.standard_normal(width)).astype(np.float32)
            c_in = width
        out[f"lin{b}"] = rng.uniform(0.0, 1.0, width).astype(np.float32)
    return out


def write_lpips_npz(path, widths=(4, 4, 6, 6, 6), seed: int = 0, drop=(), **replace) -> str:
    """Write a random LPIPS file; `drop` leaves keys out, `replace` swaps arrays (bad files)."""
    arrays = {k: v for k, v in lpips_arrays(widths, seed).items() if k not in drop}
    arrays.update(replace)
    np.savez(str(path), **arrays)
    return str(path)
