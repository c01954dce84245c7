"""facegan.ingest: face images -> Examples (the library behind `facegan ingest` and ImageExampleGen).

- options.py: rejection reasons, defaults, `IngestConfig`, `IngestError` (errors name a field).
- listing.py: which files a run reads (each real file once), the input fingerprint, reading bytes.
- archives.py: zip/tar members, every one accounted for.
- image_ops.py: per-file work (hash, decode or reject, crop, resize, extra resolutions, split).
- labels.py: attribute tables (CelebA, JSON) matched to files; names by facegan/conditioning.py.
- paired.py: image-to-image pairs derived from each image (`--paired`).
- stages.py: the pipeline's stages as plain functions, shared by both runners.
- runner.py: `ingest`, the one entry (validate, stage, pick a runner, check, swap).
- pool_runner.py: the Beam-free runner (this process or a fork pool).
- beam_pipeline.py: the same stages as a Beam pipeline (Dataflow, Flink, Spark, DirectRunner).
- watchdog.py: the worker processes a Beam run starts die with `facegan ingest`, even on kill -9.
- output.py: the output staged beside the old one and swapped in on success.
- cli.py: `facegan ingest`.
No Beam, TFX or TensorFlow at import time (Beam only in beam_pipeline.py and for remote paths).
"""
