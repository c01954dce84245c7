"""Shared by tests/serving/test_serving_faults.py and tests/e2e/test_serving_faults_e2e.py."""
import argparse
import http.client
import json
import re
import shutil
import signal
import socket
import threading
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from facegan.generator import CONDITIONAL, IMAGE_TO_IMAGE, load_generator  # noqa: E402
from facegan.generator import export_generator as export_kind  # noqa: E402
from facegan.serving import rest_api, serve_cli  # noqa: E402
from facegan.serving import server as server_lib  # noqa: E402
from facegan.serving.manager import ModelManager, ModelSpec, ServingError  # noqa: E402
from tests.testlib.serving import tiny_conditional_generator, tiny_generator, tiny_translator  # noqa: E402


Z_DIM, RES, MAX_BATCH = 8, 16, 32


ATTRS = ["Smiling", "Male", "Eyeglasses"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {
        "plain": export_kind(tiny_generator(Z_DIM, RES), str(root / "plain"), max_batch=MAX_BATCH),
        "cond": export_kind(tiny_conditional_generator(Z_DIM, len(ATTRS), RES), str(root / "cond"),
                            kind=CONDITIONAL, attributes=ATTRS, max_batch=MAX_BATCH),
        "i2i": export_kind({"a_to_b": tiny_translator(RES, 1, 0), "b_to_a": tiny_translator(RES, 1, 1)},
                           str(root / "i2i"), kind=IMAGE_TO_IMAGE, max_batch=MAX_BATCH),
    }
