"""The tf.data input pipeline: uint8 images in, (model input, clean target) batches out.

Images stay uint8 until something needs floats (a quarter of the memory). Training batches keep the
clean images uint8, target and, without noise, input too: the train step scales them with
`to_float`, inside its XLA program where it has one, so the pipeline only gathers. Evaluation
batches are floats. Noise is added on the fly with stateless RNG keyed on (seed, epoch, batch
index): fresh every epoch, identical for the same seed, and independent of how many replicas or
threads consume the data. A seeded stateful RNG inside `map` would repeat the same noise every epoch
(tensorflow#35682). Validation noise is keyed on the batch index alone, so val_loss is comparable
across epochs. A blind denoiser trains on a noise level drawn per image (`noise_factor_max`),
keyed on (seed, epoch) and the image's index; its validation keeps the one fixed level.
Under a mixed precision the training noise comes from `normal_from_16_bits`, a cheaper
sampler; validation and test noise are always TensorFlow's, so the test set is the same
whatever the precision.
"""

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
    """Float32 N(0, 1) draws of `shape` from a stateless seed, two per 32-bit random word.

    Box-Muller on the word's halves: the high 16 bits give the radius, sqrt(-2 ln u) with
    u = (high + 0.5) / 2**16, the low 16 bits the angle. The draws lie on a grid of 2**32
    points whose distribution is within 1/2**16 of the normal's everywhere (CDF; the largest
    draw is 4.85). It costs less CPU than `tf.random.stateless_normal` (docs/speed.md): the
    transform runs as vectorised TensorFlow ops, and it takes half the random words.
    """
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


def add_noise(
    clean: tf.Tensor, noise_factor, seed: tf.Tensor, *, from_16_bits: bool = False
) -> tf.Tensor:
    """The book's corruption, clip(x + noise_factor * N(0, 1), 0, 1), from a stateless seed.

    `noise_factor` is a number, or a tensor that broadcasts against `clean` (one level per
    image: shape [batch, 1, ...]). The normal draws are TensorFlow's, or with `from_16_bits`
    the cheaper `normal_from_16_bits` (float32 `clean` only)."""
    if from_16_bits:
        noise = normal_from_16_bits(tf.shape(clean), seed)
    else:
        noise = tf.random.stateless_normal(tf.shape(clean), seed=seed, dtype=clean.dtype)
    return tf.clip_by_value(clean + noise_factor * noise, 0.0, 1.0)


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 images scaled to float32 in [0, 1]; a float tensor is returned as it is."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images


def _to_float(images_uint8: tf.Tensor, input_shape: tuple) -> tf.Tensor:
    return tf.reshape(to_float(images_uint8), [-1, *input_shape])


