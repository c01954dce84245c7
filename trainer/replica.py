"""Replica helpers: per-example averages over the GLOBAL batch, global random draws, explicit
gradient all-reduce and one-collective metric reduction. Pure functions of the replica context.

The rules (so a run gives the same result on 1 or N replicas for the same global batch):
- every per-example loss is averaged with `tf.nn.compute_average_loss(global_batch_size=...)`, so
  per-replica losses sum to the global mean (`average`);
- gradients are all-reduced explicitly (SUM) before `apply_gradients(skip_gradients_aggregation=
  True)`, so gradient norms and the NaN check see the *global* gradient (`apply`);
- randomness is drawn for the whole global batch from a stateless key and each replica takes its
  slice (`global_slice`): the numbers an example sees do not depend on how many replicas there are;
- batch-level terms are computed per replica and averaged over replicas (`per_replica_scalar`;
  a documented approximation, exact on one replica);
- metrics are all-reduced in one collective and every replica returns the global values (`reduce`).
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM


def num_replicas() -> int:
    return tf.distribute.get_replica_context().num_replicas_in_sync


def average(per_example, global_batch_size: int):
    """This replica's share of the global mean of a per-example value [n] (replica sum = mean)."""
    return tf.nn.compute_average_loss(tf.cast(per_example, tf.float32), global_batch_size=global_batch_size)


def per_replica_scalar(scalar):
    """A batch-level term computed per replica: divide so the replica sum is the mean."""
    return tf.cast(scalar, tf.float32) / num_replicas()


def rows(n_global: int):
    """(global rows, this replica's offset) for a global batch of n_global rows."""
    ctx = tf.distribute.get_replica_context()
    local = n_global // ctx.num_replicas_in_sync
    return n_global, tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local


def global_slice(key, purpose, shape_tail, n_global: int, kind: str = "normal"):
    """Draw [n_global, *tail] from a stateless key folded with `purpose`; this replica's rows."""
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    local = n_global // n
    seed = tf.random.experimental.stateless_fold_in(key, purpose)
    shape = [n_global] + list(shape_tail)
    if kind == "normal":
        full = tf.random.stateless_normal(shape, seed=seed)
    else:
        full = tf.random.stateless_uniform(shape, seed=seed)
    if n == 1:
        return full
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    return full[start:start + local]


def global_mean(x, n_global: int):
    """Mean over the global batch of a per-example value [n_local] (all-reduced sum / n_global)."""
    ctx = tf.distribute.get_replica_context()
    total = tf.reduce_sum(x)
    if ctx.num_replicas_in_sync > 1:
        total = ctx.all_reduce(SUM, total)
    return total / n_global


def apply(optimizer, tape, loss, variables):
    """Gradients of `loss`, all-reduced across replicas, applied; returns the global norm."""
    scaled = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    grads = tape.gradient(optimizer.get_scaled_loss(loss) if scaled else loss, variables)
    if scaled:
        grads = optimizer.get_unscaled_gradients(grads)
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
    ctx = tf.distribute.get_replica_context()
    if ctx.num_replicas_in_sync > 1:
        grads = ctx.all_reduce(SUM, grads)
    norm = tf.linalg.global_norm(grads)
    optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    return norm


def reduce(sums: Dict[str, tf.Tensor], shared: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """All-reduce every metric in one collective; every replica returns the global values.
    `sums`: per-replica contributions (replica sum = global value); `shared`: identical on every
    replica."""
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    names = list(sums) + list(shared)
    vec = tf.stack([tf.cast(sums[k], tf.float32) for k in sums] +
                   [tf.cast(shared[k], tf.float32) / n for k in shared])
    if n > 1:
        vec = ctx.all_reduce(SUM, vec)
    return {k: vec[i] for i, k in enumerate(names)}
