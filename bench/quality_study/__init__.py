"""The quality study (bench/quality.py): train a matrix of presets for one budget, score them with
one protocol during training, write docs/quality.md.

- common.py: the study's error and its run folders' file names.
- matrix.py: rows, the papers' claims, each (row, seed)'s config.
- protocol.py: the evaluation protocol (the trainer's `eval.*`) and run fingerprints.
- records.py: reading a run's metrics.jsonl.
- aggregate.py: means, spreads and verdicts.
- plots.py: curves (PIL).
- report.py: docs/quality.md, quality.json, the rerun comparison.
- data.py: the machine and the faces.
- command.py: the command line (bench/quality.py); runner.py: training (TensorFlow).
Not installed: it runs from a repository checkout.
"""
