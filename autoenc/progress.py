"""An epoch's progress on the console: Keras' progress bar on a terminal, and in a log file
(Slurm, nohup), where no bar is drawn, a line now and then."""

import sys
import time

import keras
from absl import logging

EVERY_SECONDS = 60  # how often a log file gets a progress line


class EpochProgress:
    """An epoch's progress: Keras' progress bar on a terminal; in a log file, where no bar is
    drawn, a line every `EVERY_SECONDS` (steps, images/s, time left in the epoch)."""

    def __init__(self, config, epoch: int, done: int, steps_per_epoch: int):
        self._config, self._epoch, self._total = config, epoch, steps_per_epoch
        self._started = self._logged = time.perf_counter()
        self._first = done
        interactive = sys.stdout.isatty()
        self._bar = keras.utils.Progbar(steps_per_epoch, unit_name="step") if interactive else None

    def update(self, done: int, loss: float) -> None:
        if self._bar:
            self._bar.update(done, [("loss", loss)])
            return
        now = time.perf_counter()
        if now - self._logged < EVERY_SECONDS or done >= self._total:
            return
        self._logged = now
        rate = (done - self._first) / (now - self._started)
        logging.info(
            "epoch %d/%d: step %d/%d  loss %.4f  %.0f img/s  %.0f s left in the epoch",
            self._epoch + 1,
            self._config.epochs,
            done,
            self._total,
            loss,
            rate * self._config.batch_size,
            (self._total - done) / rate,
        )

    def seconds(self) -> float:
        return time.perf_counter() - self._started
