"""The traced inner loop: distributed train and eval steps and the loss (no I/O or logging). A
replica's loss is its share of the global-batch mean (pixel-averaged BCE over the *global* batch,
regulariser over the replica count): the all-reduced gradient is that of one device."""

import keras
import tensorflow as tf

from autoenc import metrics, pipeline
from autoenc.distribute import distribute_dataset


def regularization_loss(model: keras.Model) -> tf.Tensor:
    """The sum of the losses the model's layers added in its last call, in float32 (0 if none)."""
    if not model.losses:
        return tf.constant(0.0)
    return tf.add_n([tf.cast(loss, tf.float32) for loss in model.losses])


def make_replica_step(model, optimizer, global_batch_size: int, *, jit_gradients=False):
    """Builds `replica_step((inputs, targets)) -> loss`: one replica's forward pass, gradients
    (XLA-compiled with `jit_gradients`) and update on its slice of a global batch. A
    `LossScaleOptimizer` gets its loss scaled; its `apply_gradients` unscales the gradients."""
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def loss_and_gradients(inputs, targets):
        inputs, targets = pipeline.to_float(inputs), pipeline.to_float(targets)
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.nn.compute_average_loss(
                metrics.per_example_bce(targets, outputs), global_batch_size=global_batch_size
            )
            loss += tf.nn.scale_regularization_loss(regularization_loss(model))
            differentiated = optimizer.scale_loss(loss) if scales_loss else loss
        return loss, tape.gradient(differentiated, model.trainable_variables)

    if jit_gradients:
        loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(batch):
        loss, gradients = loss_and_gradients(*batch)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return replica_step


class TrainSteps:
    """`train_steps(iterator, num_steps) -> per-step losses` in one traced call; `run_iterator`
    gives its input. With XLA and one replica, a model without convolutions runs a call as one XLA
    program on a block of batches (XLA's CPU convolutions are slower in its loop), others a step
    each; with several replicas only each replica's loss-and-gradients compiles."""

    def __init__(self, strategy, model, optimizer, global_batch_size: int, *, jit_compile=False):
        self._strategy = strategy
        single_replica = strategy.num_replicas_in_sync == 1
        self.takes_blocks = jit_compile and single_replica and not _has_convolutions(model)
        replica_step = make_replica_step(
            model, optimizer, global_batch_size, jit_gradients=jit_compile and not single_replica
        )
        if self.takes_blocks:
            self.function = _steps_in_one_program(strategy, replica_step)
        elif jit_compile and single_replica:
            self.function = make_step_loop(strategy, tf.function(replica_step, jit_compile=True))
        else:
            self.function = make_step_loop(strategy, replica_step)

    def __call__(self, iterator, num_steps: int) -> tf.Tensor:
        return self.function(iterator, tf.constant(num_steps))

    def run_iterator(self, batches: pipeline.TrainBatches, plan: list, *, skip_batches: int = 0):
        """The distributed input of `plan` = [(epoch, calls), ...], from batch `skip_batches` on."""
        epochs = [epoch for epoch, _ in plan]
        blocks = [calls for _, calls in plan] if self.takes_blocks else None
        dataset = batches.run_dataset(epochs, skip_batches=skip_batches, block_sizes=blocks)
        return iter(distribute_dataset(self._strategy, dataset))


def call_sizes(done_in_epoch, steps_per_epoch, steps_per_loop, every, *, step) -> list[int]:
    """How many steps each call of the rest of an epoch runs: `steps_per_loop`, cut short at the
    epoch's end and at each multiple of `every` (> 0) of the global step (`step` before it)."""
    sizes = []
    while done_in_epoch < steps_per_epoch:
        count = min(steps_per_loop, steps_per_epoch - done_in_epoch)
        if every:
            count = min(count, every - step % every)
        sizes.append(count)
        done_in_epoch += count
        step += count
    return sizes


def make_step_loop(strategy, replica_step):
    """`train_steps(iterator, num_steps)`: TensorFlow's loop of `replica_step`, a batch a step."""

    @tf.function
    def train_steps(iterator, num_steps):
        losses = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            per_replica_loss = strategy.run(replica_step, args=(next(iterator),))
            losses = losses.write(i, strategy.reduce("SUM", per_replica_loss, axis=None))
        return losses.stack()

    return train_steps


