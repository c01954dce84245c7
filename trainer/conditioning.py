"""Attribute conditioning (issue 11), the TensorFlow-free part: config, names, rules.

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
    """'Hair Colour' -> 'hair_color': the rule ingestion applies to label names
    (components/image_example_gen/transforms.normalize_attr_name, kept equal by a test)."""
    n = re.sub(r"[^0-9a-zA-Z]+", "_", str(name).strip()).strip("_").lower()
    return n.replace("colour", "color")


def parse_names(text: str) -> List[str]:
    """'Male, Smiling' -> ['male', 'smiling'] (order kept; empty -> [])."""
    return [normalize_name(t) for t in str(text or "").split(",") if t.strip()]


def attribute_names(cfg) -> List[str]:
    """The attributes a Config conditions on, in vector order ([] when unconditional)."""
    return parse_names(cfg.condition.attributes)


def is_conditional(cfg) -> bool:
    from facegan.trainer import registry
    return registry.architecture(cfg.network.architecture).kind == "conditional"


def validate(cfg, error) -> None:
    """Raise `error(message)` for an inconsistent `condition` section (called by config.validate)."""
    from facegan.trainer import registry
    c = cfg.condition
    names = parse_names(c.attributes)
    arch = registry.architecture(cfg.network.architecture)
    conditional = [a.name for a in registry.ARCHITECTURES.values() if a.kind == "conditional"]
    if arch.kind == "conditional" and not names:
        raise error(f"network.architecture {arch.name} is conditional: condition.attributes must name the "
                    "attributes to condition on (e.g. 'male,smiling')")
    if names and arch.kind != "conditional":
        raise error(f"condition.attributes is set but {arch.name} is {arch.kind}; use a conditional "
                    f"architecture ({', '.join(conditional)})")
    if len(set(names)) != len(names):
        raise error(f"condition.attributes repeats a name: {names}")
    if c.discriminator not in DISCRIMINATORS:
        raise error(f"condition.discriminator {c.discriminator!r} is not one of {DISCRIMINATORS}")
    if c.unlabelled not in UNLABELLED_RULES:
        raise error(f"condition.unlabelled {c.unlabelled!r} is not one of {UNLABELLED_RULES}")
    if c.acgan_weight < 0:
        raise error(f"condition.acgan_weight must be >= 0, got {c.acgan_weight}")
    if c.balance and not names:
        raise error("condition.balance needs condition.attributes (the attributes to balance)")
    d = cfg.data
    if not 0.0 <= d.synthetic_ratio < 1.0:
        raise error(f"data.synthetic_ratio must be in [0, 1) (the share of examples drawn from data.synthetic), "
                    f"got {d.synthetic_ratio}")
    if (d.synthetic_ratio > 0) != bool(synthetic_paths(cfg)):
        raise error("data.synthetic and data.synthetic_ratio go together: name the synthetic Examples and a ratio "
                    f"> 0 (got synthetic={d.synthetic!r}, synthetic_ratio={d.synthetic_ratio})")
    if d.synthetic_ratio > 0 and arch.kind == "image_to_image":
        raise error(f"data.synthetic: {arch.name} trains on pairs/domains; synthetic sets mix into image streams only")
    if c.embedding < 0:
        raise error(f"condition.embedding must be >= 0 (0: concatenate the raw vector), got {c.embedding}")


def synthetic_paths(cfg) -> List[str]:
    """`data.synthetic` as a list of Examples locations ("a,b" -> ["a", "b"])."""
    return [p.strip() for p in str(cfg.data.synthetic or "").split(",") if p.strip()]


def grid_attributes(n: int, num_attributes: int) -> np.ndarray:
    """float32 [n, A]: row i is the binary pattern of i mod 2^A (every combination in turn), so a
    sample grid of fixed latents shows each combination of the attributes."""
    rows = np.arange(n)[:, None] % (2 ** num_attributes)
    return ((rows >> np.arange(num_attributes)[None]) & 1).astype(np.float32)


def export_kind_args(cfg) -> dict:
    """kind + kind args for facegan.generator.export_generator from a training Config."""
    if cfg is None or not is_conditional(cfg):
        return {}
    return {"kind": "conditional", "attributes": attribute_names(cfg), "attribute_range": ATTRIBUTE_RANGE}


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
