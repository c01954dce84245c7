"""Paired image-to-image evaluation: L1, PSNR, SSIM against held-out targets, SWD of the
outputs vs the real faces, and the same figures for the *input itself* as the baseline.

The held-out pairs are the eval split's (`input_image`, `image`) features written by
`facegan ingest --paired` (components/image_example_gen/paired.py), without mirrored copies. The
model translates each input; its output is compared with the target face:

- `l1`: mean |output - target| over pixels and channels, in uint8 units (0..255), averaged over
  images (lower is better);
- `psnr`: 10 log10(255^2 / MSE) per image (dB), averaged over images; an exact copy (MSE 0) counts
  as PSNR_CAP dB so one perfect image cannot make the mean infinite (higher is better);
- `ssim`: single-scale SSIM (Wang et al. 2004) with the constants of metrics/ms_ssim.py: Gaussian
  window 11, sigma 1.5, K1 0.01, K2 0.03, dynamic range 255, 'valid' filtering, the mean over
  pixels and channels per image, averaged over images (higher is better);
- `swd`: PGGAN's sliced Wasserstein distance (metrics/swd.py) between the outputs and the targets
  (realism of the outputs as a set, x1e3, lower is better).

`baseline` holds l1/psnr/ssim of the input used as the output unchanged. For `lowres` pairs that is
exactly the bicubic upscale (paired.py makes the input by bicubic down then up), so a
super-resolution model that does not beat `baseline` does not beat bicubic; `beats_baseline` says
so per metric.

The registered metrics `l1`, `psnr`, `ssim` (`PairedScore`) and CycleGAN's `target_attribute_rate`
(`TargetAttributeRate`) implement the metric contract (`calc(G, data, num, opts)`, metrics/calc.py)
from a generator that provides translations and the Examples artifact; one call's metrics share
one pass (`paired_pass`, `cycle_pass`, memoized in `opts.shared`).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from facegan import schema
from facegan.metrics.base import Metric

PSNR_CAP = 100.0      # dB for identical images (MSE 0)
MAX_VAL = 255.0
DIRECTIONS = {"l1": "lower", "psnr": "higher", "ssim": "higher"}


def l1(output, target) -> np.ndarray:
    """[N] mean absolute difference in uint8 units."""
    d = np.abs(np.asarray(output, np.float64) - np.asarray(target, np.float64))
    return d.reshape(len(d), -1).mean(1)


def psnr(output, target) -> np.ndarray:
    """[N] PSNR in dB (PSNR_CAP where the images are identical)."""
    d = np.asarray(output, np.float64) - np.asarray(target, np.float64)
    mse = (d * d).reshape(len(d), -1).mean(1)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(MAX_VAL * MAX_VAL / mse)
    return np.minimum(out, PSNR_CAP)


def ssim(output, target) -> np.ndarray:
    """[N] single-scale SSIM, metrics/ms_ssim.py's constants (window shrunk below 11 px, as there)."""
    import tensorflow as tf

    from facegan.metrics.ms_ssim import FILTER_SIGMA, FILTER_SIZE, K1, K2, gaussian_1d
    # centred values: the variances E[x^2] - mu^2 lose less to float32 cancellation
    x = tf.constant(np.asarray(output, np.float32) - MAX_VAL / 2)
    y = tf.constant(np.asarray(target, np.float32) - MAX_VAL / 2)
    size = min(FILTER_SIZE, x.shape[1], x.shape[2])
    g = tf.constant(gaussian_1d(size, FILTER_SIGMA * size / FILTER_SIZE), tf.float32)
    ch = 5 * x.shape[-1]
    f = tf.concat([x, y, x * x, y * y, x * y], axis=-1)
    for k in (tf.reshape(g, [size, 1, 1, 1]), tf.reshape(g, [1, size, 1, 1])):      # separable, 'valid'
        f = tf.nn.depthwise_conv2d(f, tf.tile(k, [1, 1, ch, 1]), [1, 1, 1, 1], "VALID")
    mx, my, sxx, syy, sxy = tf.split(f, 5, axis=-1)
    vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
    mx, my = mx + MAX_VAL / 2, my + MAX_VAL / 2
    c1, c2 = (K1 * MAX_VAL) ** 2, (K2 * MAX_VAL) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3]).numpy().astype(np.float64)


SCORES: Dict[str, Callable] = {"l1": l1, "psnr": psnr, "ssim": ssim}


class PairedScores:
    """Running sums of the per-image scores; `result()` -> {name: mean}."""

    def __init__(self):
        self.sums = {k: 0.0 for k in SCORES}
        self.n = 0

    def add(self, output, target):
        for k, fn in SCORES.items():
            self.sums[k] += float(np.sum(fn(output, target)))
        self.n += len(output)

    def result(self) -> Dict[str, float]:
        return {k: (v / self.n if self.n else float("nan")) for k, v in self.sums.items()}


