"""The machine and the data: the CPU the study ran on, the shared CelebA faces ingested once
into the cache at the study's resolution."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict

from .common import REPO, StudyError


# -- machine -----------------------------------------------------------------------------------
def machine_info() -> Dict[str, Any]:
    """facegan.machine.cpu_info(): what every benchmark records (CPU model, bf16/AMX flags, load)."""
    from facegan.machine import cpu_info
    return cpu_info()


# -- data --------------------------------------------------------------------------------------
def faces_dir() -> str:
    return os.path.abspath(os.environ.get("FACEGAN_FACES_DIR") or os.path.join(REPO, "..", "shared", "data", "faces"))


def cache_dir_default() -> str:
    return os.environ.get("FACEGAN_STUDY_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "facegan", "study")


def ensure_faces(cache_dir: str, resolution: int, log=print) -> str:
    """The shared CelebA faces ingested once (`--crop celeba`, this resolution) into the cache;
    returns the Examples directory. The cache lives outside the repository (the faces' terms)."""
    src = os.path.join(faces_dir(), "celeba89x109", "images")
    out = os.path.join(cache_dir, f"celeba{resolution}")
    if os.path.exists(os.path.join(out, "ingest_summary.json")) and \
            not os.path.exists(os.path.join(out, "INGEST_INCOMPLETE")):
        return out
    if not os.path.isdir(src):
        raise StudyError(f"no faces at {src}: set FACEGAN_FACES_DIR to the shared faces folder "
                         f"(holding celeba89x109/images), or pass --data EXAMPLES")
    if os.path.realpath(out).startswith(os.path.realpath(REPO) + os.sep):
        raise StudyError(f"--cache-dir {cache_dir} is inside the repository; the faces' terms forbid "
                         f"copying them there: choose a folder outside it")
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "facegan.cli", "ingest", "--input", src, "--output", out,
           "--resolution", str(resolution), "--crop", "celeba"]
    labels = os.path.join(faces_dir(), "celeba89x109", "list_attr_celeba.txt")
    if os.path.exists(labels):
        cmd += ["--labels", labels]      # for the conditional row
    log(f"study: ingesting the shared CelebA faces once: {' '.join(cmd)}")
    if subprocess.call(cmd) != 0:
        raise StudyError(f"ingesting {src} into {out} failed (command above)")
    return out
