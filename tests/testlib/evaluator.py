"""Tiny hand-built generators for evaluator tests, exported through trainer/export.py.

- `blob`: z -> a smooth coloured Gaussian blob on a grey background, the same family of images
  `tests/examples_testlib.write_synthetic_examples` writes; a "good" generator for that data.
- `constant`: the same image for every z; the degenerate generator a blessing must refuse.

Both are real Keras models exported as real generator SavedModels (same signatures the trainer
exports), so the evaluator reads them exactly as it reads trained ones.
"""
import os

import numpy as np


def _blob_model(resolution: int, z_dim: int):
    import tensorflow as tf

    coords = np.linspace(0.0, 1.0, resolution, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")

    def blob(z):
        # Centre in [0.3, 0.7], size in [0.15, 0.35], colour in [0, 255] (as the synthetic data).
        u = tf.sigmoid(z[:, :6] * 1.5)
        cy, cx = 0.3 + 0.4 * u[:, 0], 0.3 + 0.4 * u[:, 1]
        s = 0.15 + 0.2 * u[:, 2]
        color = 255.0 * u[:, 3:6]
        d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        b = tf.exp(-d2 / (2.0 * (s ** 2)[:, None, None]))[..., None]
        img = b * color[:, None, None, :] + (1.0 - b) * 40.0
        return img / 127.5 - 1.0

    z = tf.keras.Input([z_dim])
    return tf.keras.Model(z, tf.keras.layers.Lambda(blob)(z), name="blob_generator")


def _constant_model(resolution: int, z_dim: int, value: float = 0.2):
    import tensorflow as tf

    def const(z):
        # Depends on z only through its batch size: every sample is the same flat grey image.
        ones = tf.ones_like(z[:, :1])[:, :, None, None]
        return tf.tile(ones * value, [1, resolution, resolution, 3])

    z = tf.keras.Input([z_dim])
    return tf.keras.Model(z, tf.keras.layers.Lambda(const)(z), name="constant_generator")


def export_test_generator(kind: str, export_dir: str, resolution: int = 32, z_dim: int = 8,
                          steps: int = 0) -> str:
    """Export a `blob` or `constant` generator as a facegan generator SavedModel."""
    from facegan.trainer.export import export_generator

    if kind == "blob":
        if z_dim < 6:
            raise ValueError("the blob generator needs z_dim >= 6")
        model = _blob_model(resolution, z_dim)
    elif kind == "constant":
        model = _constant_model(resolution, z_dim)
    else:
        raise ValueError(f"unknown test generator {kind!r}; choose blob or constant")
    os.makedirs(os.path.dirname(os.path.abspath(export_dir)), exist_ok=True)
    return export_generator(model, export_dir, metadata={"architecture": f"test_{kind}",
                                                         "steps": int(steps)})