def _originals(examples_uri: str, split: str, spec: Dict):
    import tensorflow as tf

    from facegan import examples_io
    files = examples_io.split_files(examples_uri, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda s: tf.io.parse_single_example(s, spec))
    return ds.filter(lambda e: tf.equal(e[schema.MIRRORED], 0))


def count_pairs(examples_uri: str, split: str = schema.EVAL_SPLIT) -> int:
    """Originals (not mirrored copies) in a split: one cheap pass, no PNG decoding."""
    import tensorflow as tf

    from facegan import examples_io
    ds = _originals(examples_uri, split, examples_io.feature_spec(()))
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def paired_batches(examples_uri: str, split: str = schema.EVAL_SPLIT, batch_size: int = 32,
                   limit: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) uint8 batches of a split's originals (mirrored copies skipped), in file
    order; ValueError naming the split when it holds no pairs."""
    import tensorflow as tf

    from facegan import examples_io
    spec = examples_io.feature_spec((schema.IMAGE,))
    spec[schema.INPUT_IMAGE] = tf.io.FixedLenFeature([], tf.string, default_value="")
    ds = _originals(examples_uri, split, spec)
    if limit:
        ds = ds.take(limit)
    seen = 0
    for e in ds.batch(batch_size):
        if any(len(b) == 0 for b in e[schema.INPUT_IMAGE].numpy()):
            raise ValueError(f"{examples_io.split_dir(examples_uri, split)}: records without "
                             f"'{schema.INPUT_IMAGE}'; re-ingest with --paired")
        dec = lambda key: np.stack([tf.io.decode_png(b, channels=3).numpy() for b in e[key].numpy()])  # noqa: E731
        seen += len(e[schema.IMAGE])
        yield dec(schema.INPUT_IMAGE), dec(schema.IMAGE)
    if not seen:
        raise ValueError(f"{examples_io.split_dir(examples_uri, split)} holds no examples to evaluate")


def evaluate_paired(translate: Callable[[np.ndarray], np.ndarray], examples_uri: str, *,
                    split: str = schema.EVAL_SPLIT, num_pairs: Optional[int] = None, batch_size: int = 32,
                    swd: bool = True, seed: int = 0, keep: int = 0) -> Dict:
    """Scores of `translate` (uint8 [N, R, R, 3] -> uint8) on the held-out pairs; see the module
    docstring for the keys. `num_pairs`: at most this many (None: the whole split). `keep`: also
    return the first `keep` (inputs, outputs, targets) under "samples" (grids, diversity)."""
    from facegan.metrics.swd import SWDAccumulator, position_seed, swd_from_results
    model, base = PairedScores(), PairedScores()
    total = count_pairs(examples_uri, split)
    cap = min(num_pairs, total) if num_pairs else total     # sizes the SWD descriptor stores
    acc_out = acc_real = None
    kept = []
    if swd:
        acc_out, acc_real = (SWDAccumulator(cap, position_seed(seed, role)) for role in ("generated", "real"))
    try:
        for inputs, targets in paired_batches(examples_uri, split, batch_size, cap):
            outputs = np.asarray(translate(inputs), np.uint8)
            if outputs.shape != targets.shape:
                raise ValueError(f"the model makes {outputs.shape[1:]} images but the targets are {targets.shape[1:]}")
            if sum(len(k[0]) for k in kept) < keep:
                kept.append((inputs, outputs, targets))
            model.add(outputs, targets)
            base.add(inputs, targets)
            if swd:
                acc_out.add(outputs, None)
                acc_real.add(targets, None)
        out = {**model.result(), "num_pairs": model.n, "baseline": {**base.result(), "what": "the input unchanged"}}
        out["beats_baseline"] = {k: bool(out[k] < out["baseline"][k]) if d == "lower" else bool(out[k] > out["baseline"][k])
                                 for k, d in DIRECTIONS.items()}
        if swd:
            # the PGGAN pyramid needs >= 16 px; fewer than 2 images give no distribution
            out["swd"] = swd_from_results(acc_out.result(), acc_real.result(), seed) if model.n >= 2 else None
        if keep:
            out["samples"] = {name: np.concatenate([k[i] for k in kept])[:keep]
                              for i, name in enumerate(("inputs", "outputs", "targets"))}
        return out
    finally:
        for a in (acc_out, acc_real):
            if a is not None:
                a.close()



def domain_batches(examples_uri: str, attribute: str, value: int, split: str = schema.EVAL_SPLIT,
                   batch_size: int = 32, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """uint8 batches of a split's originals whose `attr/<attribute>` == value (CycleGAN domains)."""
    import tensorflow as tf

    from facegan import examples_io
    key = schema.attr_key(attribute)
    spec = examples_io.feature_spec((schema.IMAGE,))
    spec[key] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    ds = _originals(examples_uri, split, spec).filter(lambda e: tf.equal(e[key], value))
    if limit:
        ds = ds.take(limit)
    for e in ds.batch(batch_size):
        yield np.stack([tf.io.decode_png(b, channels=3).numpy() for b in e[schema.IMAGE].numpy()])


