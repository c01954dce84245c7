"""ImageExampleGen: a custom TFX component that ingests face images with Apache Beam.

Output: one standard `Examples` artifact (split_names ["train", "eval"]; `Split-train/`,
`Split-eval/` gzipped TFRecords of tf.Example in the schema of facegan/schema.py) so TFX's own
StatisticsGen/SchemaGen/Trainer read it, plus `ingest_summary.json`, `rejections.jsonl` and
`sample_grid.png` at the artifact root. Summary counts are also recorded as custom properties of
the artifact in MLMD (files_seen, examples_written, duplicates, rejected, mirrored,
train_examples, eval_examples, resolution, crop, filter, paired).

Caching: the driver fingerprints the input folder (names, sizes, mtimes) at run time, as TFX's
file-based ExampleGens do, so a changed folder re-runs ingestion and an unchanged one is a
cache hit.

Beam args come from the pipeline (`beam_pipeline_args`) or `.with_beam_pipeline_args(...)` and
are passed to Beam unchanged (DirectRunner multi-processing locally; Dataflow/Flink/Spark).
For remote runners add `--setup_file=<repo>/setup.py` so the workers get the `components`
package (without a dependency flag TFX stages only an ephemeral TFX package).
"""
from typing import Optional, Sequence, Union

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx import types
from tfx.types.standard_component_specs import EXAMPLES_KEY
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from facegan.components.image_example_gen import driver, executor
from facegan.ingest import options as O



class ImageExampleGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "resolution": ExecutionParameter(type=int),
        "crop": ExecutionParameter(type=str),
        "filter": ExecutionParameter(type=str),
        "mirror": ExecutionParameter(type=int),
        "extra_resolutions": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        "min_side": ExecutionParameter(type=int),
        "max_pixels": ExecutionParameter(type=int),
        "max_rejected_fraction": ExecutionParameter(type=float),
        "background": ExecutionParameter(type=str),
        "labels": ExecutionParameter(type=str, optional=True),
        "paired": ExecutionParameter(type=str, optional=True),
        "paired_seed": ExecutionParameter(type=int, optional=True),
        # set by the driver at run time (driver.py), part of the cache key
        driver.FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Face images (directory tree or .zip/.tar/.tar.gz archives) -> Examples (train/eval).

    Args:
      input_base: directory (searched recursively), archive, or single image file. Every file
        counts: non-images are rejected with a reason, never skipped silently.
      resolution: target side, a power of two in [8, 1024]; stored as the `image` feature.
      crop: `center` (largest centred square), `celeba` (the square on the face of an aligned
        CelebA frame) or `none` (pad to a square with `background`).
      mirror: also write a horizontally mirrored copy of every image (`mirrored`=1, same split).
      extra_resolutions: lower resolutions to store as `image_<R>` (e.g. "4,8,16,32" or a list),
        each a power of two >= 4, made by 2x2 box averaging (PGGAN) for progressive growing.
      eval_fraction: share of images (by content hash, deterministic) in the eval split, [0, 1).
      min_side: images whose shorter side is below this are rejected as `too_small`.
      max_rejected_fraction: fail when more than this share of files is rejected, in [0, 1].
      labels: optional path: CelebA `list_attr_celeba.txt` (-> int64 0/1 `attr/<name>`), or a
        JSON file / directory of per-image JSON files (Curto & Zarza style attributes).
      filter: resize filter (lanczos default; see facegan/ingest/image_ops.py for why).
      max_pixels: decompression-bomb guard; larger images are rejected as `oversized`.
      background: "R,G,B" that alpha is composited on and `crop="none"` pads with.
      paired: image-to-image pairs: a facegan/ingest/paired.py transform spec, e.g. "lowres:factor=4",
        "grayscale", "edges:threshold=32", "masked"; each example then also stores the input
        derived from its face (`input_image`, `pair/transform`, `pair/params`, `pair/seed`), and
        the summary and the artifact's `paired` property name the spec. "" / None: no pairs.
      paired_seed: seed of the paired transform (only `masked` draws randomness).
    """

    SPEC_CLASS = ImageExampleGenSpec
    DRIVER_CLASS = driver.ImageExampleGenDriver
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, resolution: int, crop: str = "center",
                 mirror: bool = False,
                 extra_resolutions: Union[str, Sequence[int], None] = "",
                 eval_fraction: float = O.DEFAULT_EVAL_FRACTION,
                 min_side: int = O.DEFAULT_MIN_SIDE,
                 max_rejected_fraction: float = O.DEFAULT_MAX_REJECTED_FRACTION,
                 labels: Optional[str] = None,
                 filter: str = O.DEFAULT_FILTER,  # noqa: A002 - the documented parameter name
                 max_pixels: int = O.DEFAULT_MAX_PIXELS,
                 background: Union[str, Sequence[int]] = "255,255,255",
                 paired: Optional[str] = None, paired_seed: int = 0):
        if not input_base:
            raise ValueError("ImageExampleGen: input_base must be a non-empty path")
        # Validate now (pipeline construction), not minutes later in the executor.
        cfg = O.IngestConfig(resolution=resolution, crop=crop, filter=filter, mirror=mirror,
                             extra_resolutions=extra_resolutions or (), eval_fraction=eval_fraction,
                             min_side=min_side, max_pixels=max_pixels, background=background,
                             labels=labels, max_rejected_fraction=max_rejected_fraction,
                             paired=paired or "", paired_seed=paired_seed)
        spec = ImageExampleGenSpec(
            input_base=str(input_base), resolution=cfg.resolution, crop=cfg.crop,
            filter=cfg.filter, mirror=int(cfg.mirror),
            extra_resolutions=",".join(str(r) for r in cfg.extra_resolutions),
            eval_fraction=cfg.eval_fraction, min_side=cfg.min_side, max_pixels=cfg.max_pixels,
            max_rejected_fraction=cfg.max_rejected_fraction,
            background=",".join(str(c) for c in cfg.background), labels=cfg.labels,
            paired=cfg.paired or None, paired_seed=int(cfg.paired_seed),
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
