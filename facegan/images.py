"""numpy/PIL image helpers shared by every stage (no TensorFlow): grids and PNG encoding."""
import io
import math

import numpy as np


def make_grid(images, cols: int = 0, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 images [N, H, W, C] into one uint8 image [rows*H, cols*W, C] with padding."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def save_grid(images, path: str, cols: int = 0) -> str:
    """Write a PNG grid of uint8 images to `path` (local or any tf.io.gfile path) and return it."""
    data = encode_png(make_grid(images, cols=cols))
    if "://" in path:
        import tensorflow as tf
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path
