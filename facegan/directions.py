"""`facegan directions`: attribute directions in a generator's latent space (InterFaceGAN), served.

    facegan directions --model models/faces/1 --data examples --attributes smiling,male [--num 4000]

InterFaceGAN (Shen et al., CVPR 2020, "Interpreting the Latent Space of GANs for Semantic Face
Editing"): for a binary attribute there is a hyperplane in the latent space with normal n such
that moving a latent along n changes the attribute, "x_edit = G(z + alpha n)" (their eq. 2). As
there:

1. sample `--num` latents z of the seed's stream (`sample_latents`) and generate their images;
2. label each image with an attribute classifier (the project's, metrics/attributes.py: trained
   on the labelled real Examples given by `--data`, or read from its cache);
3. fit a linear boundary per attribute on the latents and the classifier's decisions. The paper
   uses a linear SVM; scikit-learn is not in the locked environment, so this fits an
   L2-regularised logistic regression with Newton's method (IRLS) in numpy, which finds a
   separating hyperplane of the same family. `--heldout` of the latents are kept out of the fit,
   and the boundary's accuracy on them is reported next to the majority-class rate;
4. write a new version of the servable model (`<base>/<N+1>`, or `--out`) with the unit normals
   and the `edit` signatures (facegan/generator/edit.py: latent or seed, per-attribute strengths,
   truncation; unknown attributes and non-finite strengths refused in the graph) plus
   `attribute_names`;
5. measure control through the new version's `edit` signature, as for the conditional models: on
   `--control-num` latents of another seed (seed + 1), the classifier's positive rate for each
   attribute at strength -s, 0 and +s (`--strength`), the other attributes' rates at the same
   strengths (they should move little), and how far the image moves (mean absolute pixel change
   from strength 0, in [0, 1] of the pixel range).

The boundary is fitted in z, the space every generator of the contract serves (for StyleGAN2,
InterFaceGAN reports that W separates attributes better; the contract's signatures take z).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

EXAMPLES = """example:
  facegan directions --model models/faces/1 --data out/examples --attributes smiling,male,eyeglasses \\
      --num 4000 --strength 3 --report directions.json
  facegan serve --model_base_path models/faces --model_name faces --rest_api_port 8501   # serves version 2
  facegan ui --rest localhost:8501 --model faces"""


# -- the boundary: L2-regularised logistic regression (IRLS) -------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 50, tol: float = 1e-8):
    """(w [D], b) minimising mean log-loss + l2/2 |w|^2 by Newton's method; y in {0, 1}."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0                                   # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xa @ theta, -30, 30)))
        grad = xa.T @ (p - y) / n + reg * theta
        hess = (xa * (p * (1 - p))[:, None]).T @ xa / n + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < tol:
            break
    return theta[:-1], float(theta[-1])


def boundary_accuracy(w, b, x, y) -> float:
    return float(np.mean(((np.asarray(x) @ w + b) > 0) == (np.asarray(y) >= 0.5)))


# -- helpers --------------------------------------------------------------------------------------------
def _classify(classifier, images: np.ndarray, resolution: int) -> np.ndarray:
    """Classifier logits [N, A]; images resized (area) to the classifier's resolution if they differ."""
    import tensorflow as tf
    x = images
    if x.shape[1] != resolution:
        x = tf.cast(tf.round(tf.image.resize(tf.cast(x, tf.float32), [resolution, resolution], method="area")),
                    tf.uint8)
    return np.asarray(classifier(x, training=False))


def _edit_images(model, z, names, strengths, truncation, max_batch):
    import tensorflow as tf
    out = []
    for i in range(0, len(z), max_batch):
        out.append(model.signatures["edit"](z=tf.constant(z[i:i + max_batch]), attribute=tf.constant(names),
                                            strength=tf.constant(np.float32(strengths)),
                                            truncation=tf.constant(np.float32(truncation)))["images"].numpy())
    return np.concatenate(out)


