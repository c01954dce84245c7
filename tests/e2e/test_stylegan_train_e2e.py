"""StyleGAN2 training across processes: one vs two replicas give the same update; served psi and style mixing pixel-equal to the SavedModel."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from facegan.trainer.config import ConfigError, get_preset
from tests.testlib.train import checkpoint_weights
from tests.testlib.examples import write_synthetic_examples
from tests.testlib.stylegan_train import REPO, TINY, synth16  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def exported(synth16, tmp_path_factory):  # noqa: F811
    """The tiny StyleGAN2 of tests/testlib/stylegan_train.py exported before any training step.
    Serving hands psi, the cutoff and the mixing seeds to the SavedModel whatever its weights
    (after the unit tests' 2 steps w_avg is ~0 too: an EMA with beta 0.995 from zeros), so
    training, which traces the R1 / path-length step, adds nothing here; the test checks that each
    request parameter changes the images, so the pixel equalities can fail."""
    from facegan.generator import load_generator
    from facegan.trainer import train_lib
    res = train_lib.train(get_preset("smoke_stylegan2", TINY), synth16,
                          str(tmp_path_factory.mktemp("untrained")), steps=0, progress=False)
    assert res.steps == 0
    path = train_lib.export(res, str(tmp_path_factory.mktemp("export") / "1"))
    return path, load_generator(path)



REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from facegan.trainer.config import get_preset
    from facegan.trainer import train_lib
    uri, out, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # minibatch stddev groups are per replica by design: group size 1 (a constant feature) here
    cfg = get_preset("smoke_stylegan2", dict(over, **{"network.mbstd_group_size": 1, "run.checkpoint_every": 100}))
    res = {}
    for n in (1, 2):
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
        res[n] = train_lib.train(cfg, uri, f"{out}/r{n}", steps=1, progress=False, strategy=strategy)
    w = {n: [v.numpy() for v in r.gan.G.weights + r.gan.D.weights + r.generator_ema.weights]
         for n, r in res.items()}
    st = {n: [float(r.gan.ada.p.numpy()), float(r.gan.pl_mean.value.numpy())] for n, r in res.items()}
    print(json.dumps({"replicas": [res[1].replicas, res[2].replicas],
                      "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w[1], w[2])),
                      "state": [st[1], st[2]], "metrics": [res[1].metrics, res[2].metrics]}))
""")


@pytest.mark.e2e
def test_one_vs_two_replicas_same_update(tmp_path):
    # 8x8 (two synthesis blocks): tracing the R1/path-length tapes per replica is the cost
    synth8 = write_synthetic_examples(str(tmp_path / "synth8"), n_train=16, n_eval=2, resolution=8)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    over = dict(TINY, **{"network.resolution": 8})
    proc = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, synth8, str(tmp_path / "out"), json.dumps(over)],
                          capture_output=True, text=True, env=env, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == [1, 2]
    assert out["max_weight_diff"] < 1e-5          # the tolerance of test_train_loop's replica test
    assert out["state"][1] == pytest.approx(out["state"][0], rel=1e-5, abs=1e-6)
    m1, m2 = out["metrics"]
    assert m1.keys() == m2.keys()
    for k in m1:
        assert m2[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-6), k


