"""Names every part of the quality study shares: its error, the run folder's file names, the
repository it runs in."""
from __future__ import annotations

import os


RECORDS_FILE = "metrics.jsonl"      # the trainer's name (trainer/periodic_eval.py METRICS_FILE)
DONE_FILE = "study_done.json"
GRID_FILE = "grid.png"
GRID_RAW_FILE = "grid_raw.png"    # raw G, when the run ended with its EMA still warming up
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # bench/quality_study/..


class StudyError(ValueError):
    """A bad flag, matrix or state; the message names it."""
