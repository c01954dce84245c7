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

Conditional manipulation (InterFaceGAN §2.2, "Conditional Manipulation"): `--orthogonal-to
male` replaces every other attribute's normal n1 by its projection orthogonal to the condition's
normal n2, "n1 - (n1^T n2) n2" (renormalised), so moving along it leaves the condition's
boundary distance unchanged (several conditions: the projection onto the orthogonal complement of
their span, the same formula for one). A condition not in `--attributes` is labelled and fitted
too, but not served.

Spaces (`--space`): `z` (default; every latent generator) fits the boundary on the sampled z and
the edit moves z. `w` (StyleGAN2, as InterFaceGAN's StyleGAN experiments): z is mapped to w by
the generator's mapping network (rebuilt from the export's config and weights, checked against
the export as `facegan project` does), the boundary is fitted on w, and the `edit` signature
maps its z to w, moves w along the normals and applies truncation about w_avg as `generate`
does: w' = w_avg + psi (w + sum_k s_k n_k - w_avg) on the layers below the export's cutoff.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

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


def orthogonalize(normal: np.ndarray, conditions: Sequence[np.ndarray]) -> np.ndarray:
    """InterFaceGAN's conditional manipulation: the unit normal `normal` with its component along
    the conditions' normals removed, "n1 - (n1^T n2) n2" for one unit n2 (several: the projection
    onto the orthogonal complement of their span), renormalised. ValueError when nothing is left
    (the direction lies in the conditions' span)."""
    n = np.asarray(normal, np.float64)
    if len(conditions):
        q, _ = np.linalg.qr(np.asarray(conditions, np.float64).T)      # orthonormal basis of the span
        n = n - q @ (q.T @ n)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError("the direction is parallel to its condition(s): nothing is left after removing them")
    return n / norm


def fit_directions(latents: np.ndarray, labels: np.ndarray, names: Sequence[str], n_fit: int, l2: float,
                   conditions: Sequence[str] = (), label_names: Optional[Sequence[str]] = None):
    """Fit one boundary per labelled attribute on latents[:n_fit] (labels [N, L] in `label_names`
    order, default `names`), score it on the rest, and return (unit normals [len(names), D] of
    `names`, each orthogonalised against the `conditions` except a condition itself; fit figures
    by label name; the raw unit normals by label name). ValueError when an attribute reads the
    same on every fitted latent."""
    label_names = list(label_names or names)
    raw, fit = {}, {}
    for a, name in enumerate(label_names):
        y = labels[:, a]
        if y[:n_fit].min() == y[:n_fit].max():
            raise ValueError(f"the classifier reads '{name}' the same on every generated image "
                             f"(rate {y.mean():.3f}); no boundary to fit")
        w, b = fit_logistic(latents[:n_fit], y[:n_fit], l2=l2)
        rate = float(y[n_fit:].mean())
        fit[name] = {"heldout_accuracy": boundary_accuracy(w, b, latents[n_fit:], y[n_fit:]),
                     "heldout_majority": max(rate, 1 - rate),
                     "train_accuracy": boundary_accuracy(w, b, latents[:n_fit], y[:n_fit]),
                     "positive_rate": float(y.mean())}
        raw[name] = w / np.linalg.norm(w)
    served = []
    for name in names:
        others = [raw[c] for c in conditions if c != name]
        served.append(orthogonalize(raw[name], others) if others else raw[name])
    return np.asarray(served), fit, raw


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


def strength_grid(model, names: Sequence[str], z: np.ndarray, strengths: Sequence[float], truncation: float,
                  max_batch: int) -> np.ndarray:
    """[len(names) * len(z) * len(strengths), R, R, 3] uint8, row-major: for each attribute, each
    latent is a row and each strength a column (that attribute alone moved, the others at 0)."""
    tiles = []
    for k in range(len(names)):
        per_strength = []
        for s in strengths:
            moved = [0.0] * len(names)
            moved[k] = float(s)
            per_strength.append(_edit_images(model, z, list(names), moved, truncation, max_batch))
        for i in range(len(z)):
            tiles.extend(p[i] for p in per_strength)
    return np.stack(tiles)


