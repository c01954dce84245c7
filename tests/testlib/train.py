"""Helpers for the training tests: tiny Examples artifacts made from real faces (in a tmp dir,
never in the repository) and tiny per-preset overrides."""
import os

import numpy as np

from facegan import examples_io

TINY = {"optim.batch_size": 8, "network.resolution": 32, "network.filters": 8, "network.z_dim": 16,
        "run.checkpoint_every": 2, "run.log_every": 1, "run.image_every": 2, "run.shuffle_buffer": 64,
        # float32: CI losses must not depend on the machine's bf16 units (auto is tested in
        # tests/trainer/test_precision.py, which forces the bf16 path)
        "run.mixed_precision": "float32"}
# progan: grow 8 -> 16 within a few steps (8 images stable, 8 images fade)
TINY_ARCH = {"progan": {"network.resolution": 16, "network.start_resolution": 8, "network.filters": 8,
                        "network.max_filters": 16, "network.fade_images": 8, "network.stable_images": 8,
                        "network.batch_sizes": {}},
             # stylegan2 presets made identical and tiny (one shared smoke run for all three); 16x16:
             # its lazy R1 / path-length steps are traced apart, each costing per synthesis block
             "stylegan2": {"network.resolution": 16, "network.w_dim": 16, "network.mapping_layers": 2,
                           "network.channel_base": 128, "network.channel_max": 16, "network.mbstd_group_size": 4, "loss.r1_gamma": 0.05,
                           "tricks.ema_decay": 0.99, "tricks.augment.speed_images": 1000}}
TINY_LENS = {"tricks.lens.blocks": 2, "tricks.lens.filters": 8, "tricks.lens.anneal_steps": 10}


def tiny_overrides(preset: str, **extra):
    """Overrides that make any preset tiny (by its architecture; lens shrunk when it is on)."""
    from facegan.trainer.config import get_preset
    cfg = get_preset(preset)
    out = dict(TINY, **TINY_ARCH.get(cfg.network.architecture, {}))
    if cfg.tricks.lens.enabled:
        out.update(TINY_LENS)
    out.update(extra)
    return out


def write_face_examples(ffhq_dir, uri: str, n: int = 24, resolution: int = 32, extra=(8, 16)) -> str:
    """An Examples artifact of `n` real FFHQ faces downscaled to `resolution` (+ stored lower
    resolutions, as ingestion writes them for progressive growing)."""
    from PIL import Image
    files = sorted(os.listdir(ffhq_dir))[:n]
    exs = []
    for k, name in enumerate(files):
        with Image.open(os.path.join(ffhq_dir, name)) as im:
            im = im.convert("RGB")
            img = np.asarray(im.resize((resolution, resolution), Image.BOX))
            more = {r: np.asarray(im.resize((r, r), Image.BOX)) for r in extra}
        exs.append(examples_io.make_example(img, source=name, sha256=f"{k:064x}", extra_images=more))
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, "train"), "data-00000-of-00001.gz"), exs)
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, "eval"), "data-00000-of-00001.gz"), exs[:4])
    return uri


def checkpoint_weights(path: str, prefix: str):
    """{name: array} of the checkpoint's variables under `prefix` (e.g. 'generator/')."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(prefix) and "OPTIMIZER_SLOT" not in k and k.endswith("VARIABLE_VALUE")}


# -- one vs two replicas, in a fresh process ----------------------------------------------------
# The head of a script run with `run_replica_script`: two logical CPUs (a second MirroredStrategy
# replica needs them before TensorFlow's context starts), then `cfg`: progan without BatchNorm /
# minibatch stddev (both are per-replica batch statistics by design), so one and two replicas
# train the same weights. argv: uri, out.
REPLICA_PRELUDE = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from facegan.trainer.config import get_preset
from facegan.trainer import train_lib
uri, out = sys.argv[1], sys.argv[2]
"""


def replica_progan(resolution: int, **extra) -> dict:
    return {"network.resolution": resolution, "network.start_resolution": resolution,
            "network.filters": 8, "network.max_filters": 8, "network.z_dim": 8,
            "network.minibatch_stddev": False, "network.batch_sizes": {}, "optim.batch_size": 8,
            "run.checkpoint_every": 100, "run.image_every": 100, "run.log_every": 1,
            "run.mixed_precision": "float32", **extra}


def run_replica_script(body: str, overrides: dict, uri: str, out: str) -> dict:
    """Run REPLICA_PRELUDE + `cfg = get_preset("progan", overrides)` + body; its last stdout line is
    JSON, returned parsed."""
    import json
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = REPLICA_PRELUDE + f"cfg = get_preset('progan', {overrides!r})\n" + body
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script, uri, out], capture_output=True, text=True,
                          env=env, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