def measure_control(model, classifier, resolution: int, names: Sequence[str], z: np.ndarray, strength: float,
                    truncation: float, max_batch: int) -> Dict:
    """Per attribute: classifier rates at -s, 0, +s (its own and the others'), pixel movement."""
    zero = [0.0] * len(names)
    base = _edit_images(model, z, list(names), zero, truncation, max_batch)
    base_pred = _classify(classifier, base, resolution) > 0
    result = {}
    for a, name in enumerate(names):
        rates, others, moved = {}, {}, {}
        for s in (-strength, strength):
            vec = list(zero)
            vec[a] = s
            images = _edit_images(model, z, list(names), vec, truncation, max_batch)
            pred = _classify(classifier, images, resolution) > 0
            key = f"{s:+g}"
            rates[key] = float(pred[:, a].mean())
            others[key] = {o: float(pred[:, j].mean()) for j, o in enumerate(names) if j != a}
            moved[key] = float(np.mean(np.abs(images.astype(np.int16) - base)) / 255.0)
        rates["0"] = float(base_pred[:, a].mean())
        others["0"] = {o: float(base_pred[:, j].mean()) for j, o in enumerate(names) if j != a}
        result[name] = {"rate": {k: rates[k] for k in (f"{-strength:+g}", "0", f"{strength:+g}")},
                        "other_rates": {k: others[k] for k in (f"{-strength:+g}", "0", f"{strength:+g}")},
                        "pixel_change": moved}
    return result


def _version_dir(path: str) -> str:
    path = os.path.abspath(path.rstrip("/"))
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True) if os.path.isdir(path) else []
    for v in versions:
        if os.path.isfile(os.path.join(path, str(v), "saved_model.pb")):
            return os.path.join(path, str(v))
    raise ValueError(f"--model {path}: not a SavedModel version directory nor a base directory holding one")


# -- CLI ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--model", required=True,
                        help="generator SavedModel: a version directory <base>/<N> or the base (its newest version)")
    parser.add_argument("--data", required=True,
                        help="labelled Examples (attr/<name> features) for the attribute classifier")
    parser.add_argument("--attributes", required=True, help="comma-separated attribute names, e.g. smiling,male")
    parser.add_argument("--num", type=int, default=4000, help="latents sampled, labelled and fitted")
    parser.add_argument("--heldout", type=float, default=0.2, help="fraction of the latents kept out of the fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fitted latents (control uses seed + 1)")
    parser.add_argument("--truncation", type=float, default=1.0, help="psi of the sampled images")
    parser.add_argument("--strength", type=float, default=3.0, help="s of the control measurement (-s, 0, +s)")
    parser.add_argument("--control-num", type=int, default=1000, help="latents of the control measurement")
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 penalty of the logistic regression")
    parser.add_argument("--classifier-steps", type=int, default=None,
                        help="attribute classifier training steps (default: metrics/attributes.py's)")
    parser.add_argument("--cache-dir", default=None, help="cache of the attribute classifier (reused across runs)")
    parser.add_argument("--out", default=None, help="the new version's directory (default: <base>/<newest + 1>)")
    parser.add_argument("--report", default=None, help="write the fit and control figures as JSON here")


