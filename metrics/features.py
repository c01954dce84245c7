"""Feature extractors for FID / KID / IS / memorization: uint8 images in, float features out.

Registry `EXTRACTORS` (validated early by `get_extractor`):

| name          | network                                   | comparable | use                      |
|---------------|-------------------------------------------|------------|--------------------------|
| `inception`   | Keras InceptionV3, ImageNet weights       | yes        | real FID/KID/IS numbers  |
| `random`      | the same InceptionV3, random He-normal    | no         | smoke runs, benchmarks   |
|               | init (seed 0): identical FLOPs            |            | (timing = real timing)   |
| `random_tiny` | 4-layer random convnet at 64x64 (seed 0)  | no         | unit tests (fast)        |
| a file path   | InceptionV3 with weights from that .h5    | yes        | offline machines         |

Preprocessing for InceptionV3 (the FID protocol here, part of every cache key): uint8 RGB is
resized to 299x299 with `tf.image.resize(method="bilinear", antialias=True)` (a triangle filter
scaled to the output: plain bilinear when upsampling, area-like when downsampling, close to PIL's
BILINEAR that clean-fid recommends), then mapped to [-1, 1] (Keras `inception_v3.preprocess_input`).
Features are the 2048-d global-average-pool output (`avg_pool`); logits for IS are that vector
times the `predictions` layer's kernel plus bias (pre-softmax, 1000 ImageNet classes), computed
from the same forward pass.

Weights for `inception` are looked up in this order, and never silently replaced by random ones:
1. `extractor=<path to .h5>` or the env var FACEGAN_INCEPTION_WEIGHTS;
2. Keras' cache `$KERAS_HOME/models` (default `~/.keras/models`): the include-top file, else notop;
3. a download of Keras' include-top file into that cache (md5-checked) where the internet is
   reachable.
If none works, `WeightsUnavailableError` says how to provide them. A notop file gives FID/KID but
not IS (no classifier head), which is refused with its own message.

NB: Keras' ImageNet InceptionV3 is not the 2015 TF graph used by the original FID/IS code
(pytorch-fid / TTUR / clean-fid), so absolute numbers are comparable between runs of this project
(same extractor fingerprint), not with published tables.
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from typing import Dict, Optional

import numpy as np

INCEPTION_TOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_TOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                     + INCEPTION_TOP_FILE)
INCEPTION_TOP_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"  # Keras' own file_hash for the file above
WEIGHTS_ENV = "FACEGAN_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299
INCEPTION_PREPROCESSING = "resize299-bilinear-antialias;x/127.5-1"

EXTRACTOR_NAMES = ("inception", "random", "random_tiny")


class WeightsUnavailableError(RuntimeError):
    """InceptionV3 ImageNet weights could not be found or downloaded; the message says how to fix it."""


def keras_models_dir() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")),
                        "models")


def _download(url: str, dest: str, timeout: float = 60.0) -> str:
    """Download `url` to `dest` atomically (tests replace this to simulate no internet)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)
    os.replace(tmp, dest)
    return dest


