"""Feature extractors for FID / KID / IS / memorization: uint8 images in, float features out.

Registry `EXTRACTORS` (name -> builder; `get_extractor` validates a name early, and a file path
picks its builder by suffix through `PATH_KINDS`):

| name / path       | network                                   | comparable         | resize to the net  |
|-------------------|-------------------------------------------|--------------------|--------------------|
| `inception`       | Keras InceptionV3, ImageNet weights (.h5) | between our runs   | TF bilinear, AA    |
| `random`          | the same InceptionV3, random He-normal    | no                 | TF bilinear, AA    |
|                   | init (seed 0): identical FLOPs            |                    |                    |
| `random_tiny`     | 4-layer random convnet at 64x64 (seed 0)  | no                 | TF bilinear, AA    |
| `*.h5` path       | Keras InceptionV3 with those weights      | between our runs   | TF bilinear, AA    |
| `*.pb` path       | the 2015 TF FID Inception graph           | with published FID | the graph's own    |
|                   | (`classify_image_graph_def.pb`)           |                    | TF1 ResizeBilinear |

The standard FID network (Heusel et al.'s TTUR code, pytorch-fid, clean-fid "legacy_tensorflow")
is the frozen 2015 Inception graph `classify_image_graph_def.pb` from
`inception-2015-12-05.tgz`. Given its path, images are fed as float 0..255 into its `ExpandDims:0`
tensor, exactly as TTUR's `fid.py` does, so the graph applies its own preprocessing: TF1
`ResizeBilinear` to 299x299 (no antialiasing, `align_corners=False`; what pytorch-fid emulates with
`F.interpolate(mode="bilinear")`), then (x - 128) / 128. Features are `pool_3:0` (2048-d); IS
logits are pool_3 times the `softmax/logits/MatMul` weights (1008 classes, no bias), as in the
original Inception Score code of Salimans et al. FIDs from this extractor are comparable with
published tables. `.pth` converted weights (pytorch-fid) need PyTorch and are not supported.

Keras extractors: uint8 RGB is resized to the network's input (299x299 for InceptionV3) with
`tf.image.resize(method="bilinear", antialias=True)` (a triangle filter scaled to the output:
plain bilinear when upsampling, area-like when downsampling). This is neither the 2015 graph's
resize nor clean-fid's (whose default is PIL bicubic), so these FIDs are comparable between runs
of this project (same extractor fingerprint), not with published tables. Then x / 127.5 - 1
(Keras `inception_v3.preprocess_input`). Features are the 2048-d `avg_pool` output; logits for IS
are that vector times the `predictions` layer's kernel plus bias (pre-softmax, 1000 classes).

Every result records which extractor and which resize produced it (`protocols[key]["extractor"]`,
`["resize"]`); the HDCGAN protocol option (`fid:downscale=64`, Curto et al.: samples and reals
downscaled to 64x64 before the feature extractor) downscales with PIL bicubic first (`downscale`).

Weights for `inception` are looked up in this order, and never silently replaced by random ones:
1. `extractor=<path to .h5 or .pb>` or the env var FACEGAN_INCEPTION_WEIGHTS;
2. Keras' cache `$KERAS_HOME/models` (default `~/.keras/models`): the include-top file, else notop;
3. a download of Keras' include-top file into that cache through `keras.utils.get_file`
   (md5-checked by its `file_hash`) where the internet is reachable.
If none works, `WeightsUnavailableError` says how to provide them. A notop file gives FID/KID but
not IS (no classifier head), which is refused with its own message.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

INCEPTION_TOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_TOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                     + INCEPTION_TOP_FILE)
INCEPTION_TOP_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"  # Keras' own file_hash for the file above
WEIGHTS_ENV = "FACEGAN_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299
KERAS_RESIZE = "tf.image.resize bilinear antialias to {size}x{size}"
INCEPTION_PREPROCESSING = "resize299-bilinear-antialias;x/127.5-1"
GRAPH_INPUT = "ExpandDims:0"       # TTUR's feed point: float 0..255 images, any size
GRAPH_POOL = "pool_3:0"
GRAPH_LOGITS_MATMUL = "softmax/logits/MatMul"
GRAPH_RESIZE = "2015 graph ResizeBilinear (TF1, no antialias) to 299x299"
GRAPH_PREPROCESSING = "graph:ResizeBilinear299;(x-128)/128"
DOWNSCALE_FILTER = "PIL bicubic"


class WeightsUnavailableError(RuntimeError):
    """InceptionV3 ImageNet weights could not be found or downloaded; the message says how to fix it."""


def keras_models_dir() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")),
                        "models")


def _download(url: str, dest: str, file_hash: str) -> str:
    """Download `url` to `dest` through Keras' `get_file` (hash-checked, atomic; tests replace
    this to simulate no internet)."""
    import tensorflow as tf
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)   # get_file falls back to /tmp/.keras if it cannot write here
    return tf.keras.utils.get_file(os.path.basename(dest), origin=url, file_hash=file_hash,
                                   cache_dir=os.path.dirname(folder),
                                   cache_subdir=os.path.basename(folder))


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
        if not explicit.endswith(".pb"):
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
            return _download(INCEPTION_TOP_URL, dest, INCEPTION_TOP_MD5)
        except Exception as e:  # any network/file/hash error: explain below, never fall back to random
            tried.append(f"downloading {INCEPTION_TOP_URL} failed: {type(e).__name__}: {e}")
    raise WeightsUnavailableError(
        "FID/KID/IS need InceptionV3 ImageNet weights and none could be found:\n  - "
        + "\n  - ".join(tried)
        + f"\nProvide them: download {INCEPTION_TOP_URL} on a machine with internet access, then either"
          f"\n  * set {WEIGHTS_ENV}=/path/to/{INCEPTION_TOP_FILE}, or"
          f"\n  * pass extractor='/path/to/{INCEPTION_TOP_FILE}' (CLI: --inception-weights), or"
          f"\n  * for published-comparable FID, pass the 2015 FID graph: extractor='/path/to/classify_image_graph_def.pb', or"
          f"\n  * copy it to {os.path.join(cache, INCEPTION_TOP_FILE)} (Keras' cache)."
          "\nFor a smoke run only, extractor='random' gives numbers labelled *_random and "
          "comparable=False (never an FID/KID/IS).")


class FeatureExtractor:
    """Callable: uint8 [B, H, W, 3] -> {"pool": float32 [B, D], "logits": float32 [B, K] or absent}.

    `forward` is a tf.function from a float32 0..255 batch to that dict (it does the network's own
    resize and scaling). `name` labels results, `fingerprint` (name + weights hash +
    preprocessing) keys caches, `resize` says how images reach the network's input size,
    `comparable` is False for random networks, `has_logits` says whether IS is available.
    """

    def __init__(self, name: str, forward: Callable, dim: int, preprocessing: str,
                 fingerprint: str, comparable: bool, has_logits: bool, resize: str,
                 size: int, batch_size: int = 32, model=None):
        self.model = model   # the Keras backbone (pool features), None for a frozen graph
        self.name, self._run, self.dim, self.preprocessing = name, forward, int(dim), preprocessing
        self.fingerprint, self.comparable, self.has_logits = fingerprint, comparable, has_logits
        self.resize, self.size, self.batch_size = resize, int(size), batch_size

    def resize_label(self, view: Optional[int] = None) -> str:
        """How images reach the network for an input view (None, or a downscale size first)."""
        if view is None:
            return self.resize
        return f"downscale to {view}x{view} ({DOWNSCALE_FILTER}), then {self.resize}"

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"feature extractor {self.name} expects uint8 [B, H, W, 3] images, "
                             f"got {images.dtype} {images.shape}")
        outs = []
        for i in range(0, len(images), self.batch_size):
            x = images[i:i + self.batch_size].astype(np.float32)
            outs.append({k: np.asarray(v) for k, v in self._run(x).items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3] with PIL bicubic (antialiased when shrinking);
    HDCGAN's FID protocol (samples and reals at 64x64 before the extractor)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
                     for im in images])


def _keras_forward(model, logits_head=None):
    """The forward of a Keras backbone: antialiased bilinear resize, x/127.5-1, pool (+ logits)."""
    import tensorflow as tf
    size = int(model.inputs[0].shape[1])
    if logits_head is not None:
        kernel = tf.constant(logits_head[0], tf.float32)
        bias = tf.constant(logits_head[1], tf.float32)

    @tf.function(reduce_retracing=True)
    def run(images):
        x = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
        pool = model(x / 127.5 - 1.0, training=False)
        out = {"pool": pool}
        if logits_head is not None:
            out["logits"] = tf.matmul(pool, kernel) + bias
        return out

    return run, int(model.outputs[0].shape[-1]), size


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


def _keras_extractor(name, model, head, preprocessing, fingerprint, comparable, batch_size):
    run, dim, size = _keras_forward(model, head)
    return FeatureExtractor(name, run, dim, preprocessing, fingerprint, comparable,
                            has_logits=head is not None, resize=KERAS_RESIZE.format(size=size),
                            size=size, batch_size=batch_size, model=model)


def load_fid_inception_graph(path: str):
    """The 2015 FID Inception frozen graph at `path` -> (forward, dim, has_logits).

    Images are fed into `ExpandDims:0` (TTUR's feed point) through `import_graph_def`'s
    input_map, with a free batch dimension; the graph resizes and scales them itself."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(path, "rb") as f:
            graph_def.ParseFromString(f.read())
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ValueError(f"FID Inception graph {path} is not a readable frozen GraphDef (.pb): "
                         f"{type(e).__name__}: {e}") from None
    nodes = {n.name for n in graph_def.node}
    missing = [t.split(":")[0] for t in (GRAPH_INPUT, GRAPH_POOL) if t.split(":")[0] not in nodes]
    if missing:
        raise ValueError(f"FID Inception graph {path} lacks node(s) {missing}; expected the 2015 "
                         f"graph classify_image_graph_def.pb (from inception-2015-12-05.tgz)")
    has_logits = GRAPH_LOGITS_MATMUL in nodes

    def imported(images):
        wanted = [GRAPH_POOL] + ([GRAPH_LOGITS_MATMUL] if has_logits else [])
        outs = tf.compat.v1.import_graph_def(graph_def, input_map={GRAPH_INPUT: images},
                                             return_elements=wanted, name="fid_inception")
        pool = tf.reshape(outs[0], [tf.shape(images)[0], -1])
        res = {"pool": pool}
        if has_logits:  # Salimans et al.'s IS code: pool_3 @ softmax/logits weights, no bias
            res["logits"] = tf.matmul(pool, outs[1].inputs[1])
        return res

    fn = tf.compat.v1.wrap_function(imported, [tf.TensorSpec([None, None, None, 3], tf.float32)])
    dim = fn.structured_outputs["pool"].shape[-1]
    if dim is None:   # shapes not inferable through the import: one probe forward
        dim = fn(tf.zeros([1, 32, 32, 3]))["pool"].shape[-1]
    return fn, int(dim), has_logits


def _graph_extractor(path: str, batch_size: int) -> FeatureExtractor:
    run, dim, has_logits = load_fid_inception_graph(path)
    fp = f"inception2015-graph-sha256:{weights_fingerprint(path)};{GRAPH_PREPROCESSING}"
    return FeatureExtractor("inception2015", run, dim, GRAPH_PREPROCESSING, fp, comparable=True,
                            has_logits=has_logits, resize=GRAPH_RESIZE, size=INCEPTION_SIZE,
                            batch_size=batch_size)


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    build: Callable[..., FeatureExtractor]   # (path or None, seed, batch_size) -> extractor
    comparable: bool
    description: str


def _build_inception(path, seed, batch_size):
    path = resolve_inception_weights(path)
    if path.endswith(".pb"):
        return _cached(_graph_extractor, path, batch_size)
    fp = f"inception-keras-sha256:{weights_fingerprint(path)};{INCEPTION_PREPROCESSING}"
    return _cached(_keras_inception, path, fp, batch_size)


def _keras_inception(path, fingerprint, batch_size):
    model, head = _inception_backbone(path, 0)
    return _keras_extractor("inception", model, head, INCEPTION_PREPROCESSING, fingerprint,
                            True, batch_size)


def _build_random(path, seed, batch_size):
    def make(seed, batch_size):
        model, head = _inception_backbone(None, seed)
        return _keras_extractor("random", model, head, INCEPTION_PREPROCESSING,
                                f"random-he-seed{seed}", False, batch_size)
    return _cached(make, seed, batch_size)


def _build_random_tiny(path, seed, batch_size):
    def make(seed, batch_size):
        model, head = _tiny_backbone(seed)
        return _keras_extractor("random_tiny", model, head, "resize64-bilinear-antialias;x/127.5-1",
                                f"random_tiny-he-seed{seed}", False, batch_size)
    return _cached(make, seed, batch_size)


def _build_graph(path, seed, batch_size):
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"FID Inception graph {path!r} does not exist")
    return _cached(_graph_extractor, path, batch_size)