def grid_strengths(strength: float) -> List[float]:
    """The grid's columns: -s to +s in steps of 1 (s rounded up to a whole step), 0 in the middle."""
    n = int(math.ceil(float(strength) - 1e-9))
    return [float(v) for v in range(-n, n + 1)]


def measure_control(model, classifier, resolution: int, names: Sequence[str], z: np.ndarray, strength: float,
                    truncation: float, max_batch: int, watched: Optional[Sequence[str]] = None) -> Dict:
    """Per attribute: classifier rates at -s, 0, +s (its own and the others'), pixel movement.
    watched: the classifier's outputs in order, `names` first (default `names`); the other rates
    cover all of them (a condition of --orthogonal-to too)."""
    watched = list(watched or names)
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
            others[key] = {o: float(pred[:, j].mean()) for j, o in enumerate(watched) if j != a}
            moved[key] = float(np.mean(np.abs(images.astype(np.int16) - base)) / 255.0)
        rates["0"] = float(base_pred[:, a].mean())
        others["0"] = {o: float(base_pred[:, j].mean()) for j, o in enumerate(watched) if j != a}
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
    parser.add_argument("--orthogonal-to", "--condition", dest="orthogonal_to", default="", metavar="NAME[,NAME]",
                        help="conditional manipulation: remove these attributes' normals from every other "
                             "direction (n1 - (n1.n2) n2), so an edit leaves them be")
    parser.add_argument("--space", choices=("z", "w"), default="z",
                        help="fit and edit in z (any latent generator) or in W (StyleGAN2: z mapped to w)")
    parser.add_argument("--grid", default=None, metavar="PNG",
                        help="also write a strength grid through the new `edit` signature: per attribute "
                             "--grid-rows latents of --grid-seed (rows) at strength -s..+s in steps of 1 (columns)")
    parser.add_argument("--grid-rows", type=int, default=4, help="latents per attribute in --grid")
    parser.add_argument("--grid-seed", type=int, default=7, help="latent seed of --grid")


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
    if getattr(args, "grid", None) and getattr(args, "grid_rows", 1) < 1:
        problems.append(f"--grid-rows {args.grid_rows}: must be >= 1")
    if not os.path.isdir(args.data):
        problems.append(f"--data {args.data}: no such Examples directory")
    conditions = [n.strip() for n in str(getattr(args, "orthogonal_to", "") or "").split(",") if n.strip()]
    if len(set(conditions)) != len(conditions):
        problems.append(f"--orthogonal-to {args.orthogonal_to!r}: give distinct comma-separated names")
    elif conditions and set(names) <= set(conditions):
        problems.append(f"--orthogonal-to {args.orthogonal_to!r}: every attribute is a condition; nothing to "
                        "orthogonalise")
    space = getattr(args, "space", "z") or "z"
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
    net = None
    if space == "w":
        if gen.metadata.get("truncation") != "w_space":
            print(f"facegan directions: --space w: --model {source} ({gen.metadata.get('architecture', '?')}) has "
                  "no W space; use --space z", file=sys.stderr)
            return 2
        from facegan.project import rebuild_generator
        try:
            net, _ = rebuild_generator(source)
        except (ValueError, OSError, KeyError) as e:
            print(f"facegan directions: --space w: {e}", file=sys.stderr)
            return 2
    labelled = names + [c for c in conditions if c not in names]
    print(f"attribute classifier on {args.data} ({', '.join(labelled)}) ...", flush=True)
    kwargs = {"steps": args.classifier_steps} if args.classifier_steps else {}
    try:
        classifier, creport = attr_lib.train_classifier(args.data, labelled, cache_dir=args.cache_dir, seed=0,
                                                        progress=True, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        print(f"facegan directions: --data {args.data}: {e}", file=sys.stderr)
        return 2
    resolution = int(creport["resolution"])
    print("classifier accuracy on the real eval split: " + ", ".join(
        f"{n} {creport['accuracy'][n]:.3f} (majority {creport['majority_baseline'][n]:.3f})" for n in labelled),
        flush=True)

    z = sample_latents(int(args.seed), 0, int(args.num), gen.z_dim).numpy()
    logits = []
    for i in range(0, len(z), gen.max_batch):
        logits.append(_classify(classifier, gen.generate(z[i:i + gen.max_batch], args.truncation), resolution))
        print(f"labelled {min(i + gen.max_batch, len(z))}/{len(z)} generated images", end="\r", flush=True)
    print()
    labels = (np.concatenate(logits) > 0).astype(np.float64)
    # W: the untruncated w of each z (truncation is affine in w, so the boundary's normal is the same).
    latents = z if net is None else np.concatenate([net.map(tf.constant(z[i:i + 256])).numpy()
                                                    for i in range(0, len(z), 256)]).astype(np.float64)
    n_fit = int(round(len(z) * (1 - args.heldout)))
    try:
        directions, fit, raw = fit_directions(latents, labels, names, n_fit, args.l2, conditions, labelled)
    except ValueError as e:
        print(f"facegan directions: {e}", file=sys.stderr)
        return 1
    for name in labelled:
        f = fit[name]
        print(f"{name}: boundary accuracy on {len(z) - n_fit} held-out latents {f['heldout_accuracy']:.3f} "
              f"(majority {f['heldout_majority']:.3f}; generated positive rate {f['positive_rate']:.3f})", flush=True)
    raw_cos = {f"{a}/{b}": float(raw[a] @ raw[b]) for i, a in enumerate(labelled) for b in labelled[i + 1:]}
    cos = np.asarray(directions) @ np.asarray(directions).T
    protocol = {"method": "logistic regression (L2, IRLS, numpy)", "space": space, "num": int(args.num),
                "heldout": float(args.heldout), "seed": int(args.seed), "truncation": float(args.truncation),
                "l2": float(args.l2), "classifier": creport["protocol"], "orthogonal_to": conditions}
    export_edit_version(source, out, names, np.asarray(directions), space=space, net=net,
                        extra_metadata={"directions": {
                            "fit": fit, "protocol": protocol,
                            "cosine": {f"{names[i]}/{names[j]}": float(cos[i, j])
                                       for i in range(len(names)) for j in range(i + 1, len(names))},
                            "cosine_before_conditioning": raw_cos,
                            "cosine_to_conditions": {f"{n}/{c}": float(directions[i] @ raw[c])
                                                     for i, n in enumerate(names) for c in conditions}}})
    print(f"wrote {out} (the source's signatures + edit, edit_sample, attribute_names, facegan_metadata)", flush=True)

    edited = tf.saved_model.load(out)
    zc = sample_latents(int(args.seed) + 1, 0, int(args.control_num), gen.z_dim).numpy()
    control = measure_control(edited, classifier, resolution, names, zc, float(args.strength), args.truncation,
                              gen.max_batch, watched=labelled)
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
    if getattr(args, "grid", None):
        from facegan.images import save_grid
        columns = grid_strengths(args.strength)
        zg = sample_latents(int(args.grid_seed), 0, int(args.grid_rows), gen.z_dim).numpy()
        save_grid(strength_grid(edited, names, zg, columns, args.truncation, gen.max_batch), args.grid,
                  cols=len(columns))
        print(f"grid: {args.grid} (rows: {args.grid_rows} latents of seed {args.grid_seed} per attribute, "
              f"{', '.join(names)}; columns: strength {columns[0]:g} to {columns[-1]:+g})", flush=True)
        report["grid"] = {"seed": int(args.grid_seed), "rows_per_attribute": int(args.grid_rows),
                          "strengths": columns}
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print(f"report: {args.report}")
    return 0