@dataclasses.dataclass(frozen=True)
class TrainBatches:
    """The training batches of a run: which images, how many per batch, and their noise.

    Args:
        images: uint8 images, shape (N, 28, 28).
        batch_size: the global batch size.
        seed: the run's seed; picks every epoch's shuffle order and noise.
        noise_factor: 0 gives clean inputs (the compression model).
        input_shape: the shape of one model input, e.g. (784,) or (28, 28, 1).
        noise_factor_max: above 0, each image's noise level is drawn uniformly from
            [0, noise_factor_max] instead, anew every epoch (`noise_levels`), and
            `noise_factor` is left to validation: a blind denoiser.
        noise_from_16_bits: draw the training noise with `normal_from_16_bits`, the cheaper
            sampler: for a model whose first layer rounds its input to a 16-bit float
            anyway (a mixed precision: 8 significant bits in bfloat16, 11 in float16).
    """

    images: tf.Tensor
    batch_size: int
    seed: int
    noise_factor: float
    input_shape: tuple
    noise_factor_max: float = 0.0
    noise_from_16_bits: bool = False

    @property
    def steps_per_epoch(self) -> int:
        """Whole batches per epoch: a partial last batch is dropped, so every step has the
        same global batch (the dropped images differ each epoch because the order does)."""
        return self.images.shape[0] // self.batch_size

    @property
    def noisy(self) -> bool:
        """Whether the training inputs carry noise."""
        return self.noise_factor > 0 or self.noise_factor_max > 0

    def noise_levels(self, epoch) -> tf.Tensor | None:
        """Each training image's noise level in `epoch`, shape (N,), indexed like `images`;
        None with one fixed level. Stateless, keyed on (seed, epoch): a level belongs to the
        image, whatever batch or block it lands in, and is drawn anew every epoch."""
        if self.noise_factor_max == 0:
            return None
        seed = _stream_seed(self.seed, _NOISE_LEVEL_STREAM, epoch)
        count = self.images.shape[0]
        return tf.random.stateless_uniform([count], seed=seed, maxval=self.noise_factor_max)

    def run_dataset(
        self,
        epochs: list[int],
        *,
        skip_batches: int = 0,
        block_sizes: list[list[int]] | None = None,
    ) -> tf.data.Dataset:
        """The shuffled (input, clean target) batches of several epochs in a row, as one dataset.

        One dataset (and one iterator) for the rest of a run means no dataset is built and no
        pipeline refilled between epochs: while the host evaluates, the pipeline prepares the
        next epoch's first batches. The clean target is uint8 (scale it with `to_float`), and
        so is the input without noise (the same tensor); a noisy input is float32.

        Args:
            epochs: the 0-based epochs, in order; each picks its shuffle order and noise.
            skip_batches: batches of the first epoch already trained (resuming mid-epoch).
            block_sizes: if given, one list per epoch: each element is then a block of that
                many consecutive batches (shape [size, batch_size, *input_shape]), gathered at
                once, with the same batches and noise as the per-batch elements. The first
                epoch's blocks start at `skip_batches`. `steps.TrainSteps` asks for blocks when
                it trains a call's steps as one program, so the pipeline's per-element cost is
                paid once per call.
        """
        skips = tf.constant([skip_batches] + [0] * (len(epochs) - 1), tf.int64)
        epochs = tf.constant(epochs, tf.int64)
        if block_sizes is None:
            per_epoch = self._epoch_of_batches
            dataset = tf.data.Dataset.from_tensor_slices((epochs, skips))
        else:
            per_epoch = self._epoch_of_blocks
            firsts, sizes = self._check_blocks(block_sizes, skip_batches)
            dataset = tf.data.Dataset.from_tensor_slices((epochs, firsts, sizes))
        return dataset.flat_map(per_epoch).prefetch(tf.data.AUTOTUNE)

    def _batch_indices(self, epoch) -> tf.Tensor:
        """The epoch's (steps, batch) matrix of image indices: each batch is one dataset
        element, not batch_size scalar elements gathered by `batch()` (whose per-element cost
        dominated the dense model's input time)."""
        count = self.images.shape[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=_stream_seed(self.seed, _SHUFFLE_STREAM, epoch)
        )
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
        width = max(len(sizes) for sizes in block_sizes)

        def padded(rows):
            return tf.constant([row + [0] * (width - len(row)) for row in rows], tf.int64)

        return padded(firsts), padded(block_sizes)

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


def eval_dataset(
    images: tf.Tensor, *, batch_size: int, seed: int, noise_factor: float, input_shape: tuple
) -> tf.data.Dataset:
    """Every evaluation image once, in order, with noise that is the same every epoch.

    The last batch may be partial; evaluation sums per-example values, so it counts exactly.
    Nothing is cached: the stateless noise makes every pass identical anyway, remaking the
    float batches is cheap, and a cache would hold the noisy and clean floats (63 MB) for the
    whole run.
    """

    def make_batch(batch_index, batch):
        clean = _to_float(batch, input_shape)
        if noise_factor == 0:
            return clean, clean
        key = _stream_seed(seed, _EVAL_NOISE_STREAM, batch_index)
        return add_noise(clean, noise_factor, key), clean

    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).enumerate()
    dataset = dataset.map(make_batch, **_IN_ORDER_IN_PARALLEL)
    return dataset.prefetch(tf.data.AUTOTUNE)
