"""The train steps' two speed paths train exactly as the plain ones do.

- With XLA and one replica, the dense model's steps of one call run as one XLA program over the
  call's block of batches; the same steps as one XLA program each, fed batch by batch, must give
  the same losses and weights (calls of different lengths included: each length is its own
  compiled program).
- Training batches carry clean images as uint8 and the step scales them; float batches scaled
  beforehand must train alike (seen here: the same losses, and weights within 1e-8: the
  scaling inside the step's graph changes the rounding of a few weight updates).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored, synthetic_images

from autoenc import pipeline, steps, train
from autoenc.models import dense
from configs import dense_compress

BATCH = 32
CALLS = (3, 2, 3)  # steps per call: two program lengths


def dense_setup():
    config = dense_compress.get_config()
    config.batch_size = BATCH
    strategy = mirrored(1)
    keras.utils.set_random_seed(0)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    return strategy, nets.autoencoder, optimizer


def batches(as_float=False, blocks=False):
    images = tf.constant(synthetic_images(BATCH * sum(CALLS), seed=3))
    train_batches = pipeline.TrainBatches(images, BATCH, 0, 0.0, (784,))
    dataset = train_batches.run_dataset([0], block_sizes=[list(CALLS)] if blocks else None)
    if as_float:
        dataset = dataset.map(lambda x, y: (pipeline.to_float(x), pipeline.to_float(y)))
    return iter(dataset)


def train_calls(train_steps, iterator):
    return np.concatenate([train_steps(iterator, n).numpy() for n in CALLS])


def test_one_xla_program_per_call_trains_like_one_program_per_step():
    train.set_op_determinism(True)
    strategy, model, optimizer = dense_setup()
    one_program = steps.TrainSteps(strategy, model, optimizer, BATCH, jit_compile=True)
    assert one_program.takes_blocks
    losses = train_calls(one_program, batches(blocks=True))
    weights = model.get_weights()

    strategy, model, optimizer = dense_setup()
    replica_step = tf.function(steps.make_replica_step(model, optimizer, BATCH), jit_compile=True)
    program_per_step = steps.make_step_loop(strategy, replica_step)
    iterator = batches()
    reference = np.concatenate([program_per_step(iterator, tf.constant(n)).numpy() for n in CALLS])
    assert len(losses) == sum(CALLS) and losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses, reference, rtol=1e-6)
    for got, expected in zip(weights, model.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_uint8_batches_train_like_float_batches():
    train.set_op_determinism(True)
    runs = []
    for as_float in (False, True):
        strategy, model, optimizer = dense_setup()
        train_steps = steps.TrainSteps(strategy, model, optimizer, BATCH)
        runs.append((train_calls(train_steps, batches(as_float)), model.get_weights()))
    (losses, weights), (float_losses, float_weights) = runs
    np.testing.assert_allclose(losses, float_losses, rtol=1e-6)
    for got, expected in zip(weights, float_weights):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_a_block_of_another_length_than_the_call_is_refused():
    strategy, model, optimizer = dense_setup()
    one_program = steps.TrainSteps(strategy, model, optimizer, BATCH, jit_compile=True)
    before = model.get_weights()
    with pytest.raises(tf.errors.InvalidArgumentError, match="not num_steps batches"):
        one_program(batches(blocks=True), CALLS[0] + 1)
    for got, expected in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, expected)  # refused before any step


def takes_blocks(strategy, model, jit_compile):
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return steps.TrainSteps(strategy, model, optimizer, BATCH, jit_compile=jit_compile).takes_blocks


def test_only_the_one_replica_xla_dense_steps_take_blocks():
    strategy, model, _ = dense_setup()
    assert takes_blocks(strategy, model, jit_compile=True)
    assert not takes_blocks(strategy, model, jit_compile=False)
    with mirrored(2).scope():
        assert not takes_blocks(mirrored(2), dense.dense_autoencoder().autoencoder, True)
    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(1, 3)])
    assert not takes_blocks(strategy, conv, jit_compile=True)
    transposed = keras.Sequential([keras.Input((8, 1)), keras.layers.Conv1DTranspose(1, 3)])
    nested = keras.Sequential([keras.Input((8, 1)), transposed])  # a convolution inside
    assert not takes_blocks(strategy, nested, jit_compile=True)


@pytest.mark.parametrize(
    "done, every, step, expected",
    [
        (0, 0, 0, [4, 4, 2]),  # steps_per_loop 4, then the epoch's end
        (3, 0, 3, [4, 3]),  # resumed mid-epoch
        (0, 3, 0, [3, 3, 3, 1]),  # cut at every checkpoint step
        (0, 3, 20, [1, 3, 3, 3]),  # a later epoch: global step 20, next checkpoint at 21
        (10, 3, 30, []),  # nothing left
    ],
)
def test_call_sizes_cover_the_epoch_and_stop_at_checkpoints(done, every, step, expected):
    assert steps.call_sizes(done, 10, 4, every, step=step) == expected
