"""The generator EMA's horizon: a per-step decay, or a half-life in images with a ramp-up.

Two settings (`tricks.*`, trainer/config.py):
- `ema_decay` = beta per generator step: G_ema <- G + beta (G_ema - G) (Karras et al. 2018, sec.
  A.1; PGGAN's `G_smoothing = 0.999`; the study's pinned StyleGAN2 rows' 0.99778).
- `ema_kimg` = the half-life in thousands of images shown, as StyleGAN does
  (stylegan2-ada training_loop.py):

      ema_nimg = ema_kimg * 1000
      if ema_rampup is not None:
          ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
      ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))

  `cur_nimg` is the images shown before the step. With the ramp-up the first step has beta = 0
  (G_ema = G), so the EMA never carries its random initialisation. Here `cur_nimg` counts from
  the moment a weight's progressive block appears (the start of its fade-in; 0 for the start
  block and for non-progressive networks): a new block's EMA weights restart their ramp, so
  they follow the block as it trains instead of keeping its random init for thousands of steps.

Why: a per-step decay keeps beta ** n of the starting point after n steps; 0.999 ** 572 = 0.56 is
what a ProGAN block whose schedule is squeezed into a short budget showed after its 572 steps
(noise grids in the EMA, faces in the raw generator). A horizon in images with a ramp-up cannot
show the init, whatever the schedule or the budget.

This module is TensorFlow-free (the formulas and the metadata); trainer/gan_base.py applies them.
"""
from __future__ import annotations

import math
import re
from typing import Dict, Optional

# Variables of a progressive block r are created by layers named g_<r>_... (networks/progan.py).
_BLOCK = re.compile(r"(?:^|/)g_(\d+)_")


def horizon_images(ema_kimg: float, rampup: float, cur_nimg: float) -> float:
    """StyleGAN's ema_nimg: the half-life in images, ramped to cur_nimg * rampup (0: no ramp)."""
    nimg = float(ema_kimg) * 1000.0
    if rampup > 0:
        nimg = min(nimg, max(0.0, float(cur_nimg)) * float(rampup))
    return nimg


def beta(images_per_step: float, ema_kimg: float, rampup: float, cur_nimg: float) -> float:
    """ema_beta = 0.5 ** (images per step / max(ema_nimg, 1e-8))."""
    return 0.5 ** (float(images_per_step) / max(horizon_images(ema_kimg, rampup, cur_nimg), 1e-8))


def init_fraction(images_per_step: float, ema_kimg: float, rampup: float, decay: float, steps: int,
                  start_nimg: float = 0.0) -> float:
    """Weight the EMA still gives to its starting point after `steps` steps (the product of the
    betas): decay ** steps for a per-step decay; 0 as soon as a ramp-up's first beta is 0."""
    if ema_kimg <= 0:
        return float(decay) ** int(steps)
    f = 1.0
    for i in range(int(steps)):
        f *= beta(images_per_step, ema_kimg, rampup, start_nimg + i * images_per_step)
        if f == 0.0:
            break
    return f


def block_resolution(variable_name: str) -> Optional[int]:
    """The progressive block r of a generator variable (g_<r>_...), None for shared ones."""
    m = _BLOCK.search(variable_name)
    return int(m.group(1)) if m else None


def block_appearance(start: int, target: int, fade_images: int, stable_images: int) -> Dict[int, int]:
    """{r: images shown when block r appears}: the start block at 0, then block r at the start of
    its fade-in (networks/progan.py progressive_schedule: stable, then fade + stable per doubling)."""
    out, r, k = {int(start): 0}, int(start) * 2, 0
    while r <= int(target):
        out[r] = int(stable_images) + k * (int(fade_images) + int(stable_images))
        r, k = r * 2, k + 1
    return out


def warming_up(ema_kimg: float, rampup: float, decay: float, images_per_step: float, cur_nimg: float,
               threshold: float = 0.01) -> bool:
    """Is the EMA of a block that appeared cur_nimg images ago still warming up: its ramp below
    the full half-life, or more than `threshold` of its weight on its starting point?"""
    if ema_kimg <= 0 and decay <= 0:
        return False
    if ema_kimg > 0:
        if rampup > 0:
            return cur_nimg * rampup < ema_kimg * 1000.0
        return 0.5 ** (cur_nimg / (ema_kimg * 1000.0)) > threshold
    steps = math.floor(cur_nimg / max(images_per_step, 1.0))
    return float(decay) ** steps > threshold


def settings(tricks) -> Dict[str, object]:
    """The configured horizon, for metadata: mode 'kimg' (half-life in images) or 'decay' (per step)."""
    if tricks.ema_kimg > 0:
        return {"mode": "kimg", "ema_kimg": float(tricks.ema_kimg), "ema_rampup": float(tricks.ema_rampup),
                "ramp_restarts": "per progressive block, from its fade-in"}
    return {"mode": "decay", "ema_decay": float(tricks.ema_decay)}
