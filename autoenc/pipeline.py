"""The tf.data input pipeline: uint8 images in, (model input, clean target) batches out.

Images stay uint8 until something needs floats (a quarter of the memory). Training batches keep the
clean images uint8, target and, without noise, input too: the train step scales them with
`to_float`, inside its XLA program where it has one, so the pipeline only gathers. Evaluation
batches are floats. Noise is added on the fly with stateless RNG keyed on (seed, epoch, batch
index): fresh every epoch, identical for the same seed, and independent of how many replicas or
threads consume the data. A seeded stateful RNG inside `map` would repeat the same noise every epoch
(tensorflow#35682). Validation noise is keyed on the batch index alone, so val_loss is comparable
across epochs.
"""

import dataclasses

import tensorflow as tf

# Independent random streams derived from the one user seed.
_SHUFFLE_STREAM, _TRAIN_NOISE_STREAM, _EVAL_NOISE_STREAM = 1, 2, 3
_IN_ORDER_IN_PARALLEL = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _stream_seed(seed: int, stream: int, *keys) -> tf.Tensor:
    """A stateless RNG seed (shape [2]) for `stream`, folded with each key in turn."""
    key = tf.constant([seed, stream], dtype=tf.int64)
    for value in keys:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64))
    return key


def add_noise(clean: tf.Tensor, noise_factor: float, seed: tf.Tensor) -> tf.Tensor:
    """The book's corruption, clip(x + noise_factor * N(0, 1), 0, 1), from a stateless seed."""
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
    """

    images: tf.Tensor
    batch_size: int
    seed: int
    noise_factor: float
    input_shape: tuple

    @property
    def steps_per_epoch(self) -> int:
        """Whole batches per epoch: a partial last batch is dropped, so every step has the
        same global batch (the dropped images differ each epoch because the order does)."""
        return self.images.shape[0] // self.batch_size

    def dataset(
        self, epoch: int, *, skip_batches: int = 0, block_sizes: list[int] | None = None
    ) -> tf.data.Dataset:
        """One epoch of shuffled (input, clean target) batches, one per element or in blocks.

        The clean target is uint8 (scale it with `to_float`), and so is the input without
        noise (the same tensor); a noisy input is float32.

        Args:
            epoch: 0-based epoch; picks the shuffle order and the noise.
            skip_batches: batches of this epoch already trained (resuming mid-epoch).
            block_sizes: if given, each element is a block of that many consecutive batches
                (shape [size, batch_size, *input_shape]), gathered at once, from
                `skip_batches` on, with the same batches and noise as the per-batch elements.
                `steps.TrainSteps` asks for blocks when it trains a call's steps as one
                program, so the pipeline's per-element cost is paid once per call.
        """
        order = tf.random.experimental.stateless_shuffle(
            tf.range(self.images.shape[0]), seed=_stream_seed(self.seed, _SHUFFLE_STREAM, epoch)
        )
        # One (steps, batch) index matrix: each batch is one dataset element rather than
        # batch_size scalar elements gathered by `batch()`, whose per-element cost dominated.
        steps = self.steps_per_epoch
        batch_indices = tf.reshape(order[: steps * self.batch_size], [steps, self.batch_size])
        if block_sizes is None:
            dataset = tf.data.Dataset.from_tensor_slices(batch_indices).enumerate()
            dataset = dataset.skip(skip_batches).map(
                lambda index, indices: self._batch(epoch, index, indices), **_IN_ORDER_IN_PARALLEL
            )
        else:
            if skip_batches + sum(block_sizes) > steps or min(block_sizes, default=1) < 1:
                raise ValueError(
                    f"blocks {block_sizes} from batch {skip_batches} must be positive and fit"
                    f" the epoch's {steps} batches"
                )
            firsts = [skip_batches + sum(block_sizes[:n]) for n in range(len(block_sizes))]
            dataset = tf.data.Dataset.from_tensor_slices(
                (tf.constant(firsts, tf.int64), tf.constant(block_sizes, tf.int64))
            )
            dataset = dataset.map(
                lambda first, size: self._block(epoch, batch_indices, first, size),
                **_IN_ORDER_IN_PARALLEL,
            )
        return dataset.prefetch(tf.data.AUTOTUNE)

    def _noisy(self, clean, epoch, batch_index):
        key = _stream_seed(self.seed, _TRAIN_NOISE_STREAM, epoch, batch_index)
        return add_noise(to_float(clean), self.noise_factor, key)

    def _batch(self, epoch, batch_index, indices):
        clean = tf.reshape(tf.gather(self.images, indices), [-1, *self.input_shape])
        if self.noise_factor == 0:
            return clean, clean
        return self._noisy(clean, epoch, batch_index), clean

    def _block(self, epoch, batch_indices, first_batch, size):
        indices = batch_indices[first_batch : first_batch + size]
        shape = [size, self.batch_size, *self.input_shape]
        clean = tf.reshape(tf.gather(self.images, indices), shape)
        if self.noise_factor == 0:
            return clean, clean
        inputs = tf.map_fn(
            lambda i: self._noisy(clean[i], epoch, first_batch + i),
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
