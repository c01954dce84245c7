"""trainer/fused_adam.py: the fused Adam update equals Keras' Adam to float32 precision (same slots)."""
import numpy as np
import pytest
import tensorflow as tf

from facegan.trainer.fused_adam import FusedAdam


def _train(opt_cls, strategy, steps=5, **kw):
    with strategy.scope():
        tf.keras.utils.set_random_seed(3)
        model = tf.keras.Sequential([tf.keras.layers.Dense(7, input_shape=(5,)), tf.keras.layers.Dense(2)])
        opt = opt_cls(**kw)
        opt.build(model.trainable_variables)
    x = tf.random.stateless_normal([16, 5], [1, 2])

    @tf.function
    def step(i):
        def replica():
            with tf.GradientTape() as tape:
                y = model(x * tf.cast(i + 1, tf.float32))
                loss = tf.reduce_mean(tf.square(y - 0.5)) * 1e3    # large gradients: Adam's eps matters little
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables), skip_gradients_aggregation=True)
        strategy.run(replica)

    for i in range(steps):
        step(tf.constant(i))
    return ([v.numpy() for v in model.trainable_variables],
            [v.numpy() for v in opt.variables if v.shape.rank])


@pytest.mark.parametrize("kw", [dict(learning_rate=2e-4, beta_1=0.5, epsilon=1e-8),       # dcgan preset
                                dict(learning_rate=0.0025, beta_1=0.0, beta_2=0.99)])    # stylegan2 preset
def test_fused_adam_matches_keras_adam(kw):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])   # as the trainer runs it
    ours, ours_slots = _train(FusedAdam, strategy, **kw)
    ref, ref_slots = _train(tf.keras.optimizers.Adam, strategy, **kw)
    start, _ = _train(tf.keras.optimizers.Adam, strategy, steps=0, **kw)
    assert max(np.abs(a - b).max() for a, b in zip(ref, start)) > 1e-3      # the weights moved
    for a, b in zip(ours + ours_slots, ref + ref_slots):
        # the kernel forms 1 - beta in float32 (Keras in double): 1.3e-5 relative on 1 - 0.999
        np.testing.assert_allclose(a, b, rtol=5e-5, atol=2e-7)


def test_fused_adam_checkpoint_is_keras_adams(tmp_path):
    """Same slot variables: a checkpoint written with Keras' Adam restores into FusedAdam."""
    v = tf.Variable(tf.ones([3]))
    keras_opt = tf.keras.optimizers.Adam(0.1)
    keras_opt.apply_gradients([(tf.constant([1.0, 2.0, 3.0]), v)])
    path = tf.train.Checkpoint(v=v, opt=keras_opt).save(str(tmp_path / "ck"))
    v2 = tf.Variable(tf.zeros([3]))
    fused = FusedAdam(0.1)
    fused.build([v2])
    tf.train.Checkpoint(v=v2, opt=fused).restore(path).assert_consumed()
    np.testing.assert_array_equal(v2.numpy(), v.numpy())
    np.testing.assert_array_equal(fused.variables[2].numpy(), keras_opt.variables[2].numpy())   # v slot
    assert int(fused.iterations.numpy()) == 1


def test_optim_optimizer_adam_fused_is_opt_in():
    from facegan.trainer import gan
    from facegan.trainer.config import ConfigError, get_preset, validate
    fused = gan.make_optimizer(validate(get_preset("smoke", {"optim.optimizer": "adam_fused"})), 1e-3)
    plain = gan.make_optimizer(validate(get_preset("smoke")), 1e-3)
    assert isinstance(fused, FusedAdam) and type(plain) is tf.keras.optimizers.Adam
    lazy = gan.make_optimizer(validate(get_preset("smoke", {"optim.optimizer": "adam_fused"})), 1e-3, lazy_interval=4)
    from facegan.trainer.stylegan_losses import lazy_optimizer_params
    assert isinstance(lazy, FusedAdam)     # StyleGAN2's lazy rescaling is kept
    assert float(lazy.beta_1) == pytest.approx(lazy_optimizer_params(1e-3, float(plain.beta_1), float(plain.beta_2), 4)[1])
    with pytest.raises(ConfigError, match="optim.optimizer 'adamw' is not one of"):
        validate(get_preset("smoke", {"optim.optimizer": "adamw"}))
