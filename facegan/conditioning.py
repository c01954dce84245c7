"""Attribute conditioning, the rules ingestion, training, evaluation and serving share: names,
assignments, the sample grid (TensorFlow-free, trainer-free).

A config conditions on attributes when its architecture's registered kind is `conditional`
(`cdcgan`, `chdcgan`, `cfacegan`: trainer/registry.py) and `condition.attributes` names them:

    condition.attributes   "male,smiling": ingested `attr/<name>` features, in the order of the
                           vector G and D take (names are normalized as ingestion stores them:
                           "Eyeglasses" -> "eyeglasses", "Hair Colour" -> "hair_color")
    condition.discriminator  "projection": D(x, y) = psi(phi(x)) + sum_a e_a(y_a) . phi(x), the
                           projection discriminator of Miyato & Koyama 2018 ("cGANs with
                           projection discriminator"; one class embedding per value of each
                           binary attribute, summed over attributes); "acgan": D(x) adds an
                           auxiliary classifier head and both networks add its cross-entropy
                           (Odena et al. 2017, AC-GAN)
    condition.acgan_weight  weight of the auxiliary classification loss (acgan only)
    condition.embedding    G: 0 concatenates the attribute vector to z; > 0 concatenates a learned
                           dense embedding of that width (Mirza & Osindero 2014 concatenate y)
    condition.unlabelled   what to do with Examples that lack one of the attributes:
                           "refuse" (default): training stops before the first step, naming how
                           many and the first such source; "skip": they are left out of the
                           training stream (the count is logged; the ingest summary's `unlabeled`
                           says how many images had no label row at all)
    condition.balance      resample the training stream so each attribute's positive rate moves
                           to 0.5: records are grouped by joint label cell (the binarized vector)
                           and cell c is drawn with the probability q_c that iterative
                           proportional fitting (raking, Deming & Stephan 1940) gives when it
                           fits the data's cell frequencies to marginals of 0.5 (the distribution
                           closest to the data's joint in KL divergence with all rates 0.5;
                           trainer/data.balance_weights). Within a cell, records keep the plain
                           stream's per-epoch shuffle. Rare cells repeat more often (an attribute
                           at 7% is shown ~7x as often per image).

Synthetic sets (`data.synthetic`, `data.synthetic_ratio`, config.DataConfig): each training example
is drawn from the synthetic Examples with probability `synthetic_ratio`, independently and as a
pure function of (run.seed, example index), so the stream stays deterministic and resumable
(trainer/data.mixed_dataset). The evaluator's real side never holds Examples whose
`attr/provenance` is "synthetic" (facegan/examples_io.py).

Values are the ingested labels: CelebA's -1/1 table is stored as int64 0/1; float labels must lie
in [0, 1]. The served vector has the same range (metadata `attribute_range` [0, 1]).

The checks of a training config's `condition` section and the export arguments need the
architecture registry, so they live with it (trainer/conditioning.py).

Fake examples are conditioned on the labels of the real batch they are compared with, so the
label distribution of fakes equals the data's (what Miyato & Koyama's code does by sampling y
from the data).
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

import numpy as np

DISCRIMINATORS = ("projection", "acgan")
UNLABELLED_RULES = ("refuse", "skip")
ATTRIBUTE_RANGE = (0.0, 1.0)


def normalize_name(name: str) -> str:
    """'Hair Colour' -> 'hair_color', 'Eyes-Color' -> 'eyes_color' (feature-name safe): the one
    rule for attribute names, applied by ingestion to label tables (facegan/ingest/labels.py) and
    to every name a config or a request gives."""
    n = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).strip()).strip("_").lower()
    return n.replace("colour", "color")


def parse_names(text: str) -> List[str]:
    """'Male, Smiling' -> ['male', 'smiling'] (order kept; empty -> [])."""
    return [normalize_name(t) for t in str(text or "").split(",") if t.strip()]


def attribute_names(cfg) -> List[str]:
    """The attributes a Config conditions on, in vector order ([] when unconditional)."""
    return parse_names(cfg.condition.attributes)


def synthetic_paths(cfg) -> List[str]:
    """`data.synthetic` as a list of Examples locations ("a,b" -> ["a", "b"])."""
    return [p.strip() for p in str(cfg.data.synthetic or "").split(",") if p.strip()]


def grid_attributes(n: int, num_attributes: int) -> np.ndarray:
    """float32 [n, A]: row i is the binary pattern of i mod 2^A (every combination in turn), so a
    sample grid of fixed latents shows each combination of the attributes."""
    rows = np.arange(n)[:, None] % (2 ** num_attributes)
    return ((rows >> np.arange(num_attributes)[None]) & 1).astype(np.float32)


def parse_assignments(text: str, known: Optional[Sequence[str]] = None) -> dict:
    """'Smiling=1,Eyeglasses=0' -> {'smiling': 1.0, 'eyeglasses': 0.0}; ValueError naming the bad part
    (an unknown name when `known` is given, a value that is not a number)."""
    out = {}
    for part in str(text or "").split(","):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"--attr {part.strip()!r}: expected NAME=VALUE (e.g. Smiling=1)")
        key = normalize_name(name)
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--attr {part.strip()!r}: value {value.strip()!r} is not a number") from None
    if known is not None:
        unknown = sorted(set(out) - set(known))
        if unknown:
            raise ValueError(f"--attr: unknown attribute(s) {', '.join(unknown)}; the model conditions on "
                             f"{', '.join(known)}")
    return out
