"""The arms the throughput benchmark times, built from the library's own pieces as
`autoenc.train` builds them: our loop in steady state, our loop over whole epochs, its input
pipeline alone, and a matmul as the CPU's attainable rate.

Every arm is a function `run() -> Timing` that measures once.
"""

import dataclasses
import itertools
import statistics
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from autoenc import distribute, steps, train
from autoenc.layers import UpsampledConv2D
from benchmarks.clock import Stopwatch, Timing

MATMUL_SIZE = 2048


class OurLoop:
    """autoenc's training loop: strategy, model and optimizer, `steps.TrainSteps` and
    `pipeline.TrainBatches`, as `autoenc.train` builds them.

    Args:
        config: the run's config (its defaults: op determinism, XLA, precision, ...).
        train_images: uint8 training images.
        initial_weights: start from these (a switch starts where the default starts).
        noise_factor: overrides the config's (0: the clean arm, which shows the noise's cost).
    """

    def __init__(self, config, train_images, initial_weights=None, noise_factor=None):
        self.config = config
        self.strategy = distribute.make_strategy()
        keras.utils.set_random_seed(config.seed)
        nets, optimizer = train.build_model_and_optimizer(config, self.strategy, initial_weights)
        self.model = nets.autoencoder
        self.initial_weights = self.model.get_weights()
        self.train_steps = steps.TrainSteps(
            self.strategy, self.model, optimizer, config.batch_size, jit_compile=config.xla
        )
        self.batches = train.make_train_batches(config, train_images)
        if noise_factor is not None:
            self.batches = dataclasses.replace(self.batches, noise_factor=noise_factor)
        per_call, per_epoch = config.steps_per_loop, self.batches.steps_per_epoch
        if per_epoch < 2 * per_call:
            raise SystemExit(f"benchmarks: steps_per_loop {per_call} exceeds half an epoch")
        # Steady state: each epoch's whole calls of steps_per_loop (its tail is left out, so
        # every arm with the same steps_per_loop trains the same batches in the same calls).
        self.whole_calls = [per_call] * (per_epoch // per_call)

    def steady(self, timed_steps: int) -> Callable[[], Timing]:
        """`timed_steps` steps of `train_steps(iterator, steps_per_loop)` calls in steady state.

        Per epoch iterator the first call is not timed (it fills the prefetch buffer: with
        making the iterator, it counts as setup); the timed calls follow, over as many fresh
        epochs as `timed_steps` needs. The n-th measurement of every arm draws the same
        epochs, so arms with the same steps_per_loop train the same batches.
        """
        per_call, epochs = self.config.steps_per_loop, itertools.count()
        if timed_steps % per_call:
            raise SystemExit(f"benchmarks: {timed_steps} steps are not calls of {per_call}")

        def run():
            parts, losses, left = [], [], timed_steps
            while left:
                calls = min(left // per_call, len(self.whole_calls) - 1)
                part, part_losses = self._clock_calls(next(epochs), calls)
                parts.append(part)
                losses += part_losses
                left -= calls * per_call
            timing = _combined(parts)
            timing.loss = _checked_mean(losses)
            return timing

        return run

    def _clock_calls(self, epoch: int, timed_calls: int) -> tuple[Timing, list]:
        per_call = self.config.steps_per_loop
        started = Stopwatch()
        iterator = self.train_steps.epoch_iterator(self.batches, epoch, self.whole_calls)
        self.train_steps(iterator, per_call).numpy()
        stopwatch = Stopwatch()
        losses = [self.train_steps(iterator, per_call).numpy() for _ in range(timed_calls)]
        seconds, others = stopwatch.stop()
        setup = stopwatch.started - started.started - seconds / timed_calls
        images = timed_calls * per_call * self.config.batch_size
        timing = Timing(
            images, seconds, setup, others=others, cpu_seconds=stopwatch.own_cpu_seconds
        )
        return timing, losses

    def whole_epoch(self, epochs: int) -> Callable[[], Timing]:
        """Whole epochs, one per measurement, up to `epochs`, timed as launch.py's history.csv
        `images_per_sec`: each epoch's calls (`steps.call_sizes`) from its first call to its
        last call's losses; evaluation, checkpoints and summaries are not in it. Where
        `TrainSteps` serves the whole run from one iterator (`run_iterator`), as launch.py
        then does, that iterator is made once, before the first clock; otherwise each epoch
        makes its own (`epoch_iterator`) inside its clock, as launch.py did then.
        """
        config, per_epoch = self.config, self.batches.steps_per_epoch
        every, per_call = config.checkpoint_every_steps, config.steps_per_loop
        plan = [
            (epoch, steps.call_sizes(0, per_epoch, per_call, every, step=epoch * per_epoch))
            for epoch in range(epochs)
        ]
        epochs_left, run_iterator = iter(plan), []

        def run():
            epoch, calls = next(epochs_left)
            if hasattr(self.train_steps, "run_iterator") and not run_iterator:
                run_iterator.append(self.train_steps.run_iterator(self.batches, plan))
            stopwatch = Stopwatch()
            if run_iterator:
                iterator = run_iterator[0]
            else:
                iterator = self.train_steps.epoch_iterator(self.batches, epoch, calls)
            losses = [self.train_steps(iterator, count).numpy() for count in calls]
            seconds, others = stopwatch.stop()
            images = per_epoch * config.batch_size
            loss = _checked_mean(losses)
            return Timing(images, seconds, 0.0, loss, others, stopwatch.own_cpu_seconds)

        return run

    def pipeline_alone(self, min_seconds: float) -> Callable[[], Timing]:
        """The batches the steps take (a call's batches one by one, or its one block), drained
        by a traced loop with no model: fresh epochs until `min_seconds` were timed (one epoch
        alone can take a tenth of a second, too short to time well)."""
        per_call, epochs = self.config.steps_per_loop, itertools.count()
        elements_per_call = tf.constant(1 if self.train_steps.takes_blocks else per_call)

        @tf.function
        def drain(iterator, num_elements):
            total = tf.constant(0.0)
            for _ in tf.range(num_elements):
                for tensor in tf.nest.flatten(next(iterator), expand_composites=True):
                    total += tf.cast(tf.reduce_sum(tensor[:1]), tf.float32)  # touch each batch
            return total

        def one_epoch():
            stopwatch = Stopwatch()
            iterator = self.train_steps.epoch_iterator(self.batches, next(epochs), self.whole_calls)
            drain(iterator, elements_per_call).numpy()
            timed = Stopwatch()
            drain(iterator, elements_per_call * (len(self.whole_calls) - 1)).numpy()
            seconds, others = timed.stop()
            images = (len(self.whole_calls) - 1) * per_call * self.config.batch_size
            setup = timed.started - stopwatch.started
            return Timing(images, seconds, setup, others=others, cpu_seconds=timed.own_cpu_seconds)

        def run():
            parts = [one_epoch()]
            while sum(part.seconds for part in parts) < min_seconds:
                parts.append(one_epoch())
            return _combined(parts)

        return run


def _combined(parts: list[Timing]) -> Timing:
    """Several timed stretches as one measurement (setup: their mean)."""
    seconds = sum(part.seconds for part in parts)
    return Timing(
        work=sum(part.work for part in parts),
        seconds=seconds,
        setup=statistics.mean(part.setup for part in parts),
        others=sum(part.others * part.seconds for part in parts) / seconds,
        cpu_seconds=sum(part.cpu_seconds for part in parts),
    )


def _checked_mean(losses: list) -> float:
    losses = np.concatenate(losses)
    if not np.all(np.isfinite(losses)):
        raise RuntimeError(f"benchmarks: non-finite training loss: {losses}")
    return float(np.mean(losses))


def matmul_arm(dtype=tf.float32, size: int = MATMUL_SIZE, calls: int = 3):
    """A `size`x`size` matmul in a `tf.function`, best of `calls`: the CPU's attainable rate
    for `dtype` (FLOP/s), the yardstick of the training kernels."""
    a = tf.cast(tf.random.stateless_normal([size, size], seed=[0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], seed=[0, 2]), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))

    def run():
        best, stopwatch = None, Stopwatch()
        for _ in range(calls):
            call = Stopwatch()
            product().numpy()
            seconds, _ = call.stop()
            if best is None or seconds < best.seconds:
                best = Timing(2 * size**3, seconds, cpu_seconds=call.own_cpu_seconds)
        best.others = stopwatch.stop()[1]
        return best

    return run


def conv_multiply_adds_per_pixel(layer: keras.layers.Conv2D) -> int:
    """Multiply-adds per output pixel of a Conv2D, or of one of autoenc's upsampling layers."""
    if isinstance(layer, UpsampledConv2D):
        return layer.multiply_adds_per_output_pixel()
    rows, cols, channels_in, channels_out = layer.kernel.shape
    return rows * cols * channels_in * channels_out


@dataclasses.dataclass(frozen=True)
class Flops:
    """Arithmetic of one training image: 6 FLOP per forward multiply-add (forward, input
    gradient, weight gradient), from the Conv2D and Dense layers' shapes (pooling, upsampling,
    activations and biases are elementwise and left out). The multiply-adds a layer does: an
    upsampling layer of `autoenc.layers` says what its output pixel costs (2x2 taps of its
    low-resolution input where the book's layers take 3x3)."""

    forward_macs: int
    first_layer_macs: int

    @property
    def per_image(self) -> int:
        return 6 * self.forward_macs

    @classmethod
    def of(cls, model: keras.Model) -> "Flops":
        per_layer = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                _, height, width, _ = layer.output.shape
                per_layer.append(height * width * conv_multiply_adds_per_pixel(layer))
            elif isinstance(layer, keras.layers.Dense):
                per_layer.append(layer.kernel.shape[0] * layer.kernel.shape[1])
        return cls(sum(per_layer), per_layer[0])