def _file_digest(path: str, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _file_digest_cached(path: str, size: int, mtime: float) -> str:
    return _file_digest(path)


def weights_fingerprint(path: str) -> str:
    st = os.stat(path)
    return _file_digest_cached(os.path.abspath(path), st.st_size, st.st_mtime)


def _h5_layer_names(path: str):
    """Layer names stored in a Keras .h5 weights file; ValueError naming the file if it isn't one."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            names = f.attrs.get("layer_names")
            if names is None and "model_weights" in f:  # a full-model .h5 (model.save)
                names = f["model_weights"].attrs.get("layer_names")
    except OSError as e:
        raise ValueError(f"InceptionV3 weights file {path} is not a readable HDF5 (.h5) file: {e}") from None
    if names is None:
        raise ValueError(f"InceptionV3 weights file {path} has no Keras 'layer_names' attribute; "
                         f"expected {INCEPTION_TOP_FILE} or {INCEPTION_NOTOP_FILE} from Keras")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if "mixed10" not in names:
        raise ValueError(f"InceptionV3 weights file {path} does not hold InceptionV3 weights "
                         f"(no 'mixed10' layer; found {len(names)} layers, e.g. {names[:3]})")
    return names


def resolve_inception_weights(path: Optional[str] = None, download: bool = True) -> str:
    """The local path of InceptionV3 ImageNet weights, or WeightsUnavailableError (see module doc)."""
    tried = []
    explicit = path or os.environ.get(WEIGHTS_ENV)
    if explicit:
        src = "extractor path" if path else f"${WEIGHTS_ENV}"
        if not os.path.isfile(explicit):
            raise WeightsUnavailableError(f"InceptionV3 weights file {explicit!r} (from {src}) does not exist")
        _h5_layer_names(explicit)
        return explicit
    tried.append(f"${WEIGHTS_ENV} is not set")
    cache = keras_models_dir()
    for name in (INCEPTION_TOP_FILE, INCEPTION_NOTOP_FILE):
        p = os.path.join(cache, name)
        if os.path.isfile(p):
            _h5_layer_names(p)
            return p
    tried.append(f"no {INCEPTION_TOP_FILE} or {INCEPTION_NOTOP_FILE} in Keras' cache {cache}")
    if download:
        dest = os.path.join(cache, INCEPTION_TOP_FILE)
        try:
            _download(INCEPTION_TOP_URL, dest)
            if _file_digest(dest, "md5") != INCEPTION_TOP_MD5:
                os.remove(dest)
                raise OSError("md5 mismatch (corrupt or truncated download)")
            return dest
        except Exception as e:  # any network/file error: explain below, never fall back to random
            tried.append(f"downloading {INCEPTION_TOP_URL} failed: {type(e).__name__}: {e}")
    raise WeightsUnavailableError(
        "FID/KID/IS need InceptionV3 ImageNet weights and none could be found:\n  - "
        + "\n  - ".join(tried)
        + f"\nProvide them: download {INCEPTION_TOP_URL} on a machine with internet access, then either"
          f"\n  * set {WEIGHTS_ENV}=/path/to/{INCEPTION_TOP_FILE}, or"
          f"\n  * pass extractor='/path/to/{INCEPTION_TOP_FILE}' (CLI: --inception-weights), or"
          f"\n  * copy it to {os.path.join(cache, INCEPTION_TOP_FILE)} (Keras' cache)."
          "\nFor a smoke run only, extractor='random' gives numbers labelled *_random and "
          "comparable=False (never an FID/KID/IS).")


class FeatureExtractor:
    """Callable: uint8 [B, H, W, 3] -> {"pool": float32 [B, D], "logits": float32 [B, K] or absent}.

    `name` labels results, `fingerprint` (name + weights hash + preprocessing) keys caches,
    `comparable` is False for random networks, `has_logits` says whether IS is available.
    """

    def __init__(self, name, model, preprocessing, fingerprint, comparable, logits_head=None,
                 batch_size=32):
        import tensorflow as tf
        self.name, self.model, self.preprocessing = name, model, preprocessing
        self.fingerprint, self.comparable, self.batch_size = fingerprint, comparable, batch_size
        self.has_logits = logits_head is not None
        self.dim = int(model.outputs[0].shape[-1])
        size = int(model.inputs[0].shape[1])
        if logits_head is not None:
            kernel = tf.constant(logits_head[0], tf.float32)
            bias = tf.constant(logits_head[1], tf.float32)

        @tf.function(reduce_retracing=True)
        def run(images):
            x = tf.image.resize(tf.cast(images, tf.float32), (size, size), method="bilinear",
                                antialias=True)
            x = x / 127.5 - 1.0
            pool = self.model(x, training=False)
            out = {"pool": pool}
            if logits_head is not None:
                out["logits"] = tf.matmul(pool, kernel) + bias
            return out

        self._run = run
        self.size = size

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"feature extractor {self.name} expects uint8 [B, H, W, 3] images, "
                             f"got {images.dtype} {images.shape}")
        outs = []
        for i in range(0, len(images), self.batch_size):
            outs.append({k: v.numpy() for k, v in self._run(images[i:i + self.batch_size]).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}


def _he_init(model, seed: int):
    """Deterministic random weights: He-normal kernels, zero biases, identity batch-norm."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        name, shape = w.name, tuple(w.shape)
        if "moving_variance" in name or "gamma" in name:
            w.assign(np.ones(shape, np.float32))
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            w.assign(np.zeros(shape, np.float32))
        else:
            fan_in = int(np.prod(shape[:-1])) or 1
            w.assign((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))


def _inception_backbone(weights_path: Optional[str], seed: int):
    """(pool model, (kernel, bias) or None) from one include-top InceptionV3."""
    import tensorflow as tf
    full = tf.keras.applications.InceptionV3(include_top=True, weights=None)
    head = None
    if weights_path is None:
        _he_init(full, seed)
        k, b = full.get_layer("predictions").get_weights()
        head = (k, b)
    else:
        has_top = "predictions" in _h5_layer_names(weights_path)
        full.load_weights(weights_path, by_name=not has_top)
        if has_top:
            head = tuple(full.get_layer("predictions").get_weights())
    pool = tf.keras.Model(full.input, full.get_layer("avg_pool").output, name="inception_pool")
    return pool, head


def _tiny_backbone(seed: int):
    import tensorflow as tf
    L = tf.keras.layers
    inp = L.Input((64, 64, 3))
    x = inp
    for f in (16, 32, 64, 128):
        x = L.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    pool = L.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, pool, name="random_tiny")
    _he_init(model, seed)
    rng = np.random.default_rng(seed + 1)
    head = ((rng.standard_normal((128, 10)) / np.sqrt(128)).astype(np.float32), np.zeros(10, np.float32))
    return model, head


