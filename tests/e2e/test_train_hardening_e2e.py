"""`facegan train` as processes (issue 9, "Training"): killed with SIGKILL at any moment and
restarted with the same command, it ends with the weights of an uninterrupted run; two workers on
127.0.0.1 (TF_CONFIG, run.strategy multiworker) train like one process.

Every process is started in its own session and killed (by its id) in a `finally`, with bounded
waits, so a hung worker never outlives the test.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.testlib.train import checkpoint_weights
from tests.testlib.examples import write_synthetic_examples

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=24, n_eval=4, resolution=32, extra_resolutions=(4, 8, 16))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train_cmd(preset, data, out, steps, overrides):
    cmd = [sys.executable, "-m", "facegan.cli", "train", "--preset", preset, "--data", data, "--out", out,
           "--steps", str(steps)]
    for k, v in overrides.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd


def _start(cmd, log_path, env):
    log = open(log_path, "ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                            start_new_session=True), log


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)    # its own session: the process and nothing else
        proc.wait(timeout=30)


def _finish(proc, log, timeout):
    try:
        proc.wait(timeout=timeout)
    finally:
        _kill(proc)
        log.close()
    return proc.returncode


def _ckpt_state(ckpt_dir):
    """(latest named checkpoint number or -1, names in ckpt_dir)."""
    names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
    latest = -1
    if "checkpoint" in names:
        with open(os.path.join(ckpt_dir, "checkpoint")) as f:
            first = f.readline()           # model_checkpoint_path: "ckpt-N"
        if "ckpt-" in first:
            latest = int(first.split("ckpt-")[1].split('"')[0])
    return latest, names


def _partial(ckpt_dir):
    """Files of a save in progress: shard folders, index temp files, ckpt files newer than the index."""
    latest, names = _ckpt_state(ckpt_dir)
    out = []
    for n in names:
        stem = n.split(".", 1)[0]
        num = stem[5:].removesuffix("_temp") if stem.startswith("ckpt-") else ""
        if n.endswith("_temp") or n.startswith("checkpoint.tmp") or (num.isdigit() and int(num) > latest):
            out.append(n)
    return out


def _weights_equal(a_path, b_path):
    a, b = checkpoint_weights(a_path, ""), checkpoint_weights(b_path, "")
    assert a.keys() == b.keys() and any(k.startswith("generator_ema/") for k in a)
    for k in a:
        if not k.startswith("save_counter"):      # how many saves happened differs, by design
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)   # as the resume test


# -- kill -9 at any moment ---------------------------------------------------------------------
KILL_OVERRIDES = {"network.filters": 8, "network.z_dim": 16, "optim.batch_size": 8, "run.checkpoint_every": 2,
                  "run.log_every": 1, "run.image_every": 3, "tricks.instance_noise": 0.1,
                  "tricks.instance_noise_steps": 40}


def test_sigkill_at_random_moments_then_same_command_equals_straight_run(synth, tmp_path):
    steps = 30
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    why = f"(random seed {seed})"
    # the uninterrupted reference runs alongside the killed starts (its own process and folder;
    # the kills wait for checkpoint numbers, not for time, so sharing the CPU changes no decision)
    straight = str(tmp_path / "straight")
    straight_run = _start(_train_cmd("smoke", synth, straight, steps, KILL_OVERRIDES) + ["--no-export"],
                          tmp_path / "straight.log", _env())

    out = str(tmp_path / "killed")
    ckpt_dir = os.path.join(out, "checkpoints")
    cmd = _train_cmd("smoke", synth, out, steps, KILL_OVERRIDES) + ["--no-export"]
    log_path = tmp_path / "killed.log"
    kills = []
    try:
        _kill_and_restart(cmd, log_path, ckpt_dir, steps, rng, kills)
        rc = _finish(*_start(cmd, log_path, _env()), timeout=600)
    finally:
        rc_straight = _finish(*straight_run, timeout=600)
    assert rc_straight == 0, (tmp_path / "straight.log").read_text()[-3000:]
    text = log_path.read_text()
    assert rc == 0, text[-3000:]
    caught_mid_save = any(pieces for _, _, pieces in kills)
    # At least two kills landed mid-training; on a loaded machine a random kill can also land after
    # the last checkpoint (the process still closing), which is a moment like any other.
    assert sum(n < steps for _, n, _ in kills) >= 2, (kills, why)
    assert caught_mid_save, f"no kill landed inside a checkpoint save {why}: {kills}"
    assert "resumed from" in text
    assert "left by a checkpoint save that did not finish" in text    # removed on the next start
    samples = os.listdir(os.path.join(out, "samples"))
    assert samples and all(n.endswith(".png") for n in samples)       # no truncated/temp grids
    assert not _partial(ckpt_dir)                          # the pieces were cleaned, not kept
    _weights_equal(os.path.join(straight, "checkpoints", f"ckpt-{steps}"), os.path.join(ckpt_dir, f"ckpt-{steps}"))


def _kill_and_restart(cmd, log_path, ckpt_dir, steps, rng, kills):
    """Start `cmd` up to 4 times, each killed with SIGKILL: at a random moment once training runs
    (1st, 3rd) or the instant a checkpoint save has started (2nd, 4th: a shard folder or an
    unnamed ckpt file appears); appends (mode, checkpoint, save pieces) to `kills`. A start that
    finishes first ends the loop.

    A kill lands either between saves (the next start resumes from the last complete checkpoint)
    or inside a save (the next start removes its pieces, then resumes): those are the two paths.
    Once a random kill landed mid-training and a kill left save pieces behind, both are covered
    (the 2nd start, itself resumed, was killed, so the last start resumes a resumed run) and
    the loop stops; the 3rd and 4th starts run only when the save kill came after the save ended
    (each start pays TensorFlow's start-up, the bulk of this test's time)."""
    for mode in ("random", "during_save", "random", "during_save"):
        if any(m == "random" and n < steps for m, n, _ in kills) and any(p for _, _, p in kills):
            break
        latest_before, _ = _ckpt_state(ckpt_dir)
        proc, log = _start(cmd, log_path, _env())
        try:
            deadline = time.monotonic() + 300
            if mode == "random":
                # a random moment within training, whatever the machine's speed: wait for a random
                # checkpoint number this start has not reached yet (well before the last step), then
                # a random fraction of a step's time
                low = max(latest_before, 0) + 2
                if low > steps - 4:
                    break                                  # too close to the end for another kill
                target = rng.randrange(low, steps - 4 + 1, 2)
                while proc.poll() is None and _ckpt_state(ckpt_dir)[0] < target \
                        and time.monotonic() < deadline:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.02))
            else:
                while proc.poll() is None and not _partial(ckpt_dir) and time.monotonic() < deadline:
                    time.sleep(0.001)                      # a save lasts tens of milliseconds
            if proc.poll() is not None:
                break
            _kill(proc)
            kills.append((mode, _ckpt_state(ckpt_dir)[0], _partial(ckpt_dir)))
        finally:
            _kill(proc)
            log.close()


# -- two workers on 127.0.0.1 ------------------------------------------------------------------
def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# smoke_progan without minibatch stddev (a per-replica batch statistic by design, as in the
# 1-vs-2-replica test), growing 4 -> 8 within the run so a stage change happens across workers.
MW_OVERRIDES = {"network.minibatch_stddev": False, "network.stable_images": 16, "network.fade_images": 16,
                "run.checkpoint_every": 100, "run.image_every": 100, "run.log_every": 1}


# The reference: the same `facegan train` command in ONE process whose CPU is split into two
# logical devices, so run.strategy "mirrored" trains 2 replicas there, as the 2 workers do. (Against
# 1 replica the gradient is summed in another order; with Adam at beta1 = 0 the update of a weight
# whose gradient is ~0 is lr * sign(g), so over several steps a few such weights differ by ~lr. The
# 1-vs-2-replica test runs one step for that reason; this one crosses a stage change.)
SINGLE_PROCESS_TWO_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from facegan import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_two_workers_on_localhost_equal_one_process(synth, tmp_path):
    steps = 3
    # the one-process reference runs alongside the two workers (its own folder): three processes
    # started together, so their TensorFlow start-ups overlap
    single = str(tmp_path / "single")
    cmd = _train_cmd("smoke_progan", synth, single, steps, MW_OVERRIDES)
    cmd = [sys.executable, "-c", SINGLE_PROCESS_TWO_REPLICAS] + cmd[cmd.index("train"):]
    procs = [_start(cmd, tmp_path / "single.log", _env())]

    out = str(tmp_path / "multi")       # one run directory, as on shared storage
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cmd = _train_cmd("smoke_progan", synth, out, steps, dict(MW_OVERRIDES, **{"run.strategy": "multiworker"}))
    try:
        for i in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs.append(_start(cmd, tmp_path / f"worker{i}.log", _env(TF_CONFIG=tf_config)))
        deadline = time.monotonic() + 600
        for proc, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc, log in procs:
            _kill(proc)
            log.close()
    assert procs[0][0].returncode == 0, (tmp_path / "single.log").read_text()[-3000:]
    procs = procs[1:]
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p, _ in procs] == [0, 0], "\n----\n".join(t[-3000:] for t in logs)
    summaries = [_last_json(t) for t in logs]
    assert summaries[0]["export"] == os.path.join(out, "export") and summaries[1]["export"] is None
    # 48 images: 16 stable at 4x4, 16 fading to 8x8, 16 stable at 8x8; next comes 16x16 at alpha 0
    assert summaries[0]["resolution"] == 16 and summaries[0]["steps"] == steps
    single_summary = _last_json((tmp_path / "single.log").read_text())
    assert single_summary["resolution"] == 16
    assert single_summary["replicas"] == summaries[0]["replicas"] == summaries[1]["replicas"] == 2
    assert not os.path.exists(os.path.join(out, "workertemp_1"))      # the non-chief's scratch is gone

    ref, got = os.path.join(single, "checkpoints", f"ckpt-{steps}"), os.path.join(out, "checkpoints", f"ckpt-{steps}")
    a, b = checkpoint_weights(ref, ""), checkpoint_weights(got, "")
    start = checkpoint_weights(os.path.join(single, "checkpoints", "ckpt-0"), "generator/")
    keys = [k for k in a if k.startswith(("generator/", "discriminator/", "generator_ema/"))]
    assert keys and a.keys() == b.keys()
    # the run moved the weights, and both runs moved them the same way (1-vs-2-replica tolerance)
    assert max(float(np.abs(a[k] - start[k]).max()) for k in start) > 1e-4
    assert max(float(np.abs(a[k] - b[k]).max()) for k in keys) < 1e-5
    m1 = single_summary["metrics"]
    for k, v in m1.items():     # the summary rounds metrics to 5 decimals: abs 1e-5
        assert summaries[0]["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
        assert summaries[1]["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


def _last_json(text):
    """The summary object the command printed last; lines after it (the log also holds stderr,
    where TensorFlow may print an "Exception ignored in ... __del__" at interpreter exit) are not
    part of it."""
    return json.JSONDecoder().raw_decode(text, text.rindex("\n{") + 1)[0]
