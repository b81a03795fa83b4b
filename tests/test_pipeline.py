"""The tf.data pipeline: scaling, per-epoch yet reproducible noise, fixed eval noise."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_images

from autoenc import pipeline

IMAGES = tf.constant(synthetic_images(96, seed=0))


def epoch_batches(epoch, seed=0, noise_factor=0.5, skip=0, shape=(28, 28, 1), batch_size=32):
    batches = pipeline.TrainBatches(IMAGES, batch_size, seed, noise_factor, shape)
    dataset = batches.run_dataset([epoch], skip_batches=skip)
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_targets_are_clean_uint8_images_and_inputs_are_clipped_noise():
    batches = epoch_batches(0)
    assert len(batches) == 3
    noisy, clean = batches[0]
    assert noisy.shape == clean.shape == (32, 28, 28, 1)
    assert clean.dtype == np.uint8 and noisy.dtype == np.float32
    originals = IMAGES.numpy()
    for row in clean:  # every target is one of the originals, unscaled
        assert np.min(np.abs(originals.astype(int) - row[..., 0]).max(axis=(1, 2))) == 0
    assert noisy.min() >= 0 and noisy.max() <= 1
    noise = noisy - pipeline.to_float(clean).numpy()
    assert 0.2 < np.std(noise) < 0.5  # clipped N(0, 0.5^2) noise
    assert np.mean(noisy[clean == 0]) > 0.15  # clipping biases the black background upwards


def test_to_float_scales_uint8_and_passes_floats_through():
    scaled = pipeline.to_float(tf.constant([0, 51, 255], tf.uint8)).numpy()
    np.testing.assert_array_equal(scaled, np.float32([0, 51, 255]) / np.float32(255))
    assert scaled.dtype == np.float32 and scaled[-1] == 1.0
    floats = tf.constant([0.25, 2.0])
    assert pipeline.to_float(floats) is floats


def test_each_epoch_is_a_permutation_with_fresh_noise():
    first, second = epoch_batches(0), epoch_batches(1)
    clean0 = np.concatenate([c for _, c in first])
    clean1 = np.concatenate([c for _, c in second])
    assert not np.array_equal(clean0, clean1)  # reshuffled
    np.testing.assert_array_equal(np.sort(clean0.ravel()), np.sort(clean1.ravel()))
    noise0 = np.concatenate([n - c / 255 for n, c in first])
    noise1 = np.concatenate([n - c / 255 for n, c in second])
    assert not np.allclose(noise0, noise1)  # tensorflow#35682: noise must not repeat


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = epoch_batches(2), epoch_batches(2), epoch_batches(2, seed=1)
    for (na, ca), (nb, cb) in zip(a, b):
        np.testing.assert_array_equal(na, nb)
        np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_skipping_batches_resumes_the_same_sequence():
    full, resumed = epoch_batches(3), epoch_batches(3, skip=2)
    assert len(resumed) == 1
    np.testing.assert_array_equal(full[2][0], resumed[0][0])


@pytest.mark.parametrize("noise_factor, shape", [(0.5, (28, 28, 1)), (0.0, (784,))])
def test_blocks_hold_the_same_batches_in_the_same_order(noise_factor, shape):
    batches = pipeline.TrainBatches(IMAGES, 16, 0, noise_factor, shape)
    dataset = batches.run_dataset([4], skip_batches=2, block_sizes=[[1, 3]])
    blocks = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [x.shape for x, _ in blocks] == [(1, 16, *shape), (3, 16, *shape)]
    per_batch = epoch_batches(4, noise_factor=noise_factor, shape=shape, batch_size=16)[2:]
    for index, name in enumerate(("input", "target")):
        stacked = np.concatenate([block[index] for block in blocks])
        expected = np.stack([batch[index] for batch in per_batch])
        np.testing.assert_array_equal(stacked, expected, err_msg=name)


@pytest.mark.parametrize("skip, sizes", [(0, [4, 3]), (5, [2]), (0, [2, 0])])
def test_blocks_that_do_not_fit_the_epoch_are_refused(skip, sizes):
    with pytest.raises(ValueError, match="must be positive and fit the epoch's 6 batches"):
        batches = pipeline.TrainBatches(IMAGES, 16, 0, 0.0, (784,))
        batches.run_dataset([0], skip_batches=skip, block_sizes=[sizes])


def test_zero_noise_and_flat_inputs_for_the_dense_model():
    inputs, clean = epoch_batches(0, noise_factor=0.0, shape=(784,))[0]
    assert inputs.shape == (32, 784) and inputs.dtype == np.uint8
    np.testing.assert_array_equal(inputs, clean)


def test_eval_noise_is_identical_every_pass_and_covers_every_image():
    dataset = pipeline.eval_dataset(
        IMAGES, batch_size=40, seed=0, noise_factor=0.5, input_shape=(28, 28, 1)
    )
    first = [x.numpy() for x, _ in dataset]
    second = [x.numpy() for x, _ in dataset]
    assert [len(b) for b in first] == [40, 40, 16]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("blocks", [None, [[1, 2], [3, 1, 2]]], ids=["batches", "blocks"])
def test_a_run_of_epochs_is_one_dataset_holding_each_epochs_batches(blocks):
    batches = pipeline.TrainBatches(IMAGES, 16, 0, 0.5, (28, 28, 1))
    run = list(batches.run_dataset([3, 4], skip_batches=3, block_sizes=blocks))
    if blocks:  # unstack the blocks into their batches
        run = [(x[i], y[i]) for x, y in run for i in range(x.shape[0])]
    separately = list(batches.run_dataset([3], skip_batches=3)) + list(batches.run_dataset([4]))
    assert len(run) == len(separately) == 3 + 6
    for (x, y), (x_expected, y_expected) in zip(run, separately):
        np.testing.assert_array_equal(x.numpy(), x_expected.numpy())
        np.testing.assert_array_equal(y.numpy(), y_expected.numpy())


def blind_batches(epoch, seed=0, batch_size=32, noise_factor_max=0.8):
    batches = pipeline.TrainBatches(
        IMAGES, batch_size, seed, 0.5, (28, 28, 1), noise_factor_max=noise_factor_max
    )
    return batches, [(x.numpy(), y.numpy()) for x, y in batches.run_dataset([epoch])]


def image_index(clean):
    """The index in IMAGES of each clean target (the synthetic images are all different)."""
    originals = IMAGES.numpy().reshape(len(IMAGES), -1).astype(int)
    flat = clean.reshape(len(clean), -1).astype(int)
    return np.array([np.flatnonzero((originals == row).all(axis=1))[0] for row in flat])


def test_blind_noise_level_is_drawn_per_image_and_used():
    batches, data = blind_batches(0)
    levels = batches.noise_levels(0).numpy()
    assert levels.shape == (96,) and levels.min() >= 0 and levels.max() <= 0.8
    assert levels.min() < 0.1 and levels.max() > 0.7  # spread over the whole range
    noisy = np.concatenate([x for x, _ in data])
    clean = np.concatenate([y for _, y in data])
    change = np.abs(noisy - clean / 255).mean(axis=(1, 2, 3))
    # Each image's noise grows with its own level, whatever batch it landed in.
    rank = np.argsort(np.argsort(levels[image_index(clean)]))
    assert np.corrcoef(rank, np.argsort(np.argsort(change)))[0, 1] > 0.9


def test_blind_levels_are_fresh_each_epoch_and_reproducible():
    batches, first = blind_batches(0)
    again, same = blind_batches(0, batch_size=16)
    np.testing.assert_array_equal(batches.noise_levels(0), again.noise_levels(0))
    assert not np.allclose(batches.noise_levels(0), batches.noise_levels(1))
    other, _ = blind_batches(0, seed=1)
    assert not np.allclose(batches.noise_levels(0), other.noise_levels(0))
    _, repeated = blind_batches(0)
    for (a, _), (b, _) in zip(first, repeated):
        np.testing.assert_array_equal(a, b)


def test_fixed_level_has_no_per_image_levels_and_is_unchanged():
    fixed = pipeline.TrainBatches(IMAGES, 32, 0, 0.5, (28, 28, 1))
    assert fixed.noise_levels(0) is None
    explicit = pipeline.TrainBatches(IMAGES, 32, 0, 0.5, (28, 28, 1), noise_factor_max=0.0)
    for (a, _), (b, _) in zip(fixed.run_dataset([1]), explicit.run_dataset([1])):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_blind_blocks_hold_the_same_batches_as_per_batch_elements():
    batches, per_batch = blind_batches(4, batch_size=16)
    blocks = [x.numpy() for x, _ in batches.run_dataset([4], skip_batches=2, block_sizes=[[1, 3]])]
    np.testing.assert_array_equal(np.concatenate(blocks), np.stack([x for x, _ in per_batch[2:]]))


def test_normal_from_16_bits_draws_a_standard_normal():
    from scipy.special import ndtr

    draws = pipeline.normal_from_16_bits([2, 2**19], tf.constant([7, 3], tf.int64)).numpy()
    assert draws.shape == (2, 2**19) and draws.dtype == np.float32
    values = np.sort(draws.ravel())
    count = values.size
    assert abs(values.mean()) < 0.005 and abs(values.std() - 1) < 0.005
    # Kolmogorov distance to N(0, 1): 1.63 / sqrt(count) = 0.0016 at 1% for true normals
    cdf = ndtr(values)
    distance = max(
        np.max(np.arange(1, count + 1) / count - cdf), np.max(cdf - np.arange(count) / count)
    )
    assert distance < 0.0025
    assert np.abs(values).max() < 4.86  # the grid's largest radius
    assert abs(np.mean(np.abs(values) > 2) - 0.0455) < 0.002
    # a pair's two draws (one word's cosine and sine) are independent, not only uncorrelated
    cosines, sines = draws[0], draws[1]
    assert abs(np.corrcoef(cosines, sines)[0, 1]) < 0.006
    assert abs(np.corrcoef(cosines**2, sines**2)[0, 1]) < 0.006


def test_normal_from_16_bits_is_keyed_on_its_seed_and_takes_odd_shapes():
    def draw(seed, shape=(3, 5)):
        return pipeline.normal_from_16_bits(shape, tf.constant(seed, tf.int64)).numpy()

    np.testing.assert_array_equal(draw([1, 2]), draw([1, 2]))
    assert not np.any(draw([1, 2]) == draw([1, 3]))
    assert draw([1, 2]).shape == (3, 5)  # 15 draws: the last word's sine is left out


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_mixed_precision_trains_on_16_bit_noise_and_keeps_the_clean_targets(precision):
    from autoenc import config as config_lib
    from autoenc import train

    config = config_lib.load_config("conv_denoise")
    config.precision, config.batch_size = precision, 32
    batches = train.make_train_batches(config, IMAGES)
    assert batches.noise_from_16_bits == (precision != "float32")
    reference = pipeline.TrainBatches(IMAGES, 32, config.seed, 0.5, (28, 28, 1))
    ((noisy, clean),) = batches.run_dataset([0]).take(1)
    ((reference_noisy, reference_clean),) = reference.run_dataset([0]).take(1)
    np.testing.assert_array_equal(clean, reference_clean)
    assert np.array_equal(noisy, reference_noisy) == (precision == "float32")
    noise = noisy.numpy() - pipeline.to_float(clean).numpy()
    assert 0.2 < np.std(noise) < 0.5 and noisy.numpy().min() >= 0 and noisy.numpy().max() <= 1


def test_blind_levels_scale_the_16_bit_noise_per_image():
    levels = np.linspace(0.0, 1.0, 16, dtype=np.float32)[:, None, None, None]
    clean = tf.fill([16, 28, 28, 1], 0.5)
    noisy = pipeline.add_noise(clean, levels, tf.constant([5, 6], tf.int64), from_16_bits=True)
    spread = np.std(noisy.numpy() - 0.5, axis=(1, 2, 3))
    assert spread[0] == 0 and np.all(np.diff(spread[:8]) > 0)  # more noise for a higher level
    np.testing.assert_allclose(spread[:5], levels[:5, 0, 0, 0], rtol=0.1)  # unclipped yet