_CONVOLUTIONS = tuple(
    getattr(keras.layers, name)
    for name in (
        "Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose DepthwiseConv1D"
        " DepthwiseConv2D SeparableConv1D SeparableConv2D"
    ).split()
)


def _has_convolutions(model: keras.Model) -> bool:
    """Whether any layer of `model`, or of a model nested in it, is a Keras convolution."""
    return any(
        isinstance(layer, _CONVOLUTIONS)
        or (isinstance(layer, keras.Model) and _has_convolutions(layer))
        for layer in model.layers
    )


def _steps_in_one_program(strategy, replica_step):
    """`train_steps` for one replica with XLA: one XLA program (per distinct `num_steps`) loops
    over the call's block of batches, an iterator element of [num_steps, batch, ...]."""

    @tf.function(jit_compile=True)
    def run_block(block):
        num_steps = tf.shape(tf.nest.flatten(block)[0])[0]  # a constant to XLA
        losses = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            batch = tf.nest.map_structure(lambda blocked, i=i: blocked[i], block)
            losses = losses.write(i, strategy.run(replica_step, args=(batch,)))
        return losses.stack()

    @tf.function
    def train_steps(iterator, num_steps):
        block = next(iterator)
        block_steps = tf.shape(tf.nest.flatten(block)[0])[0]
        message = "the pipeline's block is not num_steps batches"
        check = tf.debugging.assert_equal(block_steps, num_steps, message=message)
        with tf.control_dependencies([check]):  # no step runs on a block of the wrong length
            return run_block(block)

    return train_steps


def make_eval_sums(strategy, model: keras.Model | None):
    """Builds `eval_sums(distributed_dataset) -> [count, loss, bce, mse, psnr, ssim]` sums, `loss`
    what training minimises (Keras' val_loss); `model=None` scores the inputs (a denoiser's bar)."""

    def replica_sums(batch):
        inputs, targets = (pipeline.to_float(images) for images in batch)
        outputs = inputs if model is None else model(inputs, training=False)
        quality = metrics.per_example_quality(targets, outputs)
        count = tf.cast(tf.shape(quality)[0], tf.float32)
        # Undo Keras' division by the batch (multiply_no_nan: an empty batch adds 0, not 0/0).
        regularization = 0.0
        if model is not None:
            regularization = tf.math.multiply_no_nan(regularization_loss(model), count)
        loss_sum = tf.reduce_sum(quality[:, 0]) + regularization
        return tf.concat([[count, loss_sum], tf.reduce_sum(quality, axis=0)], axis=0)

    @tf.function
    def eval_sums(dataset):
        totals = tf.zeros([2 + len(metrics.QUALITY_NAMES)])
        for batch in dataset:
            per_replica = strategy.run(replica_sums, args=(batch,))
            totals += strategy.reduce("SUM", per_replica, axis=None)
        return totals

    return eval_sums


def sums_to_means(sums) -> dict[str, float]:
    """Turns `eval_sums` output into {'loss', 'bce', 'mse', 'psnr', 'ssim'} means."""
    count, *totals = [float(v) for v in sums]
    return {name: total / count for name, total in zip(("loss", *metrics.QUALITY_NAMES), totals)}


def quality(eval_sums, dist_eval_data) -> dict[str, float]:
    """The {bce, mse, psnr, ssim} means of one `eval_sums` pass over the data."""
    means = sums_to_means(eval_sums(dist_eval_data))
    return {name: means[name] for name in metrics.QUALITY_NAMES}


def test_metrics(strategy, model, dist_eval_data, noise_factor: float, eval_sums=None) -> dict:
    """metrics.json's `test` and, for a denoiser, `noisy_input` (the noisy input's) quality."""
    result = {"test": quality(eval_sums or make_eval_sums(strategy, model), dist_eval_data)}
    if noise_factor:
        result["noisy_input"] = quality(make_eval_sums(strategy, None), dist_eval_data)
    return result
