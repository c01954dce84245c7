"""The optional tricks of the latent GAN as weighted loss terms a family's loss object adds.

A `Term` is `weight * value(inputs)` added to D's or G's loss, reported to TensorBoard as
loss/<name>; `after_update` runs after the step (e.g. historical averaging's running mean).
`trick_terms(gan)` builds the terms the config switches on, in a fixed order: conditioning's
auxiliary classifier (AC-GAN, Odena et al. 2017), feature matching (Salimans et al. 2016 sec. 3.1),
repelling (Zhao et al. 2017), historical averaging (Salimans et al. 2016 sec. 3.3). The inputs:
D's terms get real, fake (D's inputs), key, j (D step), attributes, real_out, fake_out; G's get
real (D's last real input: feature matching takes its features from the updated D),
fake_features, attributes, fake_out. Values are this replica's share (replica sum = global).

The other tricks act elsewhere: label smoothing is a loss argument, instance noise, ADA /
DiffAugment and the lens transform D's inputs (trainer/gan.py `d_input`), minibatch
discrimination is a layer of D, weight clipping and the gradient penalty belong to their loss
families (trainer/adversarial.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from facegan.trainer import replica
from facegan.trainer.networks.conditional import acgan_loss
from facegan.trainer.regularizers import HistoricalAveraging, feature_matching_loss, repelling_loss


@dataclasses.dataclass(frozen=True)
class Term:
    """One optional regularizer (see the module docstring)."""
    name: str
    weight: float
    value: Callable[[Dict[str, tf.Tensor]], tf.Tensor]
    after_update: Optional[Callable[[], None]] = None


def add_terms(terms: List[Term], loss, inputs, sums):
    """loss + sum of weight * value; each value reported as loss/<name>."""
    for term in terms:
        value = term.value(inputs)
        sums[f"loss/{term.name}"] = value
        loss += term.weight * value
    return loss


def trick_terms(gan) -> Tuple[List[Term], List[Term], Optional[tuple]]:
    """(D terms, G terms, historical averages (G's, D's) or None) for the config's tricks.
    Call under the strategy scope (historical averaging's running means are variables)."""
    cfg, t = gan.cfg, gan.cfg.tricks
    per_replica = replica.per_replica_scalar
    d_terms, g_terms = [], []
    if gan.conditional and cfg.condition.discriminator == "acgan":   # Odena et al. 2017
        w = cfg.condition.acgan_weight
        d_terms.append(Term("acgan_d", w, lambda c: gan.avg(
            acgan_loss(c["real_out"]["class_logits"], c["attributes"]) +
            acgan_loss(c["fake_out"]["class_logits"], c["attributes"]))))
        g_terms.append(Term("acgan_g", w, lambda c: gan.avg(
            acgan_loss(c["fake_out"]["class_logits"], c["attributes"]))))
    if t.feature_matching > 0:
        g_terms.append(Term("feature_matching", t.feature_matching, lambda c: per_replica(
            feature_matching_loss(tf.stop_gradient(gan.disc_out(c["real"], c["attributes"])["features"]),
                                  c["fake_features"]))))
    if t.repelling > 0:
        g_terms.append(Term("repelling", t.repelling, lambda c: per_replica(repelling_loss(c["fake_features"]))))
    historical = None
    if t.historical_averaging > 0:
        historical = (HistoricalAveraging(gan.g_variables), HistoricalAveraging(gan.d_variables))
        for terms, net, h, v in ((d_terms, "d", historical[1], gan.d_variables),
                                 (g_terms, "g", historical[0], gan.g_variables)):
            terms.append(Term(f"historical_{net}", t.historical_averaging,
                              lambda c, h=h, v=v: per_replica(h.loss(v)),
                              after_update=lambda h=h, v=v: h.update(v)))
    return d_terms, g_terms, historical
