"""Graceful stops: SIGTERM or SIGINT finishes the current step call, checkpoints, and exits.

Preemptible machines send SIGTERM before they kill; a user's Ctrl-C sends SIGINT. Either sets a
flag that the training loop checks between traced step calls (a signal cannot interrupt a step
that is running in C++ anyway), so the checkpoint it then writes is consistent. The run ends
with `Preempted`, whose exit code (75, EX_TEMPFAIL: "try again") tells a job scheduler that
rerunning the same command resumes the run.

TensorFlow's `PreemptionCheckpointHandler` was the first choice, but it wraps one step per call
and owns the checkpoint, while this loop runs `steps_per_loop` steps per call and checkpoints
state (early stopping, history) that the handler does not know about.
"""

import signal
import threading

from autoenc.errors import UserError


class Preempted(UserError):
    """The run was asked to stop and saved a checkpoint; rerunning resumes it."""

    exit_code = 75


class StopSignals:
    """Context manager that records SIGTERM/SIGINT instead of dying on them."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers need the main thread
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        self.received = signum

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
