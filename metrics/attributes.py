"""Measured attribute control of a conditional generator.

1. An attribute classifier (a small CNN: three stride-2 3x3 convolutions 32-64-128 with
   LeakyReLU, global average pooling, one logit per attribute; sigmoid cross-entropy, Adam) is
   trained on the real *train* split's `attr/<name>` labels and scored on the real *eval* split:
   per-attribute accuracy next to the majority-class baseline (an accuracy means little without
   it: CelebA's `eyeglasses` is ~94% "no"). The trained weights and the report are cached by
   content, like the real-data statistics (metrics/cache.py): the key hashes both splits' bytes,
   the attribute names and the training protocol, so a changed split or protocol retrains.
2. Control: for `num` generated images the requested vectors are the generator's own request
   stream (facegan.generator.stream: `requested_attributes(seed, i, A)`, each attribute 0/1 with
   probability 1/2, a pure function of (seed, i)), the latents the seed's stream
   (`sample_latents`), read through `G.generated_batches(..., with_requests=True)`. The classifier reads every image; reported per attribute:
   `present` = P(classified 1 | requested 1), `absent` = P(classified 0 | requested 0),
   `others_kept` = P(every other attribute classified as requested), and overall `control` =
   mean over attributes of (present + absent) / 2 (balanced accuracy against the request) and
   `all_as_requested` = P(every attribute classified as requested). The classifier's own eval
   accuracy bounds what these can show: compare them with `classifier_accuracy`.

The `attribute_control` metric (metrics/registry.py) is computed through the metric contract
(`AttributeControl.calc`, metrics/calc.py) from a generator that provides conditioning and the
Examples artifact, by the evaluator and by metrics during training alike, so the blessing can gate
on it (`{"attribute_control": {"min": 0.7}}`).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from facegan import schema
from facegan.generator.stream import requested_attributes  # noqa: F401  (the request stream)

CLASSIFIER_VERSION = 1
DEFAULT_STEPS = 1500    # measured on 9,053 CelebA train faces at 32x32: see README, conditional generation
DEFAULT_BATCH = 64


# -- labelled real images --------------------------------------------------------------------------
def labelled_dataset(examples_uri: str, split: str, names: Sequence[str], batch_size: int,
                     include_mirrored: bool = False):
    """tf.data of (uint8 images [B, R, R, 3], float32 labels [B, A]); records lacking a label are left
    out (the classifier learns and is scored only on labelled faces), and so are synthetic ones
    (`attr/provenance` synthetic: the classifier learns real faces only)."""
    import tensorflow as tf
    from facegan.examples_io import compression_type, split_files
    files = split_files(examples_uri, split)
    from facegan.examples_io import scan_attributes
    info = scan_attributes(files, list(names), rule="skip")
    kinds = {"int64_list": tf.int64, "float_list": tf.float32}
    spec = {schema.attr_key(n): tf.io.VarLenFeature(kinds[info["kinds"][n]]) for n in names}
    spec[schema.IMAGE] = tf.io.FixedLenFeature([], tf.string)
    spec[schema.MIRRORED] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    spec[schema.PROVENANCE_KEY] = tf.io.VarLenFeature(tf.string)
    from facegan.examples_io import is_real

    def parse(rec):
        p = tf.io.parse_single_example(rec, spec)
        labels = [tf.sparse.to_dense(p[schema.attr_key(n)]) for n in names]
        ok = tf.logical_and(tf.reduce_all(tf.stack([tf.size(v) > 0 for v in labels])), is_real(p))
        if not include_mirrored:
            ok = tf.logical_and(ok, tf.equal(p[schema.MIRRORED], 0))
        y = tf.stack([tf.cast(tf.concat([v, tf.zeros([1], v.dtype)], 0)[0], tf.float32) for v in labels])
        return tf.io.decode_png(p[schema.IMAGE], channels=3), y, ok

    def labelled(x, y, ok):
        return ok

    def drop_flag(x, y, ok):
        return x, y

    ds = tf.data.TFRecordDataset(files, compression_type=compression_type(files[0]))
    return ds.map(parse).filter(labelled).map(drop_flag), info


def build_classifier(resolution: int, num_attributes: int, seed: int = 0):
    """uint8 images -> attribute logits [N, A] (see the module docstring)."""
    from facegan.metrics.features import float32_policy
    with float32_policy():
        return _build_classifier(resolution, num_attributes, seed)


def _build_classifier(resolution: int, num_attributes: int, seed: int):
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    x = inp = tf.keras.Input((resolution, resolution, 3), dtype=tf.uint8, name="images")
    x = tf.keras.layers.Lambda(lambda t: tf.cast(t, tf.float32) / 127.5 - 1.0, name="to_network")(x)
    for i, f in enumerate((32, 64, 128)):
        x = tf.keras.layers.Conv2D(f, 3, strides=2, padding="same", name=f"conv{i}")(x)
        x = tf.keras.layers.LeakyReLU(0.2)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(num_attributes, name="logits")(x)
    return tf.keras.Model(inp, out, name="attribute_classifier")


def _split_key(examples_uri: str, split: str) -> str:
    from facegan.metrics.cache import examples_split_key
    return examples_split_key(examples_uri, split)


def classifier_key(examples_uri: str, names: Sequence[str], protocol: Dict) -> str:
    payload = json.dumps({"v": CLASSIFIER_VERSION, "train": _split_key(examples_uri, schema.TRAIN_SPLIT),
                          "eval": _split_key(examples_uri, schema.EVAL_SPLIT), "names": list(names),
                          "protocol": protocol}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def evaluate_classifier(model, batches: Iterator[Tuple[np.ndarray, np.ndarray]], names: Sequence[str]) -> Dict:
    """Per-attribute accuracy and majority baseline over (images, labels) batches."""
    correct, positives, n = np.zeros(len(names)), np.zeros(len(names)), 0
    for x, y in batches:
        pred = np.asarray(model(np.asarray(x), training=False)) > 0.0
        y = np.asarray(y) >= 0.5
        correct += (pred == y).sum(0)
        positives += y.sum(0)
        n += len(y)
    if n == 0:
        raise ValueError("no labelled images to score the attribute classifier on")
    acc = correct / n
    base = np.maximum(positives / n, 1 - positives / n)
    return {"accuracy": {a: float(v) for a, v in zip(names, acc)},
            "majority_baseline": {a: float(v) for a, v in zip(names, base)},
            "mean_accuracy": float(acc.mean()), "examples": int(n)}


def train_classifier(examples_uri: str, names: Sequence[str], *, steps: int = DEFAULT_STEPS,
                     batch_size: int = DEFAULT_BATCH, learning_rate: float = 1e-3, seed: int = 0,
                     cache_dir: Optional[str] = None, progress: bool = False):
    """(classifier model, report) for `names` on the Examples' train split, scored on its eval split.

    With `cache_dir` the weights and report are stored as `attr-classifier-<key>.npz/.json` and
    reused while the splits, names and protocol are the same (report["cache"] says hit or miss)."""
    import tensorflow as tf
    names = list(names)
    protocol = {"steps": int(steps), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
                "seed": int(seed), "arch": "conv32-64-128-gap"}
    train_ds, info = labelled_dataset(examples_uri, schema.TRAIN_SPLIT, names, batch_size)
    first = next(iter(train_ds.take(1)))[0]
    resolution = int(first.shape[0])
    model = build_classifier(resolution, len(names), seed)
    paths = None
    if cache_dir:
        key = classifier_key(examples_uri, names, protocol)
        paths = tuple(os.path.join(cache_dir, f"attr-classifier-{key}{ext}") for ext in (".npz", ".json"))
        if all(os.path.isfile(p) for p in paths):
            with np.load(paths[0]) as z:
                model.set_weights([z[f"w{i}"] for i in range(len(z.files))])
            with open(paths[1]) as f:
                report = json.load(f)
            return model, dict(report, cache="hit")
    ds = (train_ds.repeat().shuffle(2048, seed=seed).batch(batch_size, drop_remainder=True)
          .prefetch(2))
    opt = tf.keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, model(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    it = iter(ds)
    for i in range(int(steps)):
        loss = step(*next(it))
        if progress and (i + 1) % 100 == 0:
            print(f"attribute classifier: step {i + 1}/{steps} loss {float(loss):.4f}", flush=True)
    eval_ds, eval_info = labelled_dataset(examples_uri, schema.EVAL_SPLIT, names, batch_size)
    report = evaluate_classifier(model, eval_ds.batch(256).as_numpy_iterator(), names)
    report.update(names=names, protocol=protocol, train_examples=info["usable"],
                  train_positive_rate=info["positive_rate"], resolution=resolution)
    if paths:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(paths[0] + ".tmp.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        os.replace(paths[0] + ".tmp.npz", paths[0])
        with open(paths[1], "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return model, dict(report, cache="miss" if paths else "none")


# -- control ---------------------------------------------------------------------------------------
def control_rates(requested: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> Dict:
    """Rates from requested and classified 0/1 vectors [N, A] (see the module docstring)."""
    req, pred = np.asarray(requested) >= 0.5, np.asarray(predicted) >= 0.5
    match = req == pred
    per = {}
    for a, name in enumerate(names):
        others = np.delete(match, a, axis=1).all(axis=1) if len(names) > 1 else np.ones(len(req), bool)
        on, off = req[:, a], ~req[:, a]
        per[name] = {"present": float(pred[on, a].mean()) if on.any() else float("nan"),
                     "absent": float((~pred[off, a]).mean()) if off.any() else float("nan"),
                     "others_kept": float(others.mean())}
    balanced = [np.nanmean([v["present"], v["absent"]]) for v in per.values()]
    return {"control": float(np.mean(balanced)), "all_as_requested": float(match.all(axis=1).mean()),
            "per_attribute": per, "images": int(len(req))}


def attribute_control(gen, classifier, *, num: int = 1000, seed: int = 0, batch_size: int = 64,
                      names: Optional[Sequence[str]] = None) -> Dict:
    """Control rates of a conditional generator (the generator contract's stream with its requests:
    facegan.generator.stream) read by `classifier`.

    `names`: the classifier's attributes (default: the generator's, in its order); the generator
    must condition on each of them."""
    gen_names = list(gen.conditioning)
    names = list(names or gen_names)
    missing = [n for n in names if n not in gen_names]
    if missing:
        raise ValueError(f"attribute_control: the generator does not condition on {missing} (it has {gen_names})")
    req_all, pred_all = [], []
    for images, req in gen.generated_batches(int(num), int(batch_size), seed, with_requests=True):
        pred = np.asarray(classifier(images, training=False)) > 0.0
        req_all.append(req[:, [gen_names.index(a) for a in names]])
        pred_all.append(pred)
    return control_rates(np.concatenate(req_all), np.concatenate(pred_all), names)


# -- the registered metric ----------------------------------------------------------------------------
from facegan.metrics.base import Metric  # noqa: E402  (TensorFlow-free)

METRIC = "attribute_control"


class AttributeControl(Metric):
    """Registry entry point: `calc` trains (or reads from the cache) the classifier on the Examples
    and scores the generator's own request stream. The shared image stream of metrics.evaluate
    carries no requests, so it refuses to run there."""

    streaming = False

    def accumulator(self, n, role, seed=0):
        raise ValueError("attribute_control needs the attributes requested for each image: it is computed "
                         "by the evaluator for conditional generators (facegan evaluate / GanEvaluator), "
                         "not by metrics.evaluate")

    def unavailable(self, G, data):
        if "conditioning" not in frozenset(getattr(G, "provides", ())):
            return "needs a conditional generator (one that conditions on attributes); this one does not"
        return super().unavailable(G, data)

    def calc(self, G, data, num, opts):
        steps = DEFAULT_STEPS if opts.classifier_steps is None else int(opts.classifier_steps)
        classifier, report = train_classifier(data.examples_uri, G.conditioning, cache_dir=opts.cache_dir,
                                              seed=opts.seed, steps=steps)
        result = attribute_control(G, classifier, num=num, seed=opts.seed, batch_size=opts.batch_size)
        result["classifier_accuracy"] = report["accuracy"]
        result["classifier_majority_baseline"] = report["majority_baseline"]
        result["classifier_cache"] = report["cache"]
        key = self.key(num)
        return {key: result, "protocols": {key: {"metric": METRIC, "request": METRIC, "n": int(num),
                                                 "num_generated": int(num), "classifier": report["protocol"]}}}


def evaluate_attribute_control(gen, examples_uri: str, *, num: int, seed: int = 0, batch_size: int = 64,
                               cache_dir: Optional[str] = None, steps: int = DEFAULT_STEPS) -> Dict:
    """{key: result, "protocols": {key: ...}} in metrics.evaluate's layout, for a conditional generator:
    `calc_metrics([attribute_control], ...)` with these settings."""
    from facegan.metrics.calc import CalcOptions, EvalData, calc_metrics
    out = calc_metrics([METRIC], gen, EvalData(examples_uri=examples_uri), num_images=num,
                       opts=CalcOptions(seed=seed, batch_size=batch_size, cache_dir=cache_dir,
                                        classifier_steps=steps, progress=False))
    return out


def examples_artifact(train_files: Sequence[str]) -> Optional[str]:
    """The Examples artifact whose `Split-train` holds all of `train_files`, if it has an eval split
    (the classifier trains on one and is scored on the other); else None."""
    dirs = {os.path.dirname(str(f).rstrip("/")) for f in train_files}
    if len(dirs) != 1:
        return None
    d = dirs.pop()
    if os.path.basename(d) != f"Split-{schema.TRAIN_SPLIT}":
        return None
    uri = os.path.dirname(d)
    from facegan.examples_io import split_files
    try:
        split_files(uri, schema.EVAL_SPLIT)
    except FileNotFoundError:
        return None
    return uri
