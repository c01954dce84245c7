"""The TensorFlow-free side of the trainer: config validation and `facegan train --help` read the
architecture / loss registries (trainer/registry.py) without importing TensorFlow."""
import subprocess
import sys

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
