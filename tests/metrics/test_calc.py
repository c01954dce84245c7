"""The one metric contract (metrics/calc.py, Metric.calc) and the generator's own request stream
(facegan/generator/stream.py): registry queries by what a metric needs, every registered metric
computable through `calc_metrics`, paired scores sharing one pass, a clear refusal naming what a
generator lacks."""
import numpy as np
import pytest

from facegan.metrics.registry import METRICS, get_metric, metric_names


def test_registry_answers_which_metrics_need_what():
    # the quality study's lists: no-download image metrics, and the extractor's feature metrics
    assert metric_names(generator={"samples"}, needs="images", needs_examples=False) == \
        ["swd", "ms_ssim", "face_detection"]
    assert metric_names(generator={"samples"}, needs="features") == ["fid", "kid"]
    # a conditional generator can be scored on everything an unconditional one can, plus control
    plain, cond = metric_names(generator={"samples"}), metric_names(generator={"samples", "conditioning"})
    assert set(cond) - set(plain) == {"attribute_control"}
    assert metric_names(generator={"translations"}) == ["l1", "psnr", "ssim", "target_attribute_rate"]
    # the metrics that are not a function of the shared image stream implement `calc` themselves
    assert metric_names(streaming=False) == ["attribute_control", "l1", "psnr", "ssim", "target_attribute_rate"]
    from facegan.metrics.base import Metric
    for name in METRICS:     # a non-streaming metric brings its own calc
        m = get_metric(name)
        assert m.streaming or type(m).calc is not Metric.calc, name


def test_unavailable_names_what_the_generator_lacks():
    from facegan.metrics.calc import EvalData, calc_metrics

    class Plain:
        provides = frozenset({"samples"})

    with pytest.raises(ValueError, match="attribute_control: needs a conditional generator"):
        calc_metrics(["swd", "attribute_control"], Plain(), EvalData(real_batches=lambda: iter(())))
    with pytest.raises(ValueError, match="psnr: .*needs an image-to-image generator"):
        calc_metrics(["psnr"], Plain(), EvalData(examples_uri="x"))
    with pytest.raises(ValueError, match="swd: needs real images"):
        calc_metrics(["swd"], Plain(), EvalData())


def test_a_conditional_generator_owns_its_request_stream():
    """SampledGenerator: row i = (sample_latents(seed, i), requested_attributes(seed, i)), on any batch split."""
    from facegan.generator.ops import sample_latents
    from facegan.generator.stream import SampledGenerator, requested_attributes
    calls = []

    def sample_fn(z, attributes=None):
        calls.append(attributes)
        z = np.asarray(z)
        img = np.zeros((len(z), 4, 4, 3), np.uint8)
        img[:, 0, 0, 0] = np.clip(np.round(z[:, 0] * 10 + 100), 0, 255)
        img[:, 0, 0, 1:3] = np.asarray(attributes) * 255
        return img

    gen = SampledGenerator(sample_fn, 6, 4, ["male", "smiling"])
    assert gen.provides == {"samples", "conditioning"}
    pairs = list(gen.generated_batches(10, 4, seed=7, with_requests=True))
    assert [len(i) for i, _ in pairs] == [4, 4, 2]
    req = np.concatenate([r for _, r in pairs])
    np.testing.assert_array_equal(req, requested_attributes(7, 0, 10, 2))
    np.testing.assert_array_equal(np.concatenate(calls), req)          # what the generator received
    images = np.concatenate([i for i, _ in pairs])
    np.testing.assert_array_equal(images[:, 0, 0, 1:3], req * 255)
    z0 = sample_latents(7, 0, 10, 6).numpy()[:, 0]
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.clip(np.round(z0 * 10 + 100), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(np.concatenate(list(gen.generated_batches(10, 3, seed=7))), images)
    assert SampledGenerator(sample_fn, 6, 4).provides == {"samples"}


def test_paired_scores_share_one_pass_through_the_contract(tmp_path):
    import tensorflow as tf

    from facegan import examples_io, schema
    from facegan.generator import IMAGE_TO_IMAGE, export_generator, load_generator
    from facegan.metrics import paired as P
    from facegan.metrics.calc import CalcOptions, EvalData, calc_metrics
    from facegan.images import encode_png
    rng = np.random.default_rng(0)
    ex = []
    for k in range(5):
        target = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        source = np.clip(target.astype(int) + 9 * (k + 1), 0, 255).astype(np.uint8)
        feats = examples_io.schema_features(target, sha256=str(k))
        ex.append(examples_io.encode_example({**feats, schema.INPUT_IMAGE: encode_png(source)}))
    root = str(tmp_path / "ex")
    examples_io.write_examples(f"{examples_io.split_dir(root, schema.EVAL_SPLIT)}/d.gz", ex)
    identity = tf.keras.Sequential([tf.keras.Input([16, 16, 3]), tf.keras.layers.Lambda(lambda x: x)])
    gen = load_generator(export_generator(identity, str(tmp_path / "id"), kind=IMAGE_TO_IMAGE))
    calls = []
    translate = gen.translate
    gen.translate = lambda x, d=None: calls.append(len(x)) or translate(x, d)
    out = calc_metrics(["l1", "psnr", "ssim"], gen, EvalData(examples_uri=root), num_images=100,
                       opts=CalcOptions(batch_size=2))
    assert calls == [2, 2, 1]                      # one pass over the 5 pairs for all three scores
    ins, tgs = map(np.concatenate, zip(*P.paired_batches(root, schema.EVAL_SPLIT, 8)))
    assert out["l1"] == pytest.approx(float(np.mean(P.l1(ins, tgs))))
    assert out["psnr"] == pytest.approx(float(np.mean(P.psnr(ins, tgs))))
    assert out["protocols"]["ssim"] == {"request": "ssim", "num_pairs": 5}