_CACHE: Dict = {}


def _cached(make, *args):
    """Build once per process (networks are large); keyed by builder and arguments."""
    key = (getattr(make, "__qualname__", repr(make)),) + args
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make(*args)
    return _CACHE[key]


EXTRACTORS: Dict[str, ExtractorSpec] = {s.name: s for s in (
    ExtractorSpec("inception", _build_inception, True, "Keras InceptionV3, ImageNet weights"),
    ExtractorSpec("inception2015", _build_graph, True,
                  "the 2015 TF FID Inception graph (a .pb path): published-comparable FID"),
    ExtractorSpec("random", _build_random, False, "InceptionV3 with random weights (smoke runs)"),
    ExtractorSpec("random_tiny", _build_random_tiny, False, "tiny random convnet (unit tests)"),
)}
PATH_KINDS = {".h5": "inception", ".pb": "inception2015"}
EXTRACTOR_NAMES = tuple(n for n in EXTRACTORS if n != "inception2015")


@contextlib.contextmanager
def float32_policy():
    """Build metric networks in float32 whatever the global Keras mixed-precision policy: a training
    run under `run.mixed_precision: auto` sets mixed_bfloat16 globally (trainer/train_lib.py), and
    its metrics during training must give the evaluator's numbers (and a cached classifier the same
    weights) in every run."""
    import tensorflow as tf
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def get_extractor(extractor="inception", batch_size: int = 32, seed: int = 0) -> FeatureExtractor:
    """A (process-cached) FeatureExtractor: a registry name, a weights/graph path, or an instance."""
    if isinstance(extractor, FeatureExtractor):
        return extractor
    if not isinstance(extractor, str):
        raise ValueError(f"extractor must be one of {EXTRACTOR_NAMES} or a weights file path, got {extractor!r}")
    if extractor == "inception2015":
        raise ValueError("extractor 'inception2015' is given by its file: pass the path of the 2015 "
                         "FID Inception graph, e.g. /path/to/classify_image_graph_def.pb")
    if extractor in EXTRACTORS:
        with float32_policy():
            return EXTRACTORS[extractor].build(None, seed, batch_size)
    suffix = os.path.splitext(extractor)[1].lower()
    if suffix in PATH_KINDS:
        with float32_policy():
            return EXTRACTORS[PATH_KINDS[suffix]].build(extractor, seed, batch_size)
    raise ValueError(f"unknown extractor {extractor!r}: use one of {', '.join(EXTRACTOR_NAMES)}, a "
                     f"path to InceptionV3 .h5 weights, or a path to the 2015 FID Inception graph (.pb)")
