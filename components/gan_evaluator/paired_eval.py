"""The evaluator for image-to-image generators (issue 12): held-out pairs -> metrics, grid, decision.

`evaluate_model` (evaluate_lib.py) hands an `image_to_image` generator here. The numbers come from
metrics/paired.py: L1 / PSNR / SSIM of the outputs against the eval split's targets, SWD of the
outputs vs the real faces, and the same L1 / PSNR / SSIM for the input itself under
`input_baseline` (for `lowres` pairs, bicubic upscaling). The blessing is the same `decide()` as
for every generator: degenerate-output checks on the outputs, bounds such as
{"psnr": {"min": 20}}, {"ssim": {"min_gain_over_input": 0.0}} (must beat bicubic), and
`min_improvement` against a baseline model evaluated with the same pairs. A two-direction model
(CycleGAN) is scored on the eval split's two domains instead (`cycle_results`): SWD of each
direction's outputs vs the target domain (and of its untranslated inputs), cycle reconstruction L1,
and when `target_attribute_rate` is asked for (metrics or a rule) the rate at which translations
carry the target domain's attribute, read by metrics/attributes.py's classifier trained on the same
Examples (cached by content with `cache_dir`); the grid then shows inputs, translations and
reconstructions.

Outputs in `out_dir`: metrics.json, decision.json and sample_grid.png (rows of inputs, outputs,
targets), as for the other kinds.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np

from facegan.components.gan_evaluator import blessing
from facegan.components.gan_evaluator.evaluate_lib import (SAMPLE_GRID_FILE, Evaluation, diversity_stats,
                                                           parse_metric_names,
                                                           resolve_model_dir, write_report)
from facegan.images import save_grid

GRID_PAIRS = 8
KEEP = 64          # outputs kept for the degenerate-output check


def translation_results(gen, examples_uri: str, *, num_pairs: Optional[int], seed: int, batch_size: int,
                        direction: Optional[str] = None):
    """(results dict for the blessing, kept samples) of one image-to-image generator."""
    from facegan.metrics.paired import evaluate_paired
    out = evaluate_paired(lambda x: gen.translate(x, direction), examples_uri, num_pairs=num_pairs,
                          batch_size=batch_size, seed=seed, keep=KEEP)
    samples = out.pop("samples")
    results = {"l1": out["l1"], "psnr": out["psnr"], "ssim": out["ssim"], "swd": out["swd"],
               blessing.INPUT_BASELINE_KEY: out["baseline"], "beats_input": out["beats_baseline"],
               "num_pairs": out["num_pairs"], "direction": direction or gen.default_direction,
               # the request behind each result key, as the blessing looks results up
               blessing.PROTOCOLS_KEY: {k: {"request": k, "num_pairs": out["num_pairs"]}
                                        for k in ("l1", "psnr", "ssim", "swd")}}
    if len(samples["outputs"]) >= 2:
        results[blessing.DIVERSITY_KEY] = diversity_stats(samples["outputs"])
    return results, samples


TARGET_ATTRIBUTE_RATE = "target_attribute_rate"


def attribute_classifier(examples_uri: str, attribute: str, *, seed: int, cache_dir: Optional[str]):
    """(has_attribute: uint8 images -> bool [N], classifier report): metrics/attributes.py's
    classifier for `attribute`, trained on the Examples' train split (or read from the cache)."""
    from facegan.metrics import attributes as A
    model, report = A.train_classifier(examples_uri, [attribute], steps=A.DEFAULT_STEPS, seed=seed,
                                       cache_dir=cache_dir)
    return (lambda images: np.asarray(model(np.asarray(images, np.uint8), training=False))[:, 0] > 0.0), report


