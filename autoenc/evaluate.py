"""Scoring a trained run's best checkpoint on the test images, without training (`--mode=eval`).

`evaluate_workdir` computes what training's final test computes (`steps.test_metrics` on the
same dataset), so at the run's own noise it reproduces metrics.json up to float summation order.
It writes nothing; `evaluation_path` names the command line's file, under `WORKDIR/eval/`.
"""

import math
import os
import pathlib

import tensorflow as tf

from autoenc import checkpoints, models, pipeline, steps
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc.errors import UsageError

NOISE_FLAGS_HINT = " (--noise_factor and --eval_seed choose another noise level or noise seed)"


def _check_noise(noise_factor: float, seed: int) -> None:
    """The flags' noise level and seed obey the bounds of the config fields they stand in for."""
    if not math.isfinite(noise_factor):
        raise UsageError(f"--noise_factor={noise_factor:g}: must be a finite number")
    if noise_factor > config_lib.FLOAT32_MAX:  # inf in float32
        raise UsageError(f"--noise_factor={noise_factor:g}: must be at most 3.4e+38")
    flags = {"noise_factor": ("noise_factor", noise_factor), "eval_seed": ("seed", seed)}
    for flag, (field, value) in flags.items():
        problem = config_lib.NUMBER_BOUNDS[field].problem(value)
        if problem:
            raise UsageError(f"--{flag}={value}: {problem}")


def evaluate_workdir(
    config, workdir, *, noise_factor=None, seed=None, data=None, weights="best"
) -> dict:
    """Scores a run's best checkpoint (or its final weights) on the test images as
    metrics.json does, at the run's own noise or another.

    Args:
        config, workdir: the run, as in `checkpoints.open_trained_run`; a config must also
            agree on `checkpoints.TEST_NOISE_FIELDS`.
        noise_factor, seed: the inputs' noise, drawn per batch of the run's size as in training;
            None for the run's own. A noise_factor of 0 gives clean inputs.
        data: a `data.FashionMNIST` to use instead of loading the real files (tests).
        weights: "best" (the best checkpoint) or "final" (the weights training ended with).

    Returns:
        {"test": {bce, mse, psnr, ssim}, "noisy_input": the same of the noisy input (if there
        is noise), "noise_factor", "seed", "checkpoint": relative to workdir, e.g. "best/ckpt-7"}

    Raises:
        UserError: what `open_trained_run` raises, missing data, or a noise flag out of bounds.
    """
    workdir = pathlib.Path(workdir)
    noise_factor = float(config.noise_factor if noise_factor is None else noise_factor)
    seed = int(config.seed if seed is None else seed)
    _check_noise(noise_factor, seed)
    also, hint = checkpoints.TEST_NOISE_FIELDS, NOISE_FLAGS_HINT
    trained = checkpoints.open_trained_run(config, workdir, weights=weights, also=also, hint=hint)
    with trained as (nets, best):
        if data is None:
            data = data_lib.load_fashion_mnist(config.data_dir or None)
        test_data = pipeline.eval_dataset(
            tf.constant(data.x_test),
            batch_size=config.batch_size,  # the noise is drawn per batch: keep the run's batches
            seed=seed,
            noise_factor=noise_factor,
            input_shape=models.input_shape(config),
        )
        # One device scores the same sums as training's replicas, added in another order.
        strategy = tf.distribute.get_strategy()
        result = steps.test_metrics(strategy, nets.autoencoder, test_data, noise_factor)
    result.update(noise_factor=noise_factor, seed=seed, checkpoint=os.path.relpath(best, workdir))
    return result


def evaluation_path(workdir, noise_factor: float, seed: int, weights="best") -> pathlib.Path:
    """Where `--mode=eval` writes an evaluation: `WORKDIR/eval/noise<X>_seed<N>.json`, with
    `_final` before `.json` for the final weights."""
    suffix = "" if weights == "best" else f"_{weights}"
    return pathlib.Path(workdir) / "eval" / f"noise{noise_factor:g}_seed{seed}{suffix}.json"
