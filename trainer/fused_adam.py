"""Keras Adam whose dense update runs as TensorFlow's fused `ResourceApplyAdam` kernel.

Keras 2.15's `tf.keras.optimizers.Adam.update_step` builds the dense update from about a dozen
separate ops per variable (sub, mul, two assign_adds, square, sqrt, add, div, assign_sub, reads),
each a full pass over the variable; on a CPU (where Keras ignores the optimizer's `jit_compile`)
they are a measurable part of a GAN step (bench/profile_step.py, group
`optimizer_ema_variables`). `ResourceApplyAdam` computes the same expressions in one kernel:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2);  var -= m * alpha / (sqrt(v) + eps)

which is Keras' dense formula term for term (keras/src/optimizers/adam.py), with the same
beta powers (computed here as Keras does, float32 `pow(beta, iterations + 1)`). One difference in
the last bits: the kernel forms 1 - beta in float32 where Keras forms it in double, so with
beta_2 = 0.999 the second moment's coefficient differs by 1.3e-5 relative (as if beta_2 were
0.99900001); tests check the two give the same variables and slots to 5e-5 relative over several
steps. Being a change in rounding, it is opt-in (`optim.optimizer: adam_fused`): runs with
`adam` keep their exact numbers. Everything else is Keras' Adam: the slot variables
(`m`, `v`, so checkpoints are interchangeable), sparse gradients and amsgrad (Keras' own update).
"""
from __future__ import annotations

import tensorflow as tf


class FusedAdam(tf.keras.optimizers.Adam):
    """`tf.keras.optimizers.Adam` with its dense, non-amsgrad update fused (module docstring)."""

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step), lr=lr, beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.convert_to_tensor(gradient, dtype), use_locking=False)