def attribute_rate(has_attribute: Callable[[np.ndarray], np.ndarray], images: np.ndarray, value: int,
                   batch_size: int = 64) -> float:
    """Share of `images` that `has_attribute` (uint8 [N, R, R, 3] -> bool [N]) reads as `value` (0/1)."""
    got = np.concatenate([np.asarray(has_attribute(images[i:i + batch_size])).reshape(-1) >= 0.5
                          for i in range(0, len(images), batch_size)])
    return float(np.mean(got == bool(value)))


def evaluate_cycle(translate: Callable[[np.ndarray, str], np.ndarray], examples_uri: str, attribute: str, *,
                   split: str = schema.EVAL_SPLIT, num_images: Optional[int] = None, batch_size: int = 32,
                   seed: int = 0, keep: int = 0,
                   has_attribute: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Dict:
    """CycleGAN on held-out unpaired domains (A: attr 0, B: attr 1), per direction: SWD of the
    translated images vs the target domain's real images (`swd`), the same for the untranslated
    inputs (`swd_input`: what translating must improve on), and the cycle reconstruction error
    (`cycle_l1`: mean |back(forward(x)) - x|, uint8 units). `translate(images, direction)`.

    With `has_attribute` (an attribute classifier: uint8 images -> bool [N], e.g. metrics/attributes.py's
    trained on the same Examples), per direction also the rate at which the translations carry the
    TARGET domain's attribute value (`target_attribute_rate`: a_to_b outputs read as 1, b_to_a as 0),
    the same rate for the untranslated inputs (`input_attribute_rate`, what translating must raise)
    and for the real target-domain images (`target_domain_rate`: the classifier's own ceiling), and
    at the top level `target_attribute_rate` = {"avg": mean of the two directions, per direction}."""
    from facegan.metrics.swd import swd_of_images
    out, samples = {}, {}
    for direction, back, src, dst in (("a_to_b", "b_to_a", 0, 1), ("b_to_a", "a_to_b", 1, 0)):
        xs = list(domain_batches(examples_uri, attribute, src, split, batch_size, num_images))
        ys = list(domain_batches(examples_uri, attribute, dst, split, batch_size, num_images))
        if not xs or not ys:
            raise ValueError(f"{examples_uri} {split}: domain {'AB'[src]} or {'AB'[dst]} of attr/{attribute} is empty")
        x, y = np.concatenate(xs), np.concatenate(ys)
        fx = np.concatenate([np.asarray(translate(b, direction), np.uint8) for b in xs])
        rec = np.concatenate([np.asarray(translate(fx[i:i + batch_size], back), np.uint8)
                              for i in range(0, len(fx), batch_size)])
        out[direction] = {"swd": swd_of_images(fx, y, seed)["avg"], "swd_input": swd_of_images(x, y, seed)["avg"],
                          "cycle_l1": float(np.mean(l1(rec, x))), "num_inputs": int(len(x)), "num_targets": int(len(y))}
        if has_attribute is not None:
            out[direction].update({name: attribute_rate(has_attribute, imgs, dst, batch_size) for name, imgs in
                                   (("target_attribute_rate", fx), ("input_attribute_rate", x),
                                    ("target_domain_rate", y))})
        samples[direction] = (x[:keep], fx[:keep], rec[:keep])
    if has_attribute is not None:
        rates = {d: out[d]["target_attribute_rate"] for d in ("a_to_b", "b_to_a")}
        out["target_attribute_rate"] = {"avg": float(np.mean(list(rates.values()))), **rates}
    if keep:
        out["samples"] = samples
    return out


KEEP = 64          # translations kept from a pass (grids, the degenerate-output check)


def _memo(opts, key, G, make):
    """opts.shared[key] (with G held, so its id stays unique) or make()."""
    hit = opts.shared.get(key)
    if hit is None or hit[0] is not G:
        hit = opts.shared[key] = (G, make())
    return hit[1]


def paired_pass(G, data, num: Optional[int], opts) -> Dict:
    """`evaluate_paired` of G's translation (opts.direction) on the eval split's held-out pairs, at
    most `num` of them, with SWD and the first KEEP samples; once per call (opts.shared)."""
    key = ("paired", id(G), num, opts.batch_size, opts.seed, opts.direction)
    return _memo(opts, key, G, lambda: evaluate_paired(
        lambda x: G.translate(x, opts.direction), data.examples_uri, num_pairs=num,
        batch_size=opts.batch_size, seed=opts.seed, keep=KEEP))


def domain_attribute(G) -> str:
    """The attribute whose values 0/1 are a two-direction model's domains (from its metadata)."""
    attribute = (G.metadata.get("domains") or {}).get("attribute") or \
        G.metadata.get("config", {}).get("network", {}).get("domain_attribute")
    if not attribute:
        raise ValueError("a two-direction image-to-image model without a domain attribute in its metadata")
    return attribute


def attribute_classifier(examples_uri: str, attribute: str, *, seed: int, cache_dir: Optional[str]):
    """(has_attribute: uint8 images -> bool [N], classifier report): metrics/attributes.py's
    classifier for `attribute`, trained on the Examples' train split (or read from the cache)."""
    from facegan.metrics import attributes as A
    model, report = A.train_classifier(examples_uri, [attribute], steps=A.DEFAULT_STEPS, seed=seed,
                                       cache_dir=cache_dir)
    return (lambda images: np.asarray(model(np.asarray(images, np.uint8), training=False))[:, 0] > 0.0), report


def cycle_pass(G, data, num: Optional[int], opts, with_classifier: bool) -> Dict:
    """`evaluate_cycle` of a two-direction G on the eval split's attribute domains, with the
    attribute classifier when asked (trained once per call: opts.shared["classifiers"]); the
    result holds "attribute" and, with the classifier, "classifier_report"."""
    attribute = domain_attribute(G)
    key = ("cycle", id(G), num, opts.batch_size, opts.seed, with_classifier)

    def make():
        has_attribute, report = None, None
        if with_classifier:
            classifiers = opts.shared.setdefault("classifiers", {})
            if attribute not in classifiers:
                classifiers[attribute] = attribute_classifier(data.examples_uri, attribute, seed=opts.seed,
                                                              cache_dir=opts.cache_dir)
            has_attribute, report = classifiers[attribute]
        out = evaluate_cycle(G.translate, data.examples_uri, attribute, num_images=num,
                             batch_size=opts.batch_size, seed=opts.seed, keep=KEEP, has_attribute=has_attribute)
        return dict(out, attribute=attribute, classifier_report=report)
    return _memo(opts, key, G, make)


class PairedScore(Metric):
    """l1 / psnr / ssim: a one-direction translation against the eval split's held-out targets."""

    streaming = False
    needs_what = "compares image-to-image outputs with held-out targets"

    def accumulator(self, n, role, seed=0):
        raise ValueError(f"metric {self.name!r} {self.needs_what}; "
                         f"`facegan evaluate` computes it for image_to_image generators only")

    def compute(self, generated, real, seed=0):
        raise ValueError(f"metric {self.name!r} is computed by its `calc` (metrics/calc.py)")

    def unavailable(self, G, data):
        if "translations" not in frozenset(getattr(G, "provides", ())):
            return f"{self.needs_what}: it needs an image-to-image generator"
        if not getattr(data, "examples_uri", None):
            return "needs an Examples artifact with held-out pairs"
        return None

    def calc(self, G, data, num, opts):
        out = paired_pass(G, data, num, opts)
        return {self.name: out[self.name],
                "protocols": {self.name: {"request": self.name, "num_pairs": out["num_pairs"]}}}


class TargetAttributeRate(PairedScore):
    """`target_attribute_rate`: CycleGAN translations of the eval split's two attribute domains
    read by metrics/attributes.py's classifier trained on the same Examples (cached by content)."""

    needs_what = "reads two-direction (CycleGAN) translations of the eval split's attribute domains"

    def unavailable(self, G, data):
        why = super().unavailable(G, data)
        if why is None and len(G.directions) < 2:
            return (f"needs a two-direction (CycleGAN) model with attribute domains; "
                    f"{getattr(G, 'export_dir', 'this model')} translates one way ({G.default_direction})")
        return why

    def calc(self, G, data, num, opts):
        out = cycle_pass(G, data, num, opts, with_classifier=True)
        report, attribute = out["classifier_report"], out["attribute"]
        rate = dict(out[self.name], classifier_accuracy=report["accuracy"][attribute],
                    classifier_majority_baseline=report["majority_baseline"][attribute],
                    classifier_cache=report["cache"])
        return {self.name: rate, "protocols": {self.name: {"request": self.name, "domains": attribute,
                                                           "classifier": report["protocol"]}}}
