"""The training config's conditioning checks: the parts of the attribute-conditioning rules that
need the trainer's architecture registry (the rules themselves: facegan/conditioning.py)."""
from __future__ import annotations

from facegan.conditioning import (ATTRIBUTE_RANGE, DISCRIMINATORS, UNLABELLED_RULES, attribute_names,
                                  parse_names, synthetic_paths)


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


def export_kind_args(cfg) -> dict:
    """kind + kind args for facegan.generator.export_generator from a training Config."""
    if cfg is None or not is_conditional(cfg):
        return {}
    return {"kind": "conditional", "attributes": attribute_names(cfg), "attribute_range": ATTRIBUTE_RANGE}