def main(args) -> int:
    names = [n.strip() for n in str(args.attributes).split(",") if n.strip()]
    problems = []
    if not names or len(set(names)) != len(names):
        problems.append(f"--attributes {args.attributes!r}: give distinct comma-separated names")
    if args.num < 20:
        problems.append(f"--num {args.num}: need at least 20 latents")
    if not 0.0 < args.heldout < 1.0:
        problems.append(f"--heldout {args.heldout}: must be in (0, 1)")
    if not 0.0 < args.truncation <= 1.0:
        problems.append(f"--truncation {args.truncation}: must be in (0, 1]")
    if not (np.isfinite(args.strength) and args.strength > 0):
        problems.append(f"--strength {args.strength}: must be a positive number")
    if args.control_num < 1:
        problems.append(f"--control-num {args.control_num}: must be >= 1")
    if not os.path.isdir(args.data):
        problems.append(f"--data {args.data}: no such Examples directory")
    try:
        source = _version_dir(args.model)
    except (ValueError, OSError) as e:
        problems.append(str(e))
    if problems:
        for p in problems:
            print(f"facegan directions: {p}", file=sys.stderr)
        return 2
    out = args.out
    from facegan.generator.edit import export_edit_version, next_version_dir
    out = os.path.abspath(out) if out else next_version_dir(source)
    if os.path.exists(os.path.join(out, "saved_model.pb")):
        print(f"facegan directions: --out {out} already holds a SavedModel", file=sys.stderr)
        return 2

    import tensorflow as tf
    from facegan.generator import load_generator, sample_latents
    from facegan.metrics import attributes as attr_lib
    t0 = time.time()
    try:
        gen = load_generator(source)
    except (ValueError, OSError) as e:
        print(f"facegan directions: --model {source}: {e}", file=sys.stderr)
        return 2
    if gen.kind != "unconditional":
        print(f"facegan directions: --model {source} is a {gen.kind} generator; directions edit the latent of "
              "an unconditional one (conditional models take their attributes as an input)", file=sys.stderr)
        return 2
    print(f"attribute classifier on {args.data} ({', '.join(names)}) ...", flush=True)
    kwargs = {"steps": args.classifier_steps} if args.classifier_steps else {}
    try:
        classifier, creport = attr_lib.train_classifier(args.data, names, cache_dir=args.cache_dir, seed=0,
                                                        progress=True, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        print(f"facegan directions: --data {args.data}: {e}", file=sys.stderr)
        return 2
    resolution = int(creport["resolution"])
    print("classifier accuracy on the real eval split: " + ", ".join(
        f"{n} {creport['accuracy'][n]:.3f} (majority {creport['majority_baseline'][n]:.3f})" for n in names), flush=True)

    z = sample_latents(int(args.seed), 0, int(args.num), gen.z_dim).numpy()
    logits = []
    for i in range(0, len(z), gen.max_batch):
        logits.append(_classify(classifier, gen.generate(z[i:i + gen.max_batch], args.truncation), resolution))
        print(f"labelled {min(i + gen.max_batch, len(z))}/{len(z)} generated images", end="\r", flush=True)
    print()
    labels = (np.concatenate(logits) > 0).astype(np.float64)
    n_fit = int(round(len(z) * (1 - args.heldout)))
    directions, fit = [], {}
    for a, name in enumerate(names):
        y = labels[:, a]
        w, b = fit_logistic(z[:n_fit], y[:n_fit], l2=args.l2)
        rate = float(y[n_fit:].mean())
        fit[name] = {"heldout_accuracy": boundary_accuracy(w, b, z[n_fit:], y[n_fit:]),
                     "heldout_majority": max(rate, 1 - rate), "train_accuracy": boundary_accuracy(w, b, z[:n_fit], y[:n_fit]),
                     "positive_rate": float(y.mean())}
        if y[:n_fit].min() == y[:n_fit].max():
            print(f"facegan directions: the classifier reads '{name}' the same on every generated image "
                  f"(rate {y.mean():.3f}); no boundary to fit", file=sys.stderr)
            return 1
        directions.append(w / np.linalg.norm(w))
        f = fit[name]
        print(f"{name}: boundary accuracy on {len(z) - n_fit} held-out latents {f['heldout_accuracy']:.3f} "
              f"(majority {f['heldout_majority']:.3f}; generated positive rate {f['positive_rate']:.3f})", flush=True)
    cos = np.asarray(directions) @ np.asarray(directions).T
    protocol = {"method": "logistic regression (L2, IRLS, numpy)", "space": "z", "num": int(args.num),
                "heldout": float(args.heldout), "seed": int(args.seed), "truncation": float(args.truncation),
                "l2": float(args.l2), "classifier": creport["protocol"]}
    export_edit_version(source, out, names, np.asarray(directions),
                        extra_metadata={"directions": {"fit": fit, "protocol": protocol,
                                                       "cosine": {f"{names[i]}/{names[j]}": float(cos[i, j])
                                                                  for i in range(len(names))
                                                                  for j in range(i + 1, len(names))}}})
    print(f"wrote {out} (the source's signatures + edit, edit_sample, attribute_names, facegan_metadata)", flush=True)

    edited = tf.saved_model.load(out)
    zc = sample_latents(int(args.seed) + 1, 0, int(args.control_num), gen.z_dim).numpy()
    control = measure_control(edited, classifier, resolution, names, zc, float(args.strength), args.truncation,
                              gen.max_batch)
    for name in names:
        r = control[name]["rate"]
        print(f"{name}: classifier rate at strength " + ", ".join(f"{k}: {v:.3f}" for k, v in r.items())
              + "; pixel change " + ", ".join(f"{k}: {v:.3f}" for k, v in control[name]["pixel_change"].items()),
              flush=True)
    report = {"model": out, "source": source, "attributes": names, "fit": fit, "control": control,
              "control_protocol": {"num": int(args.control_num), "seed": int(args.seed) + 1,
                                   "strength": float(args.strength), "truncation": float(args.truncation)},
              "protocol": protocol, "classifier_accuracy": creport["accuracy"],
              "classifier_majority_baseline": creport["majority_baseline"], "seconds": round(time.time() - t0, 1)}
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print(f"report: {args.report}")
    return 0
