"""Speed switches must not change what the model learns: XLA and mixed precision vs float32.

A short run (2 epochs of Adam on the tiny synthetic set, through the real train and eval steps)
with each switch reaches the val_loss of the float32 run within a stated tolerance:
- XLA (`--config.xla=true`) fuses the same float32 arithmetic in another order: float noise,
  1e-4 relative.
- bfloat16 (`mixed_bfloat16`) keeps 8 bits of mantissa in activations and gradients, and
- float16 (`mixed_float16`, with dynamic loss scaling) 11 bits: 2% relative, far below the
  gap between epochs (the test also checks that gap, so the tolerance means something).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored

from autoenc import models, pipeline, steps, train
from configs import conv_denoise, dense_compress

TOLERANCES = {"xla": 1e-4, "mixed_bfloat16": 0.02, "mixed_float16": 0.02}
BASES = {"dense": dense_compress, "conv": conv_denoise}
EPOCHS = 2


def short_run(tiny_data, model, **overrides):
    """val_loss after each of 2 epochs of the real train and eval steps, from seed 0."""
    config = BASES[model].get_config()
    config.update(dict(batch_size=64, optimizer="adam", **overrides))
    config.learning_rate = 0.003
    train.set_op_determinism(config.deterministic)
    strategy = mirrored(1)
    keras.utils.set_random_seed(0)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    net = nets.autoencoder
    train_steps = steps.TrainSteps(
        strategy, net, optimizer, config.batch_size, jit_compile=config.xla
    )
    eval_sums = steps.make_eval_sums(strategy, net)
    shape = models.input_shape(config)
    images, test_images = tf.constant(tiny_data.x_train), tf.constant(tiny_data.x_test)
    eval_data = pipeline.eval_dataset(
        test_images, batch_size=64, seed=0, noise_factor=config.noise_factor, input_shape=shape
    )
    # TensorFlow's noise in every precision, so the runs differ by their arithmetic alone (a
    # mixed precision's 16-bit noise is another noise stream, which on 2 tiny epochs moved a
    # mixed_float16 conv run's val_loss by 2.3%; its sampler is tested in test_pipeline.py)
    batches = pipeline.TrainBatches(images, 64, 0, config.noise_factor, shape)
    num_steps = batches.steps_per_epoch
    val_losses = []
    for epoch in range(EPOCHS):
        train_steps(train_steps.run_iterator(batches, [(epoch, [num_steps])]), num_steps)
        val_losses.append(steps.sums_to_means(eval_sums(eval_data))["loss"])
    return np.array(val_losses)


@pytest.mark.parametrize("model", ["dense", "conv"])
def test_xla_and_mixed_precision_reach_float32_val_loss(tiny_data, model):
    reference = short_run(tiny_data, model, xla=False)  # dense_compress defaults to XLA
    assert reference[1] < reference[0] * (1 - 3 * TOLERANCES["mixed_bfloat16"])  # it learns
    runs = {
        "xla": dict(xla=True, deterministic=model == "dense"),  # see config.validate
        "mixed_bfloat16": dict(precision="mixed_bfloat16"),  # the config's xla: dense with
        "mixed_float16": dict(precision="mixed_float16"),  # XLA, a call's steps in one program
    }
    for name, overrides in runs.items():
        val_loss = short_run(tiny_data, model, **overrides)
        np.testing.assert_allclose(val_loss, reference, rtol=TOLERANCES[name], err_msg=name)
