"""facegan.trainer: the GAN model zoo and its training loop.

`config` (typed, TensorFlow-free config + presets), `registry` (architectures and loss families,
TensorFlow-free), `networks/`, `losses`, `regularizers`, `gan` (the keras.Model and its
train_step), `data` (input stream), `train_lib` (the loop), `run_fn` (TFX Trainer entry point),
`cli` (`facegan train`), `export` (the generator SavedModel). See ARCHITECTURE.md, "Training".
"""
