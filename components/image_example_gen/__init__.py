"""ImageExampleGen: face images -> TFX Examples (local runner or Apache Beam).

- transforms.py: per-file work as plain functions (decode, reject, crop, resize, labels, split,
  input listing and fingerprint); no Beam/TFX/TensorFlow imports.
- stages.py: the pipeline's stages as plain functions, shared by both runners.
- local_runner.py: `ingest`, the one entry (validate, stage, run, check, swap) and the Beam-free
  local runner; beam_pipeline.py: the same stages as a Beam pipeline (Dataflow/Flink/Spark).
- output.py: the output staged beside the old one and swapped in on success.
- component.py / driver.py / executor.py: the custom TFX component (`ImageExampleGen`).
- cli.py: `facegan ingest`.
"""
