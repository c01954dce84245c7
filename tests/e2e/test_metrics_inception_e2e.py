"""The real InceptionV3 extractor path end to end, with a locally saved weights file (e2e: it
builds InceptionV3 twice and runs it at 299x299, ~1 minute on a loaded 2-core machine)."""
import numpy as np
import pytest

from facegan.metrics import evaluate
from facegan.metrics import features as feat_lib
from tests.metrics.test_evaluate import blobs, no_weights  # noqa: F401  (fixture)


@pytest.mark.e2e
def test_local_inception_weights_file_via_env(no_weights, monkeypatch):  # noqa: F811
    """The real InceptionV3 path end to end, with a locally saved (random) weights file."""
    import tensorflow as tf
    src = tf.keras.applications.InceptionV3(include_top=True, weights=None)
    path = str(no_weights / "inception_local.h5")
    src.save_weights(path)
    monkeypatch.setenv(feat_lib.WEIGHTS_ENV, path)
    ext = feat_lib.get_extractor("inception")
    assert ext.comparable and ext.has_logits and ext.dim == 2048 and ext.size == 299
    assert feat_lib.weights_fingerprint(path) in ext.fingerprint
    imgs = blobs(2, res=64)
    out = ext(imgs)
    x = tf.image.resize(imgs.astype(np.float32), (299, 299), method="bilinear", antialias=True) / 127.5 - 1
    # one forward pass of the reference for both outputs (a 299x299 InceptionV3 pass is the cost)
    pool, probs = (t.numpy() for t in tf.keras.Model(src.input, [src.get_layer("avg_pool").output,
                                                                 src.output])(x, training=False))
    np.testing.assert_allclose(out["pool"], pool, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tf.nn.softmax(out["logits"]).numpy(), probs, rtol=1e-4, atol=1e-6)
    r = evaluate(["fid"], imgs, imgs, num_images=2, extractor=ext, progress=False)
    assert r["comparable"] is True and "fid2" in r and abs(r["fid2"]) < 1e-6