@functools.lru_cache(maxsize=4)
def _build(kind: str, weights_path: Optional[str], fingerprint: str, seed: int, batch_size: int):
    if kind == "random_tiny":
        model, head = _tiny_backbone(seed)
        return FeatureExtractor("random_tiny", model, "resize64-bilinear-antialias;x/127.5-1",
                                fingerprint, comparable=False, logits_head=head, batch_size=batch_size)
    model, head = _inception_backbone(weights_path, seed)
    name = "inception" if weights_path else "random"
    return FeatureExtractor(name, model, INCEPTION_PREPROCESSING, fingerprint,
                            comparable=weights_path is not None, logits_head=head, batch_size=batch_size)


def get_extractor(extractor="inception", batch_size: int = 32, seed: int = 0,
                  download: bool = True) -> FeatureExtractor:
    """A (process-cached) FeatureExtractor: a registry name, a weights path, or an instance."""
    if isinstance(extractor, FeatureExtractor):
        return extractor
    if not isinstance(extractor, str):
        raise ValueError(f"extractor must be one of {EXTRACTOR_NAMES} or a weights file path, got {extractor!r}")
    if extractor in ("random", "random_tiny"):
        return _build(extractor, None, f"{extractor}-he-seed{seed}", seed, batch_size)
    if extractor == "inception" or os.sep in extractor or extractor.endswith(".h5"):
        path = resolve_inception_weights(None if extractor == "inception" else extractor, download=download)
        fp = f"inception-keras-sha256:{weights_fingerprint(path)};{INCEPTION_PREPROCESSING}"
        return _build("inception", path, fp, seed, batch_size)
    raise ValueError(f"unknown extractor {extractor!r}: use one of {EXTRACTOR_NAMES} or a path to "
                     f"InceptionV3 .h5 weights")


def extractor_is_known(extractor) -> bool:
    return isinstance(extractor, FeatureExtractor) or (isinstance(extractor, str) and (
        extractor in EXTRACTOR_NAMES or os.sep in extractor or extractor.endswith(".h5")))
