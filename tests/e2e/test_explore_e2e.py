"""`facegan directions`' edit version and `facegan project` on tiny smoke exports (no training).

The edit version keeps every source signature; `edit` is the source's `generate` at z + sum s_k n_k
(checked against a direct call), strength 0 of `edit_sample` is `sample`, and bad edits (unknown
name, NaN strength, lengths that differ) are refused by the graph, also over the REST API. The
projector rebuilds the exported generator (the same images as the export, PSNR >= 40 dB, checked inside) and moves the
latent toward the target: the reconstruction is closer than the start. Also: an ordinary export
serves its metadata over REST; `facegan sample --attr` on an edit version calls `edit_sample`; a W
edit (StyleGAN2) moves w and truncates about w_avg; the projection's discriminator (from a run
folder) and LPIPS (from a weights file) terms change the loss and the optimum.
"""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

tf = pytest.importorskip("tensorflow")

NAMES = ["smiling", "male"]


@pytest.fixture(scope="module")
def dcgan_export(tmp_path_factory):
    from facegan.trainer.config import get_preset
    from facegan.trainer.export import export_generator
    from facegan.trainer.networks import build_networks
    cfg = get_preset("smoke", {"network.resolution": 16, "network.z_dim": 8, "network.filters": 4})
    root = tmp_path_factory.mktemp("dcgan")
    tf.keras.utils.set_random_seed(0)
    g = build_networks(cfg).generator
    for v in g.trainable_variables:     # DCGAN's N(0, 0.02) init makes every z the same grey image
        if "kernel" in v.name:
            v.assign(v * 10.0)
    return export_generator(g, str(root / "1"), cfg=cfg, max_batch=16)


@pytest.fixture(scope="module")
def edit_version(dcgan_export):
    from facegan.generator.edit import export_edit_version, next_version_dir
    out = next_version_dir(dcgan_export)
    assert out.endswith("/2")
    directions = np.random.default_rng(1).standard_normal((2, 8)) * 5
    export_edit_version(dcgan_export, out, NAMES, directions, extra_metadata={"directions": {"note": "test"}})
    return out, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def test_edit_signatures(dcgan_export, edit_version):
    from facegan.generator import load_generator, sample_latents
    out, normals = edit_version
    src, gen = load_generator(dcgan_export), load_generator(out)
    assert set(src.signatures) < set(gen.signatures)
    assert {"edit", "edit_sample", "attribute_names", "facegan_metadata"} <= set(gen.signatures)
    names = gen.signatures["attribute_names"]()["attribute_names"].numpy().astype(str).tolist()
    assert names == NAMES
    meta = json.loads(gen.signatures["facegan_metadata"]()["metadata"].numpy()[0])
    assert meta["edit"]["attributes"] == NAMES and meta["directions"] == {"note": "test"}
    assert gen.metadata["edit"]["attributes"] == NAMES
    np.testing.assert_array_equal(gen.sample(4, 3, 0.8), src.sample(4, 3, 0.8))     # source signatures kept
    s = tf.constant

    def edit_sample(attribute, strength, num=4, seed=3, truncation=0.8):
        return gen.signatures["edit_sample"](num=s(num, tf.int32), seed=s(seed, tf.int64), attribute=s(attribute),
                                             strength=s(strength, tf.float32), truncation=s(truncation))["images"].numpy()

    np.testing.assert_array_equal(edit_sample(NAMES, [0.0, 0.0]), src.sample(4, 3, 0.8))
    z = sample_latents(3, 0, 4, 8).numpy()
    moved = z + 2.0 * normals[1] - 1.0 * normals[0]
    want = src.generate(moved.astype(np.float32), 0.8)
    got = gen.signatures["edit"](z=s(z), attribute=s(["male", "smiling"]), strength=s([2.0, -1.0]),
                                 truncation=s(0.8))["images"].numpy()
    assert np.abs(got.astype(int) - want).max() <= 1          # float sums in another order
    assert np.abs(got.astype(int) - src.generate(z, 0.8)).max() > 0
    for attribute, strength, fragment in [(["smiling", "bald"], [1.0, 1.0], "unknown attribute"),
                                          (["smiling"], [float("nan")], "strength must be finite"),
                                          (["smiling"], [float("inf")], "strength must be finite"),
                                          (["smiling", "male"], [1.0], "same length")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=fragment):
            edit_sample(attribute, strength)


