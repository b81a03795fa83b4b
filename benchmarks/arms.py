"""The arms the benchmark times, each a call `arm(steps) -> Timing`: autoenc's training loop in
steady state and over whole epochs (`OurLoop`), and Keras `model.fit` on the model a Keras user
writes from the book (`FitArm`).

Our loop is built from the library as `autoenc.train` builds it: model and optimizer, training
batches, `steps.TrainSteps`. `fit` trains the book's own Keras layers with the same optimizer
and binary cross-entropy, on numpy arrays as the book does: the clean images as input and
target, or for a denoiser inputs noised once up front (our pipeline draws fresh noise for every
batch, work `fit` does not do).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from autoenc import steps, train
from benchmarks.rounds import Stopwatch, Timing

# The models `fit` can be given as the book writes them, and their input shapes.
BOOK_INPUTS = {"dense": (784,), "conv": (28, 28, 1)}


class OurLoop:
    """autoenc's loop for `config` on uint8 `images`, for `measurements` measurements of each
    kind (each draws at most one epoch's batches)."""

    def __init__(self, config, images: tf.Tensor, measurements: int):
        self.config, self.measurements = config, measurements
        strategy = tf.distribute.MirroredStrategy()
        keras.utils.set_random_seed(config.seed)
        nets, optimizer = train.build_model_and_optimizer(config, strategy)
        self.train_steps = steps.TrainSteps(
            strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
        )
        self.batches = train.make_train_batches(config, images)
        per_epoch, per_call = self.batches.steps_per_epoch, config.steps_per_loop
        if per_epoch < 2 * per_call:
            raise SystemExit(
                f"benchmarks: an epoch of {per_epoch} steps is shorter than two calls of"
                f" steps_per_loop {per_call}; use more images or a smaller steps_per_loop"
            )
        self.whole_calls = [per_call] * (per_epoch // per_call)
        tail = [per_epoch % per_call] if per_epoch % per_call else []
        self.epoch_calls = self.whole_calls + tail  # one epoch's calls, as autoenc.train's
        self._steady_input = self._epoch_input = None

    @property
    def max_steps(self) -> int:
        """The most steps one steady measurement may take: one epoch's whole calls but one
        (the untimed call), so that `fit`'s measurement of as many steps fits in an epoch."""
        return (len(self.whole_calls) - 1) * self.config.steps_per_loop

    def steady(self, steps: int) -> Timing:
        """`steps` steps in calls of `steps_per_loop`, after one untimed call (the first after
        other arms ran), from one input iterator that runs on from one measurement to the next."""
        per_call = self.config.steps_per_loop
        if self._steady_input is None:  # whole calls only: every call is the same program
            plan = [(epoch, self.whole_calls) for epoch in range(self.measurements + 1)]
            self._steady_input = self.train_steps.run_iterator(self.batches, plan)
        self.train_steps(self._steady_input, per_call).numpy()
        stopwatch = Stopwatch()
        losses = [
            self.train_steps(self._steady_input, per_call).numpy() for _ in range(steps // per_call)
        ]
        timing = stopwatch.stop(len(losses) * per_call * self.config.batch_size)
        _check_finite(losses)
        return timing

    def whole_epoch(self, steps: int | None = None) -> Timing:
        """One whole epoch (`steps` is ignored), timed as history.csv's `images_per_sec`: from
        its first call to its last call's losses, from one input iterator made before the
        first clock for every epoch, as `autoenc.train` makes it for the rest of a run."""
        if self._epoch_input is None:
            plan = [(epoch, self.epoch_calls) for epoch in range(self.measurements)]
            self._epoch_input = self.train_steps.run_iterator(self.batches, plan)
        stopwatch = Stopwatch()
        losses = [self.train_steps(self._epoch_input, count).numpy() for count in self.epoch_calls]
        timing = stopwatch.stop(sum(self.epoch_calls) * self.config.batch_size)
        _check_finite(losses)
        return timing


def _check_finite(losses: list) -> None:
    if not np.all(np.isfinite(np.concatenate(losses))):
        raise RuntimeError("benchmarks: a training loss is not finite")


def book_model(config) -> keras.Model:
    """The config's model as a Keras user writes it from the book, in the config's precision
    (each layer's dtype policy, and the sigmoid in float32 as Keras' mixed-precision guide
    has it), compiled with our loop's optimizer and binary cross-entropy."""
    dtype = config.precision
    if config.model == "dense":
        l1 = config.activity_l1  # summed in float32: fit refuses a bfloat16 regulariser loss
        penalty = lambda x: l1 * keras.ops.sum(keras.ops.abs(keras.ops.cast(x, "float32")))  # noqa: E731
        layers = [
            keras.layers.Dense(
                config.encoding_dim, activation="relu", activity_regularizer=penalty, dtype=dtype
            ),
            keras.layers.Dense(784, dtype=dtype),
        ]
    else:

        def conv(filters, activation="relu"):
            return keras.layers.Conv2D(
                filters, 3, activation=activation, padding="same", dtype=dtype
            )

        pool, up = keras.layers.MaxPooling2D, keras.layers.UpSampling2D
        layers = [conv(32), pool(2, padding="same", dtype=dtype), conv(32)]
        layers += [pool(2, padding="same", dtype=dtype), conv(32), up(2, dtype=dtype), conv(32)]
        layers += [up(2, dtype=dtype), conv(1, None)]
    layers.append(keras.layers.Activation("sigmoid", dtype="float32"))
    model = keras.Sequential([keras.Input(BOOK_INPUTS[config.model]), *layers])
    model.compile(optimizer=train.make_optimizer(config), loss="binary_crossentropy")
    return model


def book_data(config, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`fit`'s (inputs, clean targets) from uint8 `images` as the book makes them: floats in
    [0, 1], for a denoiser noised once up front (a level per image if the config draws one)."""
    clean = images.reshape(-1, *BOOK_INPUTS[config.model]).astype(np.float32) / 255.0
    rng = np.random.default_rng(config.seed)
    factor = config.noise_factor
    if config.noise_factor_max:
        shape = (len(clean),) + (1,) * (clean.ndim - 1)
        factor = rng.uniform(0.0, config.noise_factor_max, shape).astype(np.float32)
    if not config.noise_factor and not config.noise_factor_max:
        return clean, clean
    noise = rng.standard_normal(clean.shape, np.float32)
    return np.clip(clean + factor * noise, 0.0, 1.0), clean


class _Clock(keras.callbacks.Callback):
    """Times `fit` from the start of batch `start_batch` to the end of the epoch (a batch-begin
    hook, not a batch-end one, which would turn off Keras' asynchronous callbacks)."""

    def __init__(self, start_batch: int, work: float):
        super().__init__()
        self.start_batch, self.work = start_batch, work
        self.stopwatch = self.timing = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.start_batch:
            self.stopwatch = Stopwatch()

    def on_epoch_end(self, epoch, logs=None):
        self.timing = self.stopwatch.stop(self.work)
        if not math.isfinite(logs["loss"]):
            raise RuntimeError(f"benchmarks: fit's training loss is {logs['loss']}")


class FitArm:
    """`fit` on `book_model(config)` with the arrays of `book_data`: each measurement is one
    `fit` call of `steps_per_loop` untimed steps (as our loop leaves its first call untimed)
    and `steps` timed ones."""

    def __init__(self, config, data: tuple[np.ndarray, np.ndarray]):
        self.config, self.data = config, data
        keras.utils.set_random_seed(config.seed)
        self.model = book_model(config)

    def __call__(self, steps: int) -> Timing:
        config = self.config
        clock = _Clock(config.steps_per_loop, steps * config.batch_size)
        self.model.fit(
            *self.data,
            batch_size=config.batch_size,
            epochs=1,
            steps_per_epoch=config.steps_per_loop + steps,
            shuffle=True,
            verbose=0,
            callbacks=[clock],
        )
        return clock.timing
