"""facegan: shared conventions (schema, image helpers, progress) and the `facegan` CLI.

Nothing here imports TensorFlow or TFX at module import time.
"""
__version__ = "0.1.0"
