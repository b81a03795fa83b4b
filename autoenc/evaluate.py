"""Scoring a trained run's best checkpoint on the test images, without training (`--mode=eval`).

`evaluate_workdir` computes exactly what training's final test computes for metrics.json
(`autoenc.steps.test_metrics`): the same evaluation dataset, the same per-example sums
(`steps.make_eval_sums`) and the same means, so at the run's own noise level and seed it
reproduces metrics.json's `test` and `noisy_input` (to float summation order, which depends on
the replica count). It may also score at another noise level or noise seed. It writes nothing:
`evaluation_path` names the file the command line writes, under `WORKDIR/eval/`, apart from the
training's metrics.json so that an evaluation can never overwrite it.
"""

import math
import os
import pathlib

import tensorflow as tf

from autoenc import checkpoints, models, pipeline, steps
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc.errors import UsageError


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
    """Scores a run's best checkpoint (or its final weights) on the test images, as
    metrics.json does.

    Args:
        config: the config the run was trained with (overrides applied); a config that differs
            in the model's fields or `checkpoints.TEST_NOISE_FIELDS` is refused.
        workdir: a finished or interrupted run's work directory (it must have a best checkpoint).
        noise_factor: noise level of the inputs, clip(x + noise_factor·N(0,1), 0, 1); None = the
            run's own `config.noise_factor`; 0 = clean inputs.
        seed: seed of that noise; None = the run's own `config.seed`. The noise of each test
            batch is keyed on (seed, batch index) with the run's batch size, as in training.
        data: a `data.FashionMNIST` to use instead of loading the real files (tests).
        weights: "best" (the best checkpoint) or "final" (the weights training ended with).

    Returns:
        {"test": {bce, mse, psnr, ssim} of the model's output against the clean test images,
         "noisy_input": the same four for the noisy input itself (only if noise_factor > 0),
         "noise_factor": float, "seed": int,
         "checkpoint": the best checkpoint scored, relative to the workdir (e.g. "best/ckpt-7")}

    Raises:
        UserError: no best checkpoint, a run still using the workdir, or missing data.
        UsageError: a config that is not the run's, or a negative noise level.
    """
    workdir = pathlib.Path(workdir)
    noise_factor = float(config.noise_factor if noise_factor is None else noise_factor)
    seed = int(config.seed if seed is None else seed)
    _check_noise(noise_factor, seed)
    trained = checkpoints.open_trained_run(
        config,
        workdir,
        weights=weights,
        also=checkpoints.TEST_NOISE_FIELDS,
        hint=" (--noise_factor and --eval_seed choose another noise level or noise seed)",
    )
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
        # One device is enough to score; the sums are the same as training's up to the order
        # in which its replicas' partial sums were added.
        strategy = tf.distribute.get_strategy()
        result = steps.test_metrics(strategy, nets.autoencoder, test_data, noise_factor)
    result.update(
        noise_factor=noise_factor,
        seed=seed,
        checkpoint=os.path.relpath(best, workdir),
    )
    return result


def evaluation_path(workdir, noise_factor: float, seed: int, weights="best") -> pathlib.Path:
    """Where `--mode=eval` writes an evaluation: `WORKDIR/eval/noise<X>_seed<N>.json`, with
    `_final` before `.json` for the final weights."""
    suffix = "" if weights == "best" else f"_{weights}"
    return pathlib.Path(workdir) / "eval" / f"noise{noise_factor:g}_seed{seed}{suffix}.json"
