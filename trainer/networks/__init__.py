"""The model zoo: the networks contract every architecture meets, and `build_networks`.

Architectures are registered (TensorFlow-free, with what config validation and the pipeline need
to know) in trainer/registry.py; `build_networks` imports the registered builder by name.

Contract with the training loop (trainer/gan.py)
-----------------------------------------------
    nets = build_networks(cfg)            # call under strategy.scope() (and after setting the
                                          # mixed-precision policy: outputs stay float32)
    nets.generator      z float32 [N, z_dim] -> images float32 [N, R, R, 3] in [-1, 1] (tanh),
                        R = cfg.network.resolution. Call with training=True while training
                        (BatchNorm, HDCGAN's input noise).
    nets.discriminator  images [N, R, R, 3] in [-1, 1] -> {"logits": float32 [N, 1],
                        "features": float32 [N, F]}; `features` is an intermediate layer (the
                        input of the last dense layer, before minibatch discrimination) used by
                        feature matching and the repelling regularizer.
    nets.progressive    True for progan.
    nets.stage_resolutions  the resolutions trained, in order (registry.Architecture
                        .stage_resolutions: start_resolution doubling to R, or just (R,));
                        nets.stages() -> [(G, D) per stage] in that order.
    nets.alpha          progan: non-trainable tf.Variable, fade-in weight in [0, 1] read inside the
                        models (assign `stage.alpha` every step while fading; checkpoint it).
                        None otherwise.
    nets.stage_models(resolution) -> (G, D) at a resolution in [start_resolution, R], sharing
                        weights with the full models (cached: the same objects every call).
                        TRAIN these (their trainable_variables are exactly what the stage uses).
                        progan: `nets.generator` / `nets.discriminator` compute the same function
                        as stage R but are distinct Model objects that also track the earlier
                        stages' toRGB/fromRGB layers, so checkpoint / EMA / export THEM (all
                        weights; unused ones get no gradient at stage R).
                        Non-progressive: (generator, discriminator); other resolutions raise.
    nets.schedule(images_shown) -> Stage(resolution, alpha, batch_size, fading, phase): pure
                        python, from start_resolution, fade_images, stable_images and batch_sizes
                        (missing sizes fall back to cfg.optim.batch_size). Non-progressive:
                        Stage(R, 1.0, cfg.optim.batch_size, False, 0) always.
    build_networks(cfg, alpha=nets.alpha) builds an independent second copy (fresh weights) that
                        shares the fade-in variable: use it for the generator EMA.

Architectures (each from its paper, see the module): dcgan, hdcgan, facegan (convnets.py, one
shared builder), progan (progan.py). The lens of Tempered Adversarial Networks is `lens.py`.
Add one as a module with `build(cfg, alpha=None) -> Networks` (and, if it has settings of its
own, a `settings.NetworkConfig` subclass with its validator, which `cfg.network` then is) plus one
`registry.register_architecture(Architecture(..., settings=...))` (trainer/registry.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from facegan.trainer import registry


@dataclasses.dataclass(frozen=True)
class Stage:
    resolution: int
    alpha: float
    batch_size: int
    fading: bool
    phase: int = 0       # 0 = first stable phase, then fade/stable alternate per resolution


@dataclasses.dataclass
class Networks:
    generator: tf.keras.Model
    discriminator: tf.keras.Model
    progressive: bool = False
    alpha: Optional[tf.Variable] = None
    resolution: int = 0
    default_batch_size: int = 0
    stage_fn: Optional[Callable[[int], Tuple[tf.keras.Model, tf.keras.Model]]] = None
    schedule_fn: Optional[Callable[[int], Stage]] = None
    stage_resolutions: Tuple[int, ...] = ()   # set by build_networks from the registry

    def checkpoint_items(self) -> Dict[str, object]:
        """What a checkpoint holds for these networks (registry.Architecture.checkpoints names
        the keys): G and D (which track every stage's weights), and for progressive growing the
        stage models and the fade-in variable."""
        items = {"generator": self.generator, "discriminator": self.discriminator}
        if self.progressive:
            stages = self.stages()
            items.update(g_stages=[g for g, _ in stages], d_stages=[d for _, d in stages], alpha=self.alpha)
        return items

    def stages(self) -> List[Tuple[tf.keras.Model, tf.keras.Model]]:
        """(G, D) of every stage, in `stage_resolutions` order (one pair when not progressive)."""
        return [self.stage_models(r) for r in self.stage_resolutions]

    def stage_models(self, resolution: int) -> Tuple[tf.keras.Model, tf.keras.Model]:
        if self.stage_fn is not None:
            return self.stage_fn(int(resolution))
        if int(resolution) != self.resolution:
            raise ValueError(f"stage_models({resolution}): this architecture is not progressive; "
                             f"its only resolution is {self.resolution}")
        return self.generator, self.discriminator

    def schedule(self, images_shown: int) -> Stage:
        if self.schedule_fn is not None:
            return self.schedule_fn(int(images_shown))
        return Stage(self.resolution, 1.0, self.default_batch_size, False, 0)


def build_networks(cfg, alpha: Optional[tf.Variable] = None) -> Networks:
    """Build G and D for `cfg` (a validated trainer.config.Config) with its registered builder."""
    arch = registry.architecture(cfg.network.architecture)
    nets = arch.load()(cfg, alpha=alpha)
    nets.stage_resolutions = arch.stage_resolutions(cfg.network)
    return nets
