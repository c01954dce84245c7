"""ImageExampleGen: face images -> TFX Examples with Apache Beam.

- transforms.py: per-file work as plain functions (decode, reject, crop, resize, labels, split,
  tf.Example encoding); no Beam/TFX/TensorFlow imports.
- beam_pipeline.py: the Beam pipeline and `run_ingest` (shared by the TFX executor and the CLI).
- component.py / executor.py: the custom TFX component (`ImageExampleGen`).
- cli.py: `facegan ingest`.
"""
