"""The tf.data input pipeline: uint8 images in, (model input, clean target) batches out (clean
training images stay uint8 for the train step to scale). Noise is stateless RNG keyed on (seed,
epoch, batch): fresh every epoch, the same whatever consumes it (a seeded stateful RNG in `map`
repeats it, tensorflow#35682). Validation noise is keyed on the batch alone, comparable across
epochs, and never drawn with the cheaper `normal_from_16_bits` mixed precision may use."""

import dataclasses
import math

import tensorflow as tf

# Independent random streams derived from the one user seed.
_SHUFFLE_STREAM, _TRAIN_NOISE_STREAM, _EVAL_NOISE_STREAM, _NOISE_LEVEL_STREAM = 1, 2, 3, 4
_IN_ORDER_IN_PARALLEL = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _stream_seed(seed: int, stream: int, *keys) -> tf.Tensor:
    """A stateless RNG seed (shape [2]) for `stream`, folded with each key in turn."""
    key = tf.constant([seed, stream], dtype=tf.int64)
    for value in keys:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64))
    return key


def normal_from_16_bits(shape, seed: tf.Tensor) -> tf.Tensor:
    """Float32 N(0, 1) draws of `shape` from a stateless seed by Box-Muller on the 16-bit halves
    of 32-bit random words: a CDF within 1/2**16 of the normal's, for less CPU (docs/speed.md)."""
    count = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(
        [(count + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32
    )
    high = tf.cast(tf.bitwise.right_shift(words, 16), tf.float32)
    low = tf.cast(tf.bitwise.bitwise_and(words, 0xFFFF), tf.float32)
    radius = tf.sqrt(-2.0 * tf.math.log((high + 0.5) * 2.0**-16))
    angle = low * (2.0 * math.pi * 2.0**-16)
    pairs = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=0)
    return tf.reshape(pairs[:count], shape)


def add_noise(clean, noise_factor, seed, *, from_16_bits: bool = False) -> tf.Tensor:
    """The book's corruption, clip(x + noise_factor * N(0, 1), 0, 1), from a stateless seed;
    `noise_factor` may be a level per image that broadcasts against `clean`."""
    if from_16_bits:
        noise = normal_from_16_bits(tf.shape(clean), seed)
    else:
        noise = tf.random.stateless_normal(tf.shape(clean), seed=seed, dtype=clean.dtype)
    return tf.clip_by_value(clean + noise_factor * noise, 0.0, 1.0)


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 images scaled to float32 in [0, 1]; a float tensor is returned as it is."""
    return tf.cast(images, tf.float32) / 255.0 if images.dtype == tf.uint8 else images


@dataclasses.dataclass(frozen=True)
class TrainBatches:
    """A run's training batches: uint8 `images` (N, 28, 28), the global `batch_size`, one model
    input's `input_shape`, the `seed` of every epoch's order and noise, `noise_factor` (0: clean
    inputs). `noise_factor_max` > 0 draws each image's level from [0, noise_factor_max] every
    epoch (a blind denoiser; `noise_factor` is then validation's). `noise_from_16_bits` draws
    with `normal_from_16_bits` (inputs rounded to 16 bits anyway)."""

    images: tf.Tensor
    batch_size: int
    seed: int
    noise_factor: float
    input_shape: tuple
    noise_factor_max: float = 0.0
    noise_from_16_bits: bool = False

    @property
    def steps_per_epoch(self) -> int:
        """Whole batches per epoch: a partial last batch is dropped (other images each epoch)."""
        return self.images.shape[0] // self.batch_size

    @property
    def noisy(self) -> bool:
        return self.noise_factor > 0 or self.noise_factor_max > 0

    def noise_levels(self, epoch) -> tf.Tensor | None:
        """Each training image's noise level in `epoch`, shape (N,), keyed on (seed, epoch), so
        it belongs to the image whatever batch or block it lands in; None with one level."""
        if self.noise_factor_max == 0:
            return None
        seed = _stream_seed(self.seed, _NOISE_LEVEL_STREAM, epoch)
        count = self.images.shape[0]
        return tf.random.stateless_uniform([count], seed=seed, maxval=self.noise_factor_max)

    def run_dataset(self, epochs: list, *, skip_batches=0, block_sizes=None) -> tf.data.Dataset:
        """The shuffled (input, uint8 target) batches of `epochs` (0-based) as one dataset, the
        first from batch `skip_batches` on; a noiseless input is uint8 too. With `block_sizes` (a
        list per epoch) an element is a block of that many batches, with the same noise."""
        skips = tf.constant([skip_batches] + [0] * (len(epochs) - 1), tf.int64)
        epochs = tf.constant(epochs, tf.int64)
        per_epoch, columns = self._epoch_of_batches, (skips,)
        if block_sizes is not None:
            per_epoch = self._epoch_of_blocks
            columns = self._check_blocks(block_sizes, skip_batches)
        dataset = tf.data.Dataset.from_tensor_slices((epochs, *columns))
        return dataset.flat_map(per_epoch).prefetch(tf.data.AUTOTUNE)

    def _batch_indices(self, epoch) -> tf.Tensor:
        """The epoch's (steps, batch) matrix of image indices: a batch is one dataset element."""
        seed = _stream_seed(self.seed, _SHUFFLE_STREAM, epoch)
        order = tf.random.experimental.stateless_shuffle(tf.range(self.images.shape[0]), seed=seed)
        steps = self.steps_per_epoch
        return tf.reshape(order[: steps * self.batch_size], [steps, self.batch_size])

    def _epoch_of_batches(self, epoch, skip):
        batches = tf.data.Dataset.from_tensor_slices(self._batch_indices(epoch)).enumerate()
        levels = self.noise_levels(epoch)
        return batches.skip(skip).map(
            lambda index, indices: self._batch(epoch, index, indices, levels),
            **_IN_ORDER_IN_PARALLEL,
        )

    def _epoch_of_blocks(self, epoch, firsts, sizes):
        batch_indices = self._batch_indices(epoch)
        levels = self.noise_levels(epoch)
        # Padding (size 0) fills the epochs with fewer calls than the longest.
        blocks = tf.data.Dataset.from_tensor_slices((firsts, sizes)).filter(lambda _, n: n > 0)
        return blocks.map(
            lambda first, size: self._block(epoch, batch_indices, first, size, levels),
            **_IN_ORDER_IN_PARALLEL,
        )

    def _check_blocks(self, block_sizes: list[list[int]], skip_batches: int):
        """Each epoch's block starts and sizes as [epochs, calls] tensors, 0-padded."""
        steps, firsts = self.steps_per_epoch, []
        for index, sizes in enumerate(block_sizes):
            start = skip_batches if index == 0 else 0
            if start + sum(sizes) > steps or min(sizes, default=1) < 1:
                raise ValueError(
                    f"blocks {sizes} from batch {start} must be positive and fit the epoch's"
                    f" {steps} batches"
                )
            firsts.append([start + sum(sizes[:n]) for n in range(len(sizes))])
        return tuple(
            tf.ragged.constant(rows, tf.int64).to_tensor() for rows in (firsts, block_sizes)
        )

    def _noisy(self, clean, epoch, batch_index, indices, levels):
        key = _stream_seed(self.seed, _TRAIN_NOISE_STREAM, epoch, batch_index)
        factor = self.noise_factor
        if levels is not None:  # one level per image, broadcast over its pixels
            factor = tf.reshape(tf.gather(levels, indices), [-1] + [1] * len(self.input_shape))
        return add_noise(to_float(clean), factor, key, from_16_bits=self.noise_from_16_bits)

    def _batch(self, epoch, batch_index, indices, levels):
        clean = tf.reshape(tf.gather(self.images, indices), [-1, *self.input_shape])
        if not self.noisy:
            return clean, clean
        return self._noisy(clean, epoch, batch_index, indices, levels), clean

    def _block(self, epoch, batch_indices, first_batch, size, levels):
        indices = batch_indices[first_batch : first_batch + size]
        shape = [size, self.batch_size, *self.input_shape]
        clean = tf.reshape(tf.gather(self.images, indices), shape)
        if not self.noisy:
            return clean, clean
        inputs = tf.map_fn(
            lambda i: self._noisy(clean[i], epoch, first_batch + i, indices[i], levels),
            tf.range(size, dtype=tf.int64),
            fn_output_signature=tf.float32,
        )
        return inputs, clean


def eval_dataset(images, *, batch_size, seed, noise_factor, input_shape) -> tf.data.Dataset:
    """Every evaluation image once, in order, with noise that is the same every epoch (the last
    batch may be partial: evaluation sums per example). Not cached: cheap to remake."""

    def make_batch(batch_index, batch):
        clean = tf.reshape(to_float(batch), [-1, *input_shape])
        if noise_factor == 0:
            return clean, clean
        key = _stream_seed(seed, _EVAL_NOISE_STREAM, batch_index)
        return add_noise(clean, noise_factor, key), clean

    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).enumerate()
    return dataset.map(make_batch, **_IN_ORDER_IN_PARALLEL).prefetch(tf.data.AUTOTUNE)
