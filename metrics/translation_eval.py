"""The evaluator for image-to-image generators: held-out pairs -> metrics, grid, decision.

`evaluate_model` (evaluation.py) hands a generator that makes translations here. The numbers come
from the metric contract (metrics/calc.py, implemented in metrics/paired.py): L1 / PSNR / SSIM of
the outputs against the eval split's targets, SWD of the outputs vs the real faces, and the same
L1 / PSNR / SSIM for the input itself under `input_baseline` (for `lowres` pairs, bicubic
upscaling), all from one pass over the pairs. The blessing is the same `decide()` as for every
generator: degenerate-output checks on the outputs, bounds such as {"psnr": {"min": 20}},
{"ssim": {"min_gain_over_input": 0.0}} (must beat bicubic), and `min_improvement` against a
baseline model evaluated with the same pairs. A two-direction model (CycleGAN) is scored on the
eval split's two domains instead (`cycle_results`): SWD of each direction's outputs vs the target
domain (and of its untranslated inputs), cycle reconstruction L1, and when `target_attribute_rate`
is asked for (metrics or a rule) the rate at which translations carry the target domain's
attribute, read by metrics/attributes.py's classifier trained on the same Examples (cached by
content with `cache_dir`); the grid then shows inputs, translations and reconstructions.

Outputs in `out_dir`: metrics.json, decision.json and sample_grid.png (rows of inputs, outputs,
targets), as for the other kinds.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np

from facegan.images import save_grid
from facegan.metrics import blessing
from facegan.metrics.report import (SAMPLE_GRID_FILE, Evaluation, diversity_stats, parse_metric_names,
                                    resolve_model_dir, write_report)

GRID_PAIRS = 8
PAIRED_SCORES = ("l1", "psnr", "ssim")
TARGET_ATTRIBUTE_RATE = "target_attribute_rate"
ALL = 2 ** 31 - 1      # num_pairs None: every pair (domain image) of the split


def _calc(names, gen, examples_uri: str, num: Optional[int], opts):
    from facegan.metrics.calc import EvalData, calc_metrics
    return calc_metrics(list(names), gen, EvalData(examples_uri=examples_uri), num_images=num, opts=opts)


def _options(seed: int, batch_size: int, direction: Optional[str], cache_dir: Optional[str], shared=None):
    from facegan.metrics.calc import CalcOptions
    return CalcOptions(seed=seed, batch_size=batch_size, direction=direction, cache_dir=cache_dir,
                       progress=False, shared={} if shared is None else shared)


def translation_results(gen, examples_uri: str, *, num_pairs: Optional[int], seed: int, batch_size: int,
                        direction: Optional[str] = None, cache_dir: Optional[str] = None, shared=None):
    """(results dict for the blessing, kept samples) of one image-to-image generator: l1, psnr, ssim
    through the metric contract, SWD, the input baseline and the samples from the same pass."""
    from facegan.metrics.paired import paired_pass
    from facegan.metrics.calc import EvalData
    num_pairs = num_pairs or ALL
    opts = _options(seed, batch_size, direction, cache_dir, shared)
    scores = _calc(PAIRED_SCORES, gen, examples_uri, num_pairs, opts)
    out = paired_pass(gen, EvalData(examples_uri=examples_uri), num_pairs, opts)    # the same pass
    samples = out["samples"]
    results = {**{k: scores[k] for k in PAIRED_SCORES}, "swd": out["swd"],
               blessing.INPUT_BASELINE_KEY: out["baseline"], "beats_input": out["beats_baseline"],
               "num_pairs": out["num_pairs"], "direction": direction or gen.default_direction,
               # the request behind each result key, as the blessing looks results up
               blessing.PROTOCOLS_KEY: {**scores["protocols"], "swd": {"request": "swd", "num_pairs": out["num_pairs"]}}}
    if len(samples["outputs"]) >= 2:
        results[blessing.DIVERSITY_KEY] = diversity_stats(samples["outputs"])
    return results, samples


def cycle_results(gen, examples_uri: str, *, num_pairs: Optional[int], seed: int, batch_size: int,
                  direction: Optional[str] = None, attribute_rate: bool = False,
                  cache_dir: Optional[str] = None, shared=None):
    """(results, samples) of a two-direction (CycleGAN) generator on the eval split's domains (the
    attribute from its metadata): `swd` = the mean over both directions of SWD(translated, target
    domain) (registry metric, lower is better), per direction `swd_input` and `cycle_l1`; with
    `attribute_rate`, `target_attribute_rate` through the metric contract (registry metric, higher
    is better; see metrics.paired.evaluate_cycle) with the classifier's eval accuracy beside it (the
    classifier is trained once per `shared` dict, so a baseline model reuses it)."""
    from facegan.metrics.calc import EvalData
    from facegan.metrics.paired import cycle_pass
    num_pairs = num_pairs or ALL
    opts = _options(seed, batch_size, direction, cache_dir, shared)
    rate = _calc([TARGET_ATTRIBUTE_RATE], gen, examples_uri, num_pairs, opts) if attribute_rate else None
    out = dict(cycle_pass(gen, EvalData(examples_uri=examples_uri), num_pairs, opts, with_classifier=attribute_rate))
    attribute = out.pop("attribute")
    out.pop("classifier_report")
    out.pop(TARGET_ATTRIBUTE_RATE, None)
    x, fx, rec = out.pop("samples")[direction or gen.default_direction]
    protocols = {"swd": {"request": "swd", "domains": attribute}}
    results = {"swd": {"avg": float(np.mean([out[d]["swd"] for d in gen.directions]))},
               "directions": out, "attribute": attribute, blessing.PROTOCOLS_KEY: protocols}
    if rate is not None:
        results[TARGET_ATTRIBUTE_RATE] = rate[TARGET_ATTRIBUTE_RATE]
        protocols[TARGET_ATTRIBUTE_RATE] = rate["protocols"][TARGET_ATTRIBUTE_RATE]
    if len(fx) >= 2:
        results[blessing.DIVERSITY_KEY] = diversity_stats(fx)
    return results, {"inputs": x, "outputs": fx, "targets": rec}


def evaluate_translation(model_dir: str, examples_uri: str, out_dir: str, *, num_images: Optional[int] = None,
                         thresholds=None, min_improvement=None, baseline_dir: Optional[str] = None,
                         log_dir: Optional[str] = None, seed: int = 0, batch_size: int = 64,
                         direction: Optional[str] = None, metrics=(), cache_dir: Optional[str] = None,
                         extractor=None, memorization=None, log=print) -> Evaluation:
    """Evaluate the image-to-image generator at `model_dir` on `examples_uri`'s eval pairs.
    `metrics`: of the requested names only `target_attribute_rate` changes anything here (the
    paired and cycle scores are always computed); a rule naming it asks for it too. `extractor`
    and `memorization` (evaluate_model's) are not used: translations are scored against targets."""
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
    # one call's shared work (a trained classifier) serves the baseline model too
    kw = dict(num_pairs=num_images, seed=seed, batch_size=batch_size, direction=direction, cache_dir=cache_dir,
              shared={})
    # two directions: CycleGAN on unpaired domains; one: held-out pairs
    score = cycle_results if len(gen.directions) > 1 else translation_results
    if attribute_rate:
        from facegan.metrics.calc import EvalData, check_available
        check_available([TARGET_ATTRIBUTE_RATE], gen, EvalData(examples_uri=examples_uri))
        kw.update(attribute_rate=True)
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