def cycle_results(gen, examples_uri: str, *, num_pairs: Optional[int], seed: int, batch_size: int,
                  direction: Optional[str] = None, classifiers: Optional[dict] = None,
                  cache_dir: Optional[str] = None):
    """(results, samples) of a two-direction (CycleGAN) generator on the eval split's domains (the
    attribute from its metadata): `swd` = the mean over both directions of SWD(translated, target
    domain) (registry metric, lower is better), per direction `swd_input` and `cycle_l1`; with
    `classifiers` (a dict: {attribute: attribute_classifier(...)}, filled on first use so a baseline
    model reuses the classifier), `target_attribute_rate` (registry metric, higher is better; see
    metrics.paired.evaluate_cycle) with the classifier's eval accuracy beside it."""
    from facegan.metrics.paired import evaluate_cycle
    attribute = (gen.metadata.get("domains") or {}).get("attribute") or \
        gen.metadata.get("config", {}).get("network", {}).get("domain_attribute")
    if not attribute:
        raise ValueError("a two-direction image-to-image model without a domain attribute in its metadata")
    has_attribute, report = None, None
    if classifiers is not None:
        if attribute not in classifiers:
            classifiers[attribute] = attribute_classifier(examples_uri, attribute, seed=seed, cache_dir=cache_dir)
        has_attribute, report = classifiers[attribute]
    out = evaluate_cycle(gen.translate, examples_uri, attribute, num_images=num_pairs, batch_size=batch_size,
                         seed=seed, keep=KEEP, has_attribute=has_attribute)
    x, fx, rec = out.pop("samples")[direction or gen.default_direction]
    protocols = {"swd": {"request": "swd", "domains": attribute}}
    rate = out.pop(TARGET_ATTRIBUTE_RATE, None)
    results = {"swd": {"avg": float(np.mean([out[d]["swd"] for d in gen.directions]))},
               "directions": out, "attribute": attribute, blessing.PROTOCOLS_KEY: protocols}
    if rate is not None:
        results[TARGET_ATTRIBUTE_RATE] = dict(rate, classifier_accuracy=report["accuracy"][attribute],
                                              classifier_majority_baseline=report["majority_baseline"][attribute],
                                              classifier_cache=report["cache"])
        protocols[TARGET_ATTRIBUTE_RATE] = {"request": TARGET_ATTRIBUTE_RATE, "domains": attribute,
                                            "classifier": report["protocol"]}
    if len(fx) >= 2:
        results[blessing.DIVERSITY_KEY] = diversity_stats(fx)
    return results, {"inputs": x, "outputs": fx, "targets": rec}


def evaluate_translation(model_dir: str, examples_uri: str, out_dir: str, *, num_images: Optional[int] = None,
                         thresholds=None, min_improvement=None, baseline_dir: Optional[str] = None,
                         log_dir: Optional[str] = None, seed: int = 0, batch_size: int = 64,
                         direction: Optional[str] = None, metrics=(), cache_dir: Optional[str] = None,
                         log=print) -> Evaluation:
    """Evaluate the image-to-image generator at `model_dir` on `examples_uri`'s eval pairs.
    `metrics`: of the requested names only `target_attribute_rate` changes anything here (the
    paired and cycle scores are always computed); a rule naming it asks for it too."""
    from facegan.generator import load_generator

    rules = blessing.parse_rules(thresholds, min_improvement)   # validate before any expensive work
    if isinstance(metrics, str):
        metrics = parse_metric_names(metrics)
    attribute_rate = TARGET_ATTRIBUTE_RATE in set(metrics or ()) | set(rules.metrics())
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.monotonic()
    model_dir = resolve_model_dir(model_dir)
    gen = load_generator(model_dir)
    log(f"evaluating image-to-image {model_dir} on {examples_uri}'s eval split")
    kw = dict(num_pairs=num_images, seed=seed, batch_size=batch_size, direction=direction)
    # two directions: CycleGAN on unpaired domains; one: held-out pairs
    score = cycle_results if len(gen.directions) > 1 else translation_results
    if attribute_rate:
        if score is translation_results:
            raise ValueError(f"{TARGET_ATTRIBUTE_RATE} needs a two-direction (CycleGAN) model with attribute "
                             f"domains; {model_dir} translates one way ({gen.default_direction})")
        kw.update(classifiers={}, cache_dir=cache_dir)
    results, samples = score(gen, examples_uri, **kw)
    baseline_results = None
    if baseline_dir:
        baseline_dir = resolve_model_dir(baseline_dir)
        log(f"evaluating baseline {baseline_dir} on the same pairs")
        baseline_results, _ = score(load_generator(baseline_dir), examples_uri, **kw)
    decision = blessing.decide(results, rules, baseline_results=baseline_results)
    n = min(GRID_PAIRS, len(samples["outputs"]))
    files = {"sample_grid": save_grid(np.concatenate([samples[k][:n] for k in ("inputs", "outputs", "targets")]),
                                      os.path.join(out_dir, SAMPLE_GRID_FILE), cols=n)}
    report = {"model": model_dir, "examples": examples_uri, "baseline_model": baseline_dir,
              "protocol": {"metrics": list(results[blessing.PROTOCOLS_KEY]), "num_pairs": results.get("num_pairs"),
                           "split": "eval (originals)", "seed": seed, "batch_size": batch_size},
              "generator": {k: gen.metadata.get(k) for k in ("kind", "architecture", "preset", "resolution",
                                                               "input_resolution", "steps", "exported_at")},
              "results": results, "baseline_results": baseline_results,
              "blessed": decision.blessed, "seconds": round(time.monotonic() - t0, 2)}
    return write_report(out_dir, report, decision, files, log_dir, int(gen.metadata.get("steps", 0) or 0), log)