@pytest.fixture(scope="module")
def served(edit_version):
    """`facegan serve` over the base holding the export (1) and its edit version (2), both served."""
    import os
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    base = os.path.dirname(edit_version[0])
    srv = Server([ModelSpec("faces", base, policy="all")], port=0, host="127.0.0.1", rest_api_port=0,
                 poll_wait_s=0).start()
    yield srv
    srv.stop()


def test_edit_refusals_over_rest(dcgan_export, edit_version, served):
    from facegan.generator import read_metadata
    url = f"http://127.0.0.1:{served.rest_api_port}/v1/models/faces:predict"

    def post(inputs):
        body = json.dumps({"signature_name": "edit_sample", "inputs": inputs}).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body), timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    ok = {"num": 2, "seed": 1, "attribute": ["male"], "strength": [1.5], "truncation": 1.0}
    code, body = post(ok)
    assert code == 200 and np.asarray(body["outputs"]["images"]).shape == (2, 16, 16, 3)
    code, body = post(dict(ok, attribute=["bald"]))
    assert code == 400 and "unknown attribute" in body["error"]
    # The ordinary export (version 1) serves its metadata too: preset, steps, metrics for the page.
    body = json.dumps({"signature_name": "facegan_metadata", "inputs": {}}).encode()
    with urllib.request.urlopen(urllib.request.Request(url.replace("/faces:", "/faces/versions/1:"), body),
                                timeout=60) as r:
        out = json.loads(r.read())["outputs"]
    meta = json.loads((out["metadata"] if isinstance(out, dict) else out)[0])
    assert meta == read_metadata(dcgan_export) and meta["preset"] == "smoke" and "steps" in meta


def _sample_cli(argv):
    import argparse
    from facegan.serving import client
    p = argparse.ArgumentParser()
    client.add_arguments(p)
    return client.main(p.parse_args(argv))


def test_sample_attr_on_an_edit_version_uses_edit_sample(dcgan_export, edit_version, served, tmp_path, capsys):
    """`facegan sample --attr` on a directions version moves the seed's latents along the named
    directions (edit_sample), over gRPC and REST; plain sample works; bad requests get one line."""
    from facegan.generator import load_generator
    from facegan.images import decode_png
    from facegan.serving.client import GrpcClient, RestClient, edit_sample
    gen = load_generator(edit_version[0])
    s = tf.constant
    want = gen.signatures["edit_sample"](num=s(3, tf.int32), seed=s(2, tf.int64), attribute=s(["male"]),
                                         strength=s([1.5]), truncation=s(0.9))["images"].numpy()
    assert np.abs(want.astype(int) - gen.sample(3, 2, 0.9)).max() > 0          # the edit moves the images
    with GrpcClient(f"127.0.0.1:{served.port}", 60) as grpc_client:
        got_grpc = edit_sample(grpc_client, "faces", 3, 2, {"male": 1.5}, 0.9)
    got_rest = edit_sample(RestClient(f"127.0.0.1:{served.rest_api_port}", 60), "faces", 3, 2, {"male": 1.5}, 0.9)
    np.testing.assert_array_equal(got_grpc, want)
    np.testing.assert_array_equal(got_rest, want)
    for where in (["--server", f"127.0.0.1:{served.port}"], ["--rest", f"127.0.0.1:{served.rest_api_port}"]):
        out = tmp_path / "grid.png"
        assert _sample_cli([*where, "--model", "faces", "--attr", "Male=1.5", "--num", "3", "--seed", "2",
                            "--psi", "0.9", "--cols", "3", "--out", str(out)]) == 0
        grid = decode_png(out.read_bytes())
        assert grid.shape[1] >= 3 * 16
        capsys.readouterr()
        assert _sample_cli([*where, "--model", "faces", "--num", "2", "--seed", "2", "--out", str(out)]) == 0
        for bad, fragment in ((["--attr", "bald=1"], "unknown direction(s) bald"),
                              (["--attr-sweep", "male"], "directions (edit) version")):
            assert _sample_cli([*where, "--model", "faces", *bad, "--out", str(out)]) == 2
            err = capsys.readouterr().err.strip()
            assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_strength_grid_moves_one_attribute_per_row(dcgan_export, edit_version):
    """`facegan directions --grid`: tile (attribute k, latent i, strength s) is the source's image at
    z_i + s n_k (the other attributes at 0), rows latents, columns strengths."""
    from facegan import directions as D
    from facegan.generator import load_generator, sample_latents
    out, normals = edit_version
    src, edited = load_generator(dcgan_export), tf.saved_model.load(out)
    z = sample_latents(7, 0, 2, 8).numpy()
    strengths = [-2.0, 0.0, 1.0]
    tiles = D.strength_grid(edited, NAMES, z, strengths, 0.8, 16)
    assert tiles.shape == (len(NAMES) * 2 * 3, 16, 16, 3)
    for k in range(len(NAMES)):
        for i in range(2):
            for j, s in enumerate(strengths):
                want = src.generate((z[i] + s * normals[k])[None].astype(np.float32), 0.8)[0]
                got = tiles[(k * 2 + i) * 3 + j]
                assert np.abs(got.astype(int) - want).max() <= 1, (k, i, s)
    assert np.abs(tiles[0].astype(int) - tiles[2]).max() > 0      # the strength moves the image


