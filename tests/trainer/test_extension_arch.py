"""Adding an architecture with settings of its own is one new module plus one registration: a
throwaway module (written to tmp_path and imported here) defines its settings dataclass with a
validator and a builder, and registers them; the config parses, validates and refuses its fields,
and `facegan train` builds and trains it with its setting in the networks."""
import dataclasses
import importlib
import json
import os
import sys
import textwrap

import pytest

from facegan.trainer import config as C
from facegan.trainer import registry
from tests.testlib.examples import write_synthetic_examples

HIDDEN, RES, Z = 5, 16, 8

TOY_MODULE = '''
"""A throwaway architecture: an MLP generator and critic whose width is its own setting."""
import dataclasses

from facegan.trainer import registry
from facegan.trainer.settings import ConfigError, NetworkConfig


@dataclasses.dataclass
class ToySettings(NetworkConfig):
    architecture: str = "toy_mlp"
    hidden: int = 8                     # width of G's and D's one hidden layer

    def validate(self, cfg, arch, family):
        if self.hidden < 1:
            raise ConfigError(f"network.hidden must be >= 1, got {self.hidden}")


def build(cfg, alpha=None):
    import tensorflow as tf
    from facegan.trainer.networks import Networks
    n, R = cfg.network, cfg.network.resolution
    z = tf.keras.Input((n.z_dim,), name="z")
    h = tf.keras.layers.Dense(n.hidden, activation="relu", name="toy_g_hidden")(z)
    x = tf.keras.layers.Reshape((R, R, 3))(tf.keras.layers.Dense(R * R * 3, name="toy_g_out")(h))
    G = tf.keras.Model(z, tf.keras.layers.Activation("tanh", dtype="float32")(x), name="toy_generator")
    img = tf.keras.Input((R, R, 3), name="images")
    f = tf.keras.layers.Dense(n.hidden, activation="relu", name="toy_d_hidden")(tf.keras.layers.Flatten()(img))
    logits = tf.keras.layers.Dense(1, dtype="float32", name="toy_d_logits")(f)
    D = tf.keras.Model(img, {"logits": logits, "features": tf.keras.layers.Activation("linear", dtype="float32")(f)},
                       name="toy_discriminator")
    return Networks(G, D, resolution=R, default_batch_size=cfg.optim.batch_size)


registry.register_architecture(registry.Architecture(
    "toy_mlp", f"{__name__}:build", "a throwaway MLP GAN (tests)", settings=ToySettings))
'''


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy_arch_ext.py").write_text(textwrap.dedent(TOY_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("toy_arch_ext")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toy_arch_ext", None)
        registry.ARCHITECTURES.unregister("toy_mlp")


def test_its_settings_parse_validate_and_refuse(toy):
    cfg = C.get_preset("smoke", {"network.architecture": "toy_mlp", "network.hidden": HIDDEN})
    assert type(cfg.network) is toy.ToySettings and cfg.network.hidden == HIDDEN
    assert cfg.network.z_dim == C.get_preset("smoke").network.z_dim          # common fields carried
    assert C.Config.from_dict(json.loads(cfg.to_json())) == cfg
    assert C.get_preset("smoke", {"network.architecture": "toy_mlp"}).network.hidden == 8   # its default
    with pytest.raises(C.ConfigError, match=r"^network.hidden must be >= 1, got 0$"):
        C.get_preset("smoke", {"network.architecture": "toy_mlp", "network.hidden": 0})
    with pytest.raises(C.ConfigError, match=r"^network.hidden: dcgan has no such setting \(a setting of toy_mlp\)$"):
        C.get_preset("smoke", {"network.hidden": 4})
    with pytest.raises(C.ConfigError, match=r"^network.batch_norm: toy_mlp has no BatchNorm switch"):
        C.get_preset("smoke", {"network.architecture": "toy_mlp", "network.batch_norm": False})


def test_it_builds_and_trains_through_facegan_train(toy, tmp_path):
    import tensorflow as tf
    from facegan import cli, examples_io
    data = write_synthetic_examples(str(tmp_path / "examples"), n_train=16, n_eval=4, resolution=RES)
    out = str(tmp_path / "run")
    rc = cli.main(["train", "--data", data, "--out", out, "--preset", "smoke", "--resolution", str(RES),
                   "--steps", "2", "--no-export", "--set", 'network.architecture="toy_mlp"',
                   "--set", f"network.hidden={HIDDEN}", "--set", f"network.z_dim={Z}",
                   "--set", "optim.batch_size=4"])
    assert rc == 0
    with open(os.path.join(out, "config.json")) as f:
        written = json.load(f)["network"]
    assert written["hidden"] == HIDDEN and "batch_norm" not in written
    ckpt = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    assert ckpt.endswith("-2")
    # the setting reached the networks: G's parameters are those of z -> hidden -> R*R*3
    reader = tf.train.load_checkpoint(ckpt)
    sizes = [int(tf.TensorShape(s).num_elements()) for k, s in reader.get_variable_to_shape_map().items()
             if k.startswith("generator/") and "OPTIMIZER_SLOT" not in k and k.endswith("VARIABLE_VALUE")]
    out_units = RES * RES * 3
    assert sum(sizes) == Z * HIDDEN + HIDDEN + HIDDEN * out_units + out_units


def test_stylegan_config_extends_the_registered_settings_without_repeating_them():
    from facegan.trainer.networks import stylegan2 as S
    settings = registry.architecture("stylegan2").settings
    assert issubclass(S.StyleGANConfig, settings)
    own = [f.name for f in dataclasses.fields(S.StyleGANConfig) if f.name not in C.field_names(settings)]
    assert own == ["style_mode", "num_attributes", "discriminator"]
    cfg = C.get_preset("smoke_stylegan2", {"network.architecture": "cstylegan2", "condition.attributes": "male",
                                           "network.mapping_layers": 3})
    sc = S.style_config(cfg)
    assert (sc.mapping_layers, sc.w_dim, sc.num_attributes) == (3, cfg.network.w_dim, 1)