@pytest.mark.e2e
def test_served_psi_and_style_mix_pixel_equal(exported, tmp_path):
    import argparse
    import shutil
    from facegan.images import decode_png
    from facegan.serving import client as client_lib
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    path, gen = exported
    # every request parameter below changes the images (else the equalities could not fail)
    assert not np.array_equal(gen.sample(4, 5, 0.7), gen.sample(4, 5, 1.0))
    assert not np.array_equal(gen.sample(4, 5, 0.7, truncation_cutoff=2), gen.sample(4, 5, 0.7))
    assert not np.array_equal(gen.style_mix(1, 2, 3, 2, 0.7), gen.sample(3, 1, 0.7))
    assert not np.array_equal(gen.style_mix(1, 2, 3, 2, 0.7, truncation_cutoff=3), gen.style_mix(1, 2, 3, 2, 0.7))
    base = tmp_path / "sg"
    base.mkdir()
    shutil.copytree(path, base / "1")
    srv = Server([ModelSpec("sg", str(base))], port=0, host="127.0.0.1", rest_api_port=0, poll_wait_s=0.2).start()
    try:
        with client_lib.GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as grpc_client:
            np.testing.assert_array_equal(grpc_client.sample("sg", 4, 5, truncation=0.7), gen.sample(4, 5, 0.7))
            np.testing.assert_array_equal(grpc_client.style_mix("sg", 1, 2, 3, 2, 0.7), gen.style_mix(1, 2, 3, 2, 0.7))
            # per-request cutoff (sample_cutoff): pixel-equal to the SavedModel; out of range refused
            np.testing.assert_array_equal(grpc_client.sample("sg", 4, 5, 0.7, truncation_cutoff=2),
                                          gen.sample(4, 5, 0.7, truncation_cutoff=2))
            with pytest.raises(client_lib.ClientError, match="truncation_cutoff must be in") as err:
                grpc_client.sample("sg", 4, 5, 0.7, truncation_cutoff=7)
            assert err.value.code == "INVALID_ARGUMENT"
        rest = client_lib.RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
        np.testing.assert_array_equal(rest.sample("sg", 4, 5, truncation=0.7), gen.sample(4, 5, 0.7))
        np.testing.assert_array_equal(rest.sample("sg", 4, 5, 0.7, truncation_cutoff=2),
                                      gen.sample(4, 5, 0.7, truncation_cutoff=2))
        with pytest.raises(client_lib.ClientError, match="truncation_cutoff must be in"):
            rest.sample("sg", 4, 5, 0.7, truncation_cutoff=-1)
        np.testing.assert_array_equal(rest.style_mix("sg", 1, 2, 3, 2, 0.7), gen.style_mix(1, 2, 3, 2, 0.7))
        # style mixing with a per-request cutoff (style_mix_cutoff), both APIs
        want = gen.style_mix(1, 2, 3, 2, 0.7, truncation_cutoff=3)
        np.testing.assert_array_equal(rest.style_mix("sg", 1, 2, 3, 2, 0.7, truncation_cutoff=3), want)
        with client_lib.GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as grpc_client:
            np.testing.assert_array_equal(grpc_client.style_mix("sg", 1, 2, 3, 2, 0.7, truncation_cutoff=3), want)
        # the CLI: --style-mix grid rows = seed_a, each crossover, seed_b
        parser = argparse.ArgumentParser()
        client_lib.add_arguments(parser)
        out = tmp_path / "mix.png"
        args = parser.parse_args(["--rest", f"127.0.0.1:{srv.rest_api_port}", "--model", "sg", "--num", "3",
                                  "--style-mix", "1,2", "--crossover", "2", "--psi", "0.7", "--out", str(out)])
        assert client_lib.main(args) == 0
        grid, r, pad = decode_png(out.read_bytes()), 16, 2
        assert grid.shape == (3 * (r + pad) + pad, 3 * (r + pad) + pad, 3)
        rows = [gen.sample(3, 1, 0.7), gen.style_mix(1, 2, 3, 2, 0.7), gen.sample(3, 2, 0.7)]
        for i, row in enumerate(rows):
            y = pad + i * (r + pad)
            np.testing.assert_array_equal(grid[y:y + r, pad:pad + r], row[0])
        # the CLI over gRPC: --psi 0.7 --truncation-cutoff 2
        out = tmp_path / "cut.png"
        args = parser.parse_args(["--server", f"127.0.0.1:{srv.port}", "--model", "sg", "--num", "1", "--seed", "5",
                                  "--psi", "0.7", "--truncation-cutoff", "2", "--out", str(out)])
        assert client_lib.main(args) == 0
        np.testing.assert_array_equal(decode_png(out.read_bytes())[pad:pad + r, pad:pad + r],
                                      gen.sample(1, 5, 0.7, truncation_cutoff=2)[0])
        # --style-mix with --truncation-cutoff: the crossover row is style_mix_cutoff's
        out = tmp_path / "mixcut.png"
        args = parser.parse_args(["--server", f"127.0.0.1:{srv.port}", "--model", "sg", "--num", "3",
                                  "--style-mix", "1,2", "--crossover", "2", "--psi", "0.7",
                                  "--truncation-cutoff", "3", "--out", str(out)])
        assert client_lib.main(args) == 0
        y = pad + (r + pad)
        np.testing.assert_array_equal(decode_png(out.read_bytes())[y:y + r, pad:pad + r], want[0])
    finally:
        srv.stop()
