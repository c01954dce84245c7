"""A run's records: the trainer's `metrics.jsonl`, read back, and the values the table takes from them."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional


# -- records -----------------------------------------------------------------------------------
def read_records(path: str) -> List[Dict[str, Any]]:
    """The records of a metrics.jsonl (a torn last line from a kill is skipped)."""
    from facegan.trainer.runs import read_jsonl     # TensorFlow-free, as this module
    return read_jsonl(path)


def result_key(record: Dict[str, Any], request: str) -> Optional[str]:
    """The protocol-named result key (e.g. `ms_ssim2k_pairs`) of a request in a record."""
    for key, proto in (record.get("protocols") or {}).items():
        if proto.get("request", proto.get("metric")) == request:
            return key
    return None


def record_values(record: Dict[str, Any]) -> Dict[str, float]:
    """The study's columns of one record: each request's headline, plus `ms_ssim_real` (HDCGAN
    reports real-pair MS-SSIM next to the generator's) when the record has it."""
    out = {k: float(v) for k, v in (record.get("headline") or {}).items()
           if isinstance(v, (int, float)) and not str(k).startswith("memorization")}
    key = result_key(record, "ms_ssim")
    real = (record.get("scalars") or {}).get(f"{key}/real") if key else None
    if real is not None:
        out["ms_ssim_real"] = float(real)
    key = result_key(record, "face_detection")
    real = (record.get("scalars") or {}).get(f"{key}/real/detected_fraction") if key else None
    if real is not None:
        out["face_detection_real"] = float(real)
    return out


def run_dir_for(work_dir: str, row: str, seed: int) -> str:
    return os.path.join(work_dir, row, f"seed{seed}")