def _target(gen, z):
    return gen.generate(np.asarray(z, np.float32)[None], 1.0)[0]


def test_project_z_moves_toward_the_target(dcgan_export, tmp_path):
    from facegan import project as P
    from facegan.images import encode_png
    net, gen = P.rebuild_generator(dcgan_export)
    target = _target(gen, np.random.default_rng(4).standard_normal(8))
    # An untrained DCGAN (zero BN betas, ReLU) has no gradient at exactly z = 0: start nearby.
    z0 = 0.1 * np.random.default_rng(6).standard_normal(8)
    start = P.scores(target, _target(gen, z0))
    res = P.project(net, gen, target, space="z", steps=60, lr=0.05, ssim_weight=0.5, log_every=20,
                    progress=lambda s: None, z_init=z0)
    end = P.scores(target, res["reconstruction"])
    # Closer on every count (a projector that does not move leaves them equal).
    assert end["psnr"] > start["psnr"] and end["ssim"] > start["ssim"], (start, end)
    assert res["history"][-1]["loss"] < 0.8 * res["history"][0]["loss"]
    with pytest.raises(ValueError, match="no W space"):
        P.project(net, gen, target, space="w", steps=1, lr=0.1, ssim_weight=0.5)
    # The CLI: ingestion's decode/crop/resize of a photo, files written.
    (tmp_path / "face.png").write_bytes(encode_png(np.repeat(np.repeat(target, 2, 0), 2, 1)))
    import argparse
    args = argparse.Namespace(model=dcgan_export, image=str(tmp_path / "face.png"), out=str(tmp_path / "out"),
                              steps=5, space=None, crop="center", lr=None, ssim_weight=0.5, discriminator=None,
                              discriminator_weight=0.1, lpips_weights=None, lpips_weight=1.0)
    assert P.main(args) == 0
    report = json.loads((tmp_path / "out" / "projection.json").read_text())
    assert report["space"] == "z" and np.load(tmp_path / "out" / "latent.npy").shape == (8,)
    assert set(report["scores"]) >= {"psnr", "ssim", "ms_ssim"}


