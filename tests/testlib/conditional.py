"""Helpers for the conditional tests (issue 11): labelled Examples from real CelebA faces, built
in a tmp dir (never in the repository) with the ingestion's own label parser."""
import os

import numpy as np

from facegan import examples_io

CONDITIONAL_TINY = {"optim.batch_size": 8, "network.filters": 8, "network.z_dim": 16,
                    "run.checkpoint_every": 2, "run.log_every": 1, "run.image_every": 2,
                    "run.shuffle_buffer": 64}


def celeba_rows(celeba_attributes, start: int, n: int):
    """[(file name, {attribute: 0/1})] for CelebA rows [start, start + n) of the shared table."""
    from facegan.ingest.labels import parse_celeba_attrs
    _, table = parse_celeba_attrs(str(celeba_attributes))
    names = sorted(table)[start:start + n]
    return [(name, table[name]) for name in names]


def load_face(celeba_dir, name: str, resolution: int) -> np.ndarray:
    """A CelebA image center-cropped to a square and resized (BOX) to `resolution`."""
    from PIL import Image
    with Image.open(os.path.join(celeba_dir, name)) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return np.asarray(im.resize((resolution, resolution), Image.BOX))


def write_labelled_faces(celeba_dir, celeba_attributes, uri: str, n_train: int, n_eval: int,
                         resolution: int = 32, attributes=None, unlabelled=()) -> str:
    """Examples of real CelebA faces carrying their attr/<name> labels (all 40, or `attributes`);
    sources listed in `unlabelled` get no labels. Train rows come first in the table, eval after."""
    rows = celeba_rows(celeba_attributes, 0, n_train + n_eval)
    for split, part in (("train", rows[:n_train]), ("eval", rows[n_train:])):
        exs = []
        for k, (name, attrs) in enumerate(part):
            keep = {a: v for a, v in attrs.items() if attributes is None or a in attributes}
            exs.append(examples_io.make_example(load_face(celeba_dir, name, resolution), source=name,
                                                sha256=f"{split}{k:060d}",
                                                attrs=None if name in unlabelled else keep))
        examples_io.write_examples(os.path.join(examples_io.split_dir(uri, split), "data-00000-of-00001.gz"), exs)
    return uri


def link_faces(celeba_dir, dest, names) -> str:
    """A folder of symlinks to the shared images (nothing is copied)."""
    os.makedirs(dest, exist_ok=True)
    for n in names:
        os.symlink(os.path.join(celeba_dir, n), os.path.join(dest, n))
    return str(dest)
