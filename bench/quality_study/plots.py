"""Curves of a metric against images shown, drawn with PIL (matplotlib is not part of the pinned stack)."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Tuple


# -- plots (PIL: matplotlib is not part of the pinned stack) ------------------------------------
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (0, 0, 128), (128, 0, 0), (0, 128, 128), (128, 128, 0), (75, 0, 130), (255, 215, 0),
           (0, 100, 0), (199, 21, 133)]


def _ticks(lo: float, hi: float, n: int = 6) -> List[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_plot(series: Dict[str, List[Tuple[float, float]]], path: str, title: str, xlabel: str,
              hline: Optional[Tuple[str, float]] = None, size=(900, 540)) -> str:
    """A PNG line plot: one coloured line (with point markers) per series, axes with ticks, a
    legend, an optional dashed reference line (e.g. real-pair MS-SSIM)."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    W, H = size
    left, right, top, bottom = 70, 210, 34, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    ys = [y for _, y in pts] + ([hline[1]] if hline else [])
    if not pts:
        raise ValueError(f"{path}: nothing to plot")
    x0, x1 = min(0.0, min(x for x, _ in pts)), max(x for x, _ in pts) or 1.0
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: left + (x - x0) / ((x1 - x0) or 1) * (W - left - right)  # noqa: E731
    py = lambda y: H - bottom - (y - y0) / ((y1 - y0) or 1) * (H - top - bottom)  # noqa: E731
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for t in _ticks(x0, x1):
        d.line([px(t), H - bottom, px(t), H - bottom + 5], fill=(0, 0, 0))
        d.text((px(t) - 10, H - bottom + 8), f"{t:g}", fill=(0, 0, 0), font=font)
    for t in _ticks(y0, y1):
        d.line([left - 5, py(t), W - right, py(t)], fill=(225, 225, 225))
        d.line([left - 5, py(t), left, py(t)], fill=(0, 0, 0))
        d.text((4, py(t) - 6), f"{t:.4g}", fill=(0, 0, 0), font=font)
    d.text((left, 10), title, fill=(0, 0, 0), font=font)
    d.text(((left + W - right) // 2 - 30, H - 18), xlabel, fill=(0, 0, 0), font=font)
    if hline:
        y = py(hline[1])
        for xx in range(left, W - right, 12):
            d.line([xx, y, min(xx + 6, W - right), y], fill=(60, 60, 60), width=2)
    for i, (name, s) in enumerate(series.items()):
        c = PALETTE[i % len(PALETTE)]
        xy = [(px(x), py(y)) for x, y in sorted(s)]
        if len(xy) > 1:
            d.line(xy, fill=c, width=2)
        for x, y in xy:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        ly = top + 4 + 14 * i
        d.line([W - right + 10, ly + 6, W - right + 30, ly + 6], fill=c, width=3)
        d.text((W - right + 36, ly), name, fill=(0, 0, 0), font=font)
    if hline:
        ly = top + 4 + 14 * len(series)
        d.line([W - right + 10, ly + 6, W - right + 30, ly + 6], fill=(60, 60, 60), width=1)
        d.text((W - right + 36, ly), hline[0], fill=(0, 0, 0), font=font)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
    return path


def mean_curves(summary_row: Dict[str, Any], metric: str) -> List[Tuple[float, float]]:
    """(kimg, mean over seeds) at each evaluation point the seeds share."""
    by_x: Dict[int, List[float]] = {}
    for curve in summary_row["curves"].values():
        for x, vals in curve:
            if metric in vals:
                by_x.setdefault(x, []).append(vals[metric])
    n = summary_row["n"]
    return [(x / 1000, sum(v) / len(v)) for x, v in sorted(by_x.items()) if len(v) == n]
