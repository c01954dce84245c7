"""The optimizers a GAN trains with, from the config (TensorFlow).

`make_optimizer(cfg, lr, lazy_interval)`: Adam (or RMSProp for WGAN with weight clipping, or the
fused Adam kernel), with StyleGAN2's lazy-regularization rescaling when a phase of the loss runs
every `lazy_interval` minibatches, wrapped in loss scaling under mixed_float16.
"""
from __future__ import annotations

from typing import List, Tuple

import tensorflow as tf

from facegan.trainer import registry
from facegan.trainer.config import Config
from facegan.trainer.fused_adam import FusedAdam


def lazy_optimizer_params(lr: float, beta_1: float, beta_2: float, interval: int) -> Tuple[float, float, float]:
    """Adam settings under lazy regularization every `interval` steps (StyleGAN2 App. B):
    c = interval / (interval + 1); (c lr, beta_1^c, beta_2^c). interval 0/None: unchanged."""
    if not interval:
        return lr, beta_1, beta_2
    if int(interval) < 1:
        raise ValueError(f"lazy_optimizer_params: lazy regularization interval must be >= 1, got {interval}")
    c = interval / (interval + 1.0)
    return lr * c, beta_1 ** c, beta_2 ** c


def optimizer_name(cfg: Config) -> str:
    """`optim.optimizer`, with "auto" resolved to the loss family's paper optimizer (RMSProp for
    WGAN with weight clipping, Arjovsky et al. 2017; Adam otherwise)."""
    if cfg.optim.optimizer != "auto":
        return cfg.optim.optimizer
    return registry.loss_family(cfg.loss.family).optimizer


def make_optimizer(cfg: Config, learning_rate: float, lazy_interval: int = 0) -> tf.keras.optimizers.Optimizer:
    """The config's optimizer; `lazy_interval` > 0: StyleGAN2's lazy-regularization Adam rescaling."""
    o = cfg.optim
    if optimizer_name(cfg) == "rmsprop":
        opt = tf.keras.optimizers.RMSprop(learning_rate=learning_rate, epsilon=o.epsilon)
    else:
        learning_rate, beta1, beta2 = lazy_optimizer_params(learning_rate, o.beta1, o.beta2, lazy_interval)
        # adam_fused: the same update in one kernel per variable (equal up to float rounding)
        adam = FusedAdam if optimizer_name(cfg) == "adam_fused" else tf.keras.optimizers.Adam
        opt = adam(learning_rate=learning_rate, beta_1=beta1, beta_2=beta2, epsilon=o.epsilon)
    if cfg.run.mixed_precision == "mixed_float16":   # loss scaling: float16 gradients underflow
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def unique_variables(models) -> List[tf.Variable]:
    """The trainable variables of `models`, each once (progressive stages share blocks)."""
    seen, out = set(), []
    for m in models:
        for v in m.trainable_variables:
            if v.ref() not in seen:
                seen.add(v.ref())
                out.append(v)
    return out
