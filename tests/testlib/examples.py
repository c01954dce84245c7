"""Synthetic Examples for tests that need no real faces: smooth random 'blob' images in the
schema, written as an Examples artifact (tests/testlib/evaluator.py's `blob` generator draws the
same family of images)."""
import os

import numpy as np

from facegan import examples_io, schema


def write_synthetic_examples(examples_uri: str, n_train: int = 32, n_eval: int = 8,
                             resolution: int = 32, seed: int = 0, extra_resolutions=(),
                             attributes=()) -> str:
    """A tiny Examples artifact of smooth random 'blob' images, for tests that need no real faces;
    `attributes` names random 0/1 `attr/<name>` labels to add (conditional presets)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / max(resolution - 1, 1)

    def one():
        cy, cx, s = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        color = rng.uniform(0, 255, size=3)
        return np.clip(blob[..., None] * color + (1 - blob[..., None]) * 40, 0, 255).astype(np.uint8)

    def extra(img):
        from PIL import Image
        return {r: np.asarray(Image.fromarray(img).resize((r, r), Image.BOX)) for r in extra_resolutions}

    for split, n in ((schema.TRAIN_SPLIT, n_train), (schema.EVAL_SPLIT, n_eval)):
        imgs = [one() for _ in range(n)]
        path = os.path.join(examples_io.split_dir(examples_uri, split), "data_tfrecord-00000-of-00001.gz")
        examples_io.write_examples(path, (examples_io.make_example(
            im, source=f"synthetic/{split}/{k}.png", sha256=f"{split}{k}", extra_images=extra(im),
            attrs={a: int(rng.integers(0, 2)) for a in attributes} or None) for k, im in enumerate(imgs)))
    return examples_uri
