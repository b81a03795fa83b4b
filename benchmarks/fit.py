"""Keras `model.fit` on the same model, built from the book's Keras layers, with the same
weights and global batch as our loop, compiled as the book compiles it (Adadelta at learning
rate 1.0, binary cross-entropy), on numpy arrays: the clean images as input and target, or
(conv) noisy inputs made once up front, as the book does.

`fit_arm` runs in the benchmark's process (launch.py's process settings). `FitProcess` runs it
in a Python process of its own with the environment as given, so at TensorFlow's defaults, as a
reader of the book runs it: `python -m benchmarks.fit` is that process's end (not for users).
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import models
from benchmarks.clock import Stopwatch, Timing, peak_rss_gb
from benchmarks.cpu import onednn_enabled


class _SteadyClock(keras.callbacks.Callback):
    """Times `fit` from the start of batch `start_batch` to the end of the epoch. Only
    batch-*end* hooks turn off Keras' asynchronous dispatch, so `fit` runs as without it."""

    def __init__(self, start_batch: int):
        super().__init__()
        self.start_batch = start_batch
        self.stopwatch = self.seconds = self.others = self.loss = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.start_batch:
            self.stopwatch = Stopwatch()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds, self.others = self.stopwatch.stop()
        self.loss = float(logs["loss"])


def book_data(config, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`fit`'s (inputs, clean targets) as the book makes them: float arrays, the noisy inputs
    (with the config's noise factor) made once up front."""
    clean = x_train.reshape(-1, *models.input_shape(config)).astype(np.float32) / 255.0
    if not config.noise_factor:
        return clean, clean
    noise = np.random.default_rng(config.seed).standard_normal(clean.shape, np.float32)
    return np.clip(clean + config.noise_factor * noise, 0.0, 1.0), clean


def book_model(config) -> keras.Model:
    """The config's model built from the book's own Keras layers (UpSampling2D, Conv2D), as a
    reader of the book runs `fit`, in the config's precision, compiled as the book compiles
    it. Its weights are interchangeable with our model's."""
    model = models.build(config, fused_layers=False).autoencoder
    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="binary_crossentropy"
    )
    return model


def fit_arm(config, x_train: np.ndarray, initial_weights: list, timed_steps: int):
    """`run() -> Timing`: `timed_steps` steps of `fit` after `steps_per_loop` untimed ones
    (the same first block our loop leaves untimed)."""
    inputs, clean = book_data(config, x_train)
    model = book_model(config)
    model.set_weights(initial_weights)
    per_call = config.steps_per_loop

    def run():
        clock = _SteadyClock(start_batch=per_call)
        started = Stopwatch()
        model.fit(
            inputs,
            clean,
            batch_size=config.batch_size,
            epochs=1,
            steps_per_epoch=per_call + timed_steps,
            shuffle=True,
            verbose=0,
            callbacks=[clock],
        )
        setup = clock.stopwatch.started - started.started - clock.seconds * per_call / timed_steps
        images = timed_steps * config.batch_size
        cpu_seconds = clock.stopwatch.own_cpu_seconds
        return Timing(images, clock.seconds, setup, clock.loss, clock.others, cpu_seconds)

    run.jit_compile = bool(model.jit_compile)
    return run


class FitProcess:
    """`fit_arm` in a process of its own, started with `environment` (TensorFlow's defaults),
    driven one measurement at a time through a pipe so it takes its place in the rounds."""

    def __init__(self, name: str, initial_weights: list, timed_steps: int, environment: dict):
        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as weights:
            np.savez(weights, *initial_weights)
        self.weights_path = weights.name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fit", name, weights.name, str(timed_steps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.facts = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fit process ended (exit code {self.process.wait()})")
        reply = json.loads(line)
        self.peak_rss_gb = reply.pop("peak_rss_gb")
        return reply

    def __call__(self) -> Timing:
        self.process.stdin.write("measure\n")
        self.process.stdin.flush()
        return Timing(**self._reply())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        os.unlink(self.weights_path)


def worker(name: str, weights_path: str, timed_steps: int) -> None:
    """The other end of `FitProcess`: one JSON line when ready, then one per measurement."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout goes to stderr, not into the replies
    config = config_lib.load_config(name)
    data = data_lib.load_fashion_mnist(config.data_dir or None)
    with np.load(weights_path) as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    run = fit_arm(config, data.x_train, weights, timed_steps)
    del data

    def reply(**fields):
        print(json.dumps(dict(fields, peak_rss_gb=peak_rss_gb())), file=replies, flush=True)

    reply(jit_compile=run.jit_compile, onednn=onednn_enabled())
    for _ in sys.stdin:
        reply(**dataclasses.asdict(run()))


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
