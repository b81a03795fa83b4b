"""The measuring end of `benchmarks.compare_commits`: trains a config's default loop from the
`autoenc` of the checkout it is run in and prints one JSON line per measurement.

It runs as a script with the checkout first on PYTHONPATH, so it imports nothing from this
package, and it speaks both train-step APIs: `steps.TrainSteps` and, in older commits,
`steps.make_train_steps` with `pipeline.train_dataset`. Each measurement is a few whole
epochs, each timed as launch.py's `images_per_sec` (from making the epoch's iterator to its
last call), after one untimed epoch that traces and compiles.

    python benchmarks/commit_child.py CONFIG MEASUREMENTS EPOCHS_PER_MEASUREMENT
"""

import json
import os
import sys
import time


def _epoch_runner(config, images):
    """`run(epoch) -> (images trained, mean loss)` through this checkout's loop."""
    import keras
    import numpy as np
    import tensorflow as tf

    from autoenc import distribute, models, pipeline, steps, train

    strategy = distribute.make_strategy()
    keras.utils.set_random_seed(config.seed)
    nets, optimizer = train.build_model_and_optimizer(config, strategy)
    shape = models.input_shape(config)
    per_epoch = images.shape[0] // config.batch_size
    calls = [config.steps_per_loop] * (per_epoch // config.steps_per_loop)
    if per_epoch % config.steps_per_loop:
        calls.append(per_epoch % config.steps_per_loop)
    if hasattr(steps, "TrainSteps"):
        train_steps = steps.TrainSteps(
            strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
        )
        batches = pipeline.TrainBatches(
            images, config.batch_size, config.seed, config.noise_factor, shape
        )

        def iterator(epoch):
            return train_steps.epoch_iterator(batches, epoch, calls)

        def call(it, count):
            return train_steps(it, count)
    else:
        function = steps.make_train_steps(
            strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
        )
        blocks = getattr(steps, "trains_on_blocks", lambda *a, **k: False)(
            strategy, nets.autoencoder, jit_compile=config.xla
        )

        def iterator(epoch):
            dataset = pipeline.train_dataset(
                images, batch_size=config.batch_size, epoch=epoch, seed=config.seed,
                noise_factor=config.noise_factor, input_shape=shape,
                **({"block_sizes": calls} if blocks else {}),
            )  # fmt: skip
            return iter(distribute.distribute_dataset(strategy, dataset))

        def call(it, count):
            return function(it, tf.constant(count))

    def run(epoch):
        it = iterator(epoch)
        losses = np.concatenate([call(it, count).numpy() for count in calls])
        return per_epoch * config.batch_size, float(losses.mean())

    return run


def main(config_name: str, measurements: int, epochs: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoenc.command_line import configure_process

    configure_process()
    import tensorflow as tf

    from autoenc import config as config_lib
    from autoenc import data as data_lib
    from autoenc import train

    config = config_lib.load_config(config_name)
    train.set_op_determinism(config.deterministic)
    images = tf.constant(data_lib.load_fashion_mnist(None).x_train)
    run = _epoch_runner(config, images)
    run(0)  # tracing and compilation
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    for measurement in range(measurements):
        started, trained, losses = time.perf_counter(), 0, []
        for epoch in range(1 + measurement * epochs, 1 + (measurement + 1) * epochs):
            count, loss = run(epoch)
            trained += count
            losses.append(loss)
        rate = trained / (time.perf_counter() - started)
        loss = sum(losses) / len(losses)
        print(json.dumps(dict(images_per_sec=rate, mean_loss=loss, onednn=onednn)))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