def _run_folder(root, cfg, seed=3):
    """A training run folder as `facegan train` leaves it (config.json, checkpoints/ckpt-N holding
    the GAN's networks by their checkpoint keys), with a D of known weights."""
    import os
    from facegan.trainer.networks import build_networks
    tf.keras.utils.set_random_seed(seed)
    nets = build_networks(cfg)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f)
    ckpt = tf.train.Checkpoint(generator=nets.generator, discriminator=nets.discriminator,
                               step=tf.Variable(7, dtype=tf.int64))
    path = tf.train.CheckpointManager(ckpt, os.path.join(root, "checkpoints"), max_to_keep=2).save()
    return nets.discriminator, path


def test_project_discriminator_and_lpips_terms(dcgan_export, tmp_path):
    """D's features from a run folder (named, or found from the export's metadata) and LPIPS from
    a weights file: restored as saved, each term changes the loss and the optimum, and a wrong
    folder is one line naming it."""
    from facegan import project as P
    from facegan.generator import read_metadata
    from facegan.trainer.config import Config
    from tests.testlib.explore import write_lpips_npz
    net, gen = P.rebuild_generator(dcgan_export)
    meta = read_metadata(dcgan_export)
    cfg = Config.from_dict(meta["config"])
    d, ckpt = _run_folder(str(tmp_path / "run"), cfg)
    term = P.load_discriminator(str(tmp_path / "run"), meta, 0.5)
    assert term.info["checkpoint"] == ckpt and term.info["layers"]
    assert [x.split()[1].rsplit("x", 1)[0] for x in term.info["layers"]] == ["8x8", "4x4"]   # 16 px D's 2 blocks
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
    layers = P.discriminator_feature_layers(d)
    want = tf.keras.Model(d.inputs, [layer.output for layer in layers])(x, training=False)
    for got, w in zip(term.features(x), want):                            # the saved D's weights
        np.testing.assert_allclose(got.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    auto = P.load_discriminator("auto", dict(meta, checkpoint={"run_dir": str(tmp_path / "run"), "path": ckpt}), 0.5)
    assert auto.info["checkpoint"] == ckpt
    lpips = P.load_lpips(write_lpips_npz(tmp_path / "lpips.npz"), 1.0)

    target = _target(gen, np.random.default_rng(4).standard_normal(8))
    z0 = 0.1 * np.random.default_rng(6).standard_normal(8)
    y = tf.constant(_target(gen, z0)[None].astype(np.float32) / 127.5 - 1)
    xt = tf.constant(target[None].astype(np.float32) / 127.5 - 1)
    plain, _ = P.projection_loss(y, xt, ssim_weight=0.5, structural="ssim")
    latents = {}
    for name, terms in (("plain", []), ("discriminator", [term]), ("lpips", [lpips])):
        if terms:
            loss, parts = P.projection_loss(y, xt, ssim_weight=0.5, structural="ssim", terms=terms,
                                            target_features=[terms[0].features(xt)])
            assert float(parts[name][0]) > 0 and float(loss[0]) > float(plain[0]), name
        res = P.project(net, gen, target, space="z", steps=20, lr=0.05, ssim_weight=0.5, log_every=10,
                        progress=lambda s: None, z_init=z0, terms=terms)
        assert (name == "plain") == (name not in res["history"][-1]), res["history"][-1]
        latents[name] = res["latent"]
    assert np.abs(latents["discriminator"] - latents["plain"]).max() > 1e-4
    assert np.abs(latents["lpips"] - latents["plain"]).max() > 1e-4

    bad = cfg.to_dict()
    bad["network"]["resolution"] = 32
    import os
    os.makedirs(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text(json.dumps(bad))
    for folder, fragment in ((tmp_path / "other", "network.resolution is 32, the export's 16"),
                             (tmp_path / "missing", "no such run folder")):
        with pytest.raises(ValueError) as e:
            P.load_discriminator(str(folder), meta, 0.5)
        assert str(e.value).startswith(f"--discriminator {folder}: ") and fragment in str(e.value), str(e.value)
    bad["network"]["resolution"] = 16
    (tmp_path / "other" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="no checkpoint in"):
        P.load_discriminator(str(tmp_path / "other"), meta, 0.5)


@pytest.fixture(scope="module")
def stylegan_export(tmp_path_factory):
    from facegan.trainer.config import get_preset
    from facegan.trainer.export import export_generator
    from facegan.trainer.networks import build_networks
    cfg = get_preset("smoke_stylegan2", {"network.resolution": 8, "network.z_dim": 8, "network.w_dim": 6,
                                         "network.channel_base": 16, "network.channel_max": 8,
                                         "network.mapping_layers": 1, "tricks.truncation_cutoff": 2})
    tf.keras.utils.set_random_seed(2)
    g = build_networks(cfg).generator
    g(tf.random.normal([64, 8]), training=True)          # a w_avg away from 0, so truncation moves w
    return export_generator(g, str(tmp_path_factory.mktemp("sg") / "1"), cfg=cfg, max_batch=16)


@pytest.fixture(scope="module")
def stylegan_rebuilt(stylegan_export):
    from facegan import project as P
    return P.rebuild_generator(stylegan_export)


def test_edit_in_w_moves_w_with_truncation_about_w_avg(stylegan_export, stylegan_rebuilt):
    """`--space w`: the edit maps z to w, moves w along the normals and truncates about w_avg on
    the layers below the export's cutoff, as `generate` does; strength 0 is the source's image."""
    from facegan.generator import load_generator
    from facegan.generator.edit import export_edit_version, next_version_dir
    net, src = stylegan_rebuilt
    assert np.abs(net.w_avg.numpy()).max() > 0
    normals = np.random.default_rng(3).standard_normal((2, 6))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    with pytest.raises(ValueError, match=r"directions must be finite \[2, 6\] \(space w\)"):
        export_edit_version(stylegan_export, next_version_dir(stylegan_export), NAMES, np.ones((2, 8)),
                            space="w", net=net)
    out = export_edit_version(stylegan_export, next_version_dir(stylegan_export), NAMES, normals, space="w", net=net)
    gen = load_generator(out)
    assert gen.metadata["edit"]["space"] == "w"
    s = tf.constant
    z = np.random.default_rng(8).standard_normal((3, 8)).astype(np.float32)

    def edit(strength, psi=0.6):
        return gen.signatures["edit"](z=s(z), attribute=s(NAMES), strength=s(strength, tf.float32),
                                      truncation=s(psi))["images"].numpy()

    assert np.abs(edit([0.0, 0.0]).astype(int) - src.generate(z, 0.6)).max() <= 1
    from facegan.generator import to_uint8
    w = (net.map(tf.constant(z)).numpy() + 2.0 * normals[0] - 1.5 * normals[1]).astype(np.float32)
    want = to_uint8(net.synthesis(net.truncate(tf.constant(w), 0.6, 2))).numpy()
    got = edit([2.0, -1.5])
    assert np.abs(got.astype(int) - want).max() <= 1
    assert np.abs(got.astype(int) - src.generate(z, 0.6)).max() > 0                 # the edit moves the image
    untruncated = to_uint8(net.synthesis(net.truncate(tf.constant(w), 1.0))).numpy()
    assert np.abs(got.astype(int) - untruncated).max() > 1                           # psi applied after the move
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncation must be in"):
        edit([1.0, 0.0], psi=0.0)


def test_project_stylegan2_w_and_wplus(stylegan_rebuilt):
    from facegan import project as P
    net, gen = stylegan_rebuilt
    target = _target(gen, np.random.default_rng(5).standard_normal(8))
    start = P.scores(target, P.project(net, gen, target, space="w", steps=1, lr=1e-9, ssim_weight=0.5,
                                       progress=lambda s: None)["reconstruction"])
    for space, shape in (("w", (6,)), ("wplus", (net.num_ws, 6))):
        res = P.project(net, gen, target, space=space, steps=60, lr=0.1, ssim_weight=0.5, progress=lambda s: None)
        assert res["latent"].shape == shape
        assert P.scores(target, res["reconstruction"])["psnr"] > start["psnr"] + 1.0, space
