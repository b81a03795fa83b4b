"""The same global batch gives the same training on 1, 2 and 4 replicas (logical CPU devices).

This is what catches gradients that are averaged instead of summed across replicas
(keras#19308), a loss divided by the per-replica batch, or an unscaled regulariser.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored, synthetic_images

from autoenc import models, pipeline, steps, train
from configs import conv_denoise, deep_compress, dense_compress, unet_denoise

IMAGES = tf.constant(synthetic_images(256, seed=3))
STEPS = 5


def train_weights(config, replicas, initial_weights):
    strategy = mirrored(replicas)
    nets, optimizer = train.build_model_and_optimizer(
        config,
        strategy,
        initial_weights,
        steps_per_epoch=STEPS,  # sizes a cosine schedule
    )
    model = nets.autoencoder
    train_steps = steps.TrainSteps(strategy, model, optimizer, config.batch_size)
    batches = pipeline.TrainBatches(
        IMAGES, config.batch_size, 0, config.noise_factor, models.input_shape(config)
    )
    losses = train_steps(train_steps.epoch_iterator(batches, 0, [STEPS]), STEPS)
    return losses.numpy(), [w.copy() for w in model.get_weights()]


# Each model with the optimizers it is trained with: the book's with Adadelta (their recipe) and
# Adam, the newer ones with Adam (theirs). Adadelta at lr 1.0 divides by the running RMS of the
# gradients, so on the U-Net's near-zero gradients it turns summation-order differences of 1e-8
# into weight differences of 1e-6 after 5 steps.
CASES = {
    "dense-adadelta": (dense_compress, "adadelta"),
    "dense-adam": (dense_compress, "adam"),
    "conv-adadelta": (conv_denoise, "adadelta"),
    "conv-adam": (conv_denoise, "adam"),
    "deep_dense-adam": (deep_compress, "adam"),
    "unet-adam": (unet_denoise, "adam"),
}


@pytest.mark.parametrize("base, optimizer", CASES.values(), ids=CASES.keys())
def test_one_two_and_four_replicas_train_identically(base, optimizer):
    config = base.get_config()
    config.batch_size = 32
    config.optimizer = optimizer
    if config.model == "dense":
        config.activity_l1 = 1e-2  # large enough that a mis-scaled regulariser would show
    keras.utils.set_random_seed(0)
    initial = models.build(config).autoencoder.get_weights()
    reference_losses, reference = train_weights(config, 1, initial)
    assert not np.allclose(reference[0], initial[0])  # it did train
    for replicas in (2, 4):
        losses, weights = train_weights(config, replicas, initial)
        np.testing.assert_allclose(losses, reference_losses, rtol=1e-5, atol=1e-6)
        for got, want in zip(weights, reference):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
