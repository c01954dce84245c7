"""ImageExampleGen: the TFX component that ingests face images into Examples.

- component.py / driver.py / executor.py: the custom TFX component (`ImageExampleGen`); the work
  is facegan.ingest's (`facegan.ingest.runner.ingest`: validate, stage, run, check, swap).
"""
