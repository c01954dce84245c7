"""Shared by tests/ingest/test_ingest_faults.py and tests/e2e/test_ingest_faults_e2e.py."""
import argparse
import errno
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from facegan import diskspace, examples_io, schema
from facegan.ingest import cli
from facegan.ingest import runner as R
from facegan.ingest import pool_runner as PR
from facegan.ingest import output
from facegan.ingest import stages as S
from facegan.ingest import options as O
from facegan.ingest import image_ops as IM


def _faces(d, n, seed=0, side=40):
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(
            os.path.join(d, f"f{k}.png"))
    return str(d)


def _run(argv, quiet=True):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv + (["--quiet"] if quiet else [])))


def _hidden(out):
    parent = os.path.dirname(out)
    return sorted(n for n in os.listdir(parent) if n.startswith("." + os.path.basename(out)))
