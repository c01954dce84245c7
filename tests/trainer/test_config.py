"""The TensorFlow-free side of the trainer: config validation and `facegan train --help` read the
architecture / loss registries (trainer/registry.py) without importing TensorFlow."""
import json
import subprocess
import sys

import pytest

from facegan.trainer import config as C
from facegan.trainer import registry


def test_config_registry_and_help_do_not_import_tensorflow():
    code = ("import sys, argparse\n"
            "from facegan.trainer import config, cli\n"
            "config.get_preset('smoke_progan')\n"
            "cli.add_arguments(argparse.ArgumentParser())\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_help_lists_presets_architectures_losses_defaults_and_example(capsys):
    from facegan import cli
    try:
        cli.main(["train", "--help"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    for name in list(C.PRESETS) + list(registry.ARCHITECTURES) + list(registry.LOSSES):
        assert f"\n  {name} " in text, name
    flat = " ".join(text.split())     # argparse wraps lines
    assert "(default: runs/<preset>-<resolution>px-<hash of the config and data path>)" in flat
    assert "required unless --config is given" in flat
    assert "example:\n  facegan train --preset" in text


def test_stage_resolutions_are_the_registry_s():
    assert registry.stage_resolutions(C.get_preset("progan").network) == (4, 8, 16, 32, 64, 128)
    grown = C.get_preset("progan", {"network.start_resolution": 16, "network.resolution": 64,
                                    "network.batch_sizes": {}})
    assert registry.stage_resolutions(grown.network) == (16, 32, 64)
    assert registry.stage_resolutions(C.get_preset("hdcgan").network) == (512,)   # issue 14: the paper trains at 512


def test_import_by_name_and_unknown_names():
    assert registry.import_by_name("os.path:join") is __import__("os").path.join
    for lookup, name in ((registry.architecture, "network.architecture"), (registry.loss_family, "loss.family")):
        try:
            lookup("nope")
        except registry.RegistryError as e:
            assert str(e).startswith(f"{name} 'nope' is not one of ")
        else:
            raise AssertionError("no error")


# -- per-model settings ------------------------------------------------------------------------------
# The `network` and `loss` sections as the single union dataclasses wrote them into every
# config.json before per-model settings (generated once from that code: `Config().to_dict()`).
OLD_NETWORK = {
    "architecture": "dcgan", "batch_norm": True, "batch_sizes": {}, "channel_base": 32768, "channel_max": 512,
    "domain_attribute": "eyeglasses", "dropout": 0.5, "equalized_lr": True, "fade_images": 600000,
    "fade_reals": True, "filters": 64, "input_noise_std": 0.0, "mapping_layers": 8, "mapping_lr_mul": 0.01,
    "max_filters": 512, "mbstd_extra_stats": False, "mbstd_group_size": 4, "minibatch_stddev": True,
    "mixing_prob": 0.9, "output_activation": "tanh", "pixelnorm": True, "reset_optimizer_at_fade": True,
    "residual_d": False, "residual_g": False, "resnet_blocks": 9, "resolution": 64, "stable_images": 600000,
    "start_resolution": 4, "w_avg_beta": 0.995, "w_dim": 512, "z_dim": 100}
OLD_LOSS = {
    "clip_value": 0.01, "cycle_weight": 10.0, "drift": 0.0, "family": "ns", "gp_weight": 10.0,
    "identity_weight": 0.5, "l1_weight": 100.0, "lsgan_a": 0.0, "lsgan_b": 1.0, "lsgan_c": 1.0,
    "pl_batch_shrink": 2, "pl_decay": 0.01, "pl_interval": 4, "pl_weight": 2.0, "r1_gamma": 10.0,
    "r1_interval": 16}


def old_form(cfg):
    """The config.json the union config wrote for `cfg`: every model's fields, the others at their defaults."""
    d = cfg.to_dict()
    return dict(d, network={**OLD_NETWORK, **d["network"]}, loss={**OLD_LOSS, **d["loss"]})


def test_each_model_s_settings_hold_only_its_fields():
    progan, dcgan, sg = C.get_preset("smoke_progan"), C.get_preset("smoke"), C.get_preset("smoke_stylegan2")
    assert type(progan.network) is registry.architecture("progan").settings
    assert progan.network.fade_images == 64 and progan.loss.drift == 0.001
    assert "fade_images" in progan.to_dict()["network"] and "fade_images" not in dcgan.to_dict()["network"]
    assert not hasattr(dcgan.network, "mapping_layers") and not hasattr(dcgan.loss, "r1_gamma")
    assert sg.to_dict()["network"]["mapping_layers"] == 2 and "batch_norm" not in sg.to_dict()["network"]
    assert set(dcgan.to_dict()["loss"]) == {"family"}          # ns has no parameters
    for cfg in (progan, dcgan, sg):                              # config.json round-trips
        assert C.Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_another_model_s_field_is_refused_naming_who_has_it():
    with pytest.raises(C.ConfigError, match=r"^network.mapping_layers: dcgan has no such setting "
                                            r"\(a setting of stylegan2, cstylegan2, stylegan\)$"):
        C.get_preset("smoke", {"network.mapping_layers": 4})
    with pytest.raises(C.ConfigError, match=r"^loss.r1_gamma: ns has no such setting \(a setting of nsgan_r1\)$"):
        C.get_preset("smoke", {"loss.r1_gamma": 1.0})
    with pytest.raises(C.ConfigError, match=r"^network.batch_norm: progan has no BatchNorm switch"):
        C.get_preset("smoke_progan", {"network.batch_norm": False})
    with pytest.raises(C.ConfigError, match=r"^unknown config field 'network.nope'$"):
        C.get_preset("smoke", {"network.nope": 1})
    with pytest.raises(C.ConfigError, match="loss.lsgan_a: ns has no such setting"):
        C.loss_settings("ns", lsgan_a=1.0)


def test_switching_model_by_override_builds_its_settings_from_the_common_fields():
    cfg = C.get_preset("smoke", {"network.architecture": "stylegan2", "network.mapping_layers": 4,
                                 "loss.family": "nsgan_r1", "loss.r1_gamma": 0.5})
    sg_defaults = registry.architecture("stylegan2").settings()
    assert type(cfg.network) is registry.architecture("stylegan2").settings
    assert (cfg.network.resolution, cfg.network.z_dim, cfg.network.filters) == (32, 32, 16)   # smoke's
    assert cfg.network.mapping_layers == 4 and cfg.network.w_dim == sg_defaults.w_dim
    assert (cfg.loss.family, cfg.loss.r1_gamma, cfg.loss.r1_interval) == ("nsgan_r1", 0.5, 16)
    assert "input_noise_std" not in cfg.to_dict()["network"]     # dcgan's own fields went
    # same-named fields carry over (progan's and stylegan2's minibatch-stddev group)
    sg = C.get_preset("smoke_progan", {"network.mbstd_group_size": 2, "network.architecture": "stylegan2",
                                       "loss.family": "nsgan_r1"})
    assert sg.network.mbstd_group_size == 2


def test_a_config_json_of_the_union_config_still_loads_and_resumes(tmp_path):
    from facegan.trainer import cli, runs
    for name in C.preset_names():
        cfg = C.get_preset(name)
        assert C.Config.from_dict(old_form(cfg)) == cfg, name
    # `facegan train --config RUN_DIR` on an old run folder
    run = tmp_path / "run"
    run.mkdir()
    cfg = C.get_preset("smoke_progan")
    (run / "config.json").write_text(json.dumps(old_form(cfg)))
    assert cli.load_config_file(str(run)) == cfg
    # resuming: the folder's old run.json compares equal with today's config of the same command
    runs.write_record(str(run), old_form(cfg), "/data", steps=5, changes={}, argv=["train"])
    assert runs.check_folder(str(run), cfg.to_dict(), "/data", allow_changes=False)["changes"] == {}
    # another model's field set to something else than its default is refused, in one line
    bad = old_form(C.get_preset("smoke"))
    bad["network"]["fade_images"] = 64
    with pytest.raises(C.ConfigError) as e:
        C.Config.from_dict(bad)
    assert str(e.value) == ("network.fade_images = 64: dcgan has no such setting (a setting of progan, "
                            "cprogan); remove it from the config")
    (run / "config.json").write_text(json.dumps(bad))
    with pytest.raises(C.ConfigError, match=r"^--config .*config.json: network.fade_images = 64: dcgan"):
        cli.load_config_file(str(run))
    # ... and a run recorded with it differs from today's config of its command in that field only
    assert runs.differences(runs.identity(C.without_other_models_defaults(bad), "/data"),
                            runs.identity(C.get_preset("smoke").to_dict(), "/data")) == {
        "network.fade_images": (64, None)}


def test_config_py_tests_no_model_names():
    # each model's rules live in its settings class; config.py keeps the cross-cutting ones
    import inspect
    import re
    src = inspect.getsource(C).split("# -- presets")[0]
    assert not re.findall(r"(family|architecture) *[!=]= *[\"']", src)


def test_a_loss_family_registers_its_settings_and_they_bind():
    import dataclasses

    from facegan.trainer.settings import ConfigError, LossConfig

    @dataclasses.dataclass
    class ScaledSettings(LossConfig):
        family: str = "scaled_ns_test"
        scale: float = 1.0

        def validate(self, cfg, arch, family):
            if self.scale <= 0:
                raise ConfigError(f"loss.scale must be > 0, got {self.scale}")

    with pytest.raises(ValueError, match=r"g_params/d_params name \['nope'\]"):
        registry.LossFamily("bad", "f", "g", "h", "s", g_params=(("k", "nope"),), settings=ScaledSettings)
    registry.register_loss(registry.LossFamily(
        "scaled_ns_test", "ns_generator_loss", "ns_discriminator_loss", "softplus_lens_loss", "test only",
        g_params=(("scale", "scale"),), settings=ScaledSettings))
    try:
        cfg = C.get_preset("smoke", {"loss.family": "scaled_ns_test", "loss.scale": 3.0})
        assert type(cfg.loss) is ScaledSettings and cfg.loss.scale == 3.0
        assert registry.LossFamily._params(registry.loss_family("scaled_ns_test").g_params, cfg.loss) == {"scale": 3.0}
        with pytest.raises(C.ConfigError, match=r"^loss.scale must be > 0, got 0.0$"):
            C.get_preset("smoke", {"loss.family": "scaled_ns_test", "loss.scale": 0.0})
        with pytest.raises(C.ConfigError, match=r"^loss.scale: ns has no such setting \(a setting of scaled_ns_test\)$"):
            C.get_preset("smoke", {"loss.scale": 2.0})
    finally:
        registry.LOSSES.unregister("scaled_ns_test")
