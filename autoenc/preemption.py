"""Graceful stops: SIGTERM or SIGINT finishes the current step call, checkpoints, and exits.

Preemptible machines send SIGTERM before they kill; a user's Ctrl-C sends SIGINT. Either sets a
flag that the training loop checks between traced step calls (a signal cannot interrupt a step
that is running in C++ anyway), so the checkpoint it then writes is consistent. The run ends
with `Preempted`, whose exit code (75, EX_TEMPFAIL: "try again") tells a job scheduler that
rerunning the same command resumes the run. After the last epoch (test scoring, figures) a
signal stops the run at once, since everything it would lose is redone by rerunning.

TensorFlow's `PreemptionCheckpointHandler` does not fit this loop: it wraps one step per call
and owns the checkpoint, while this loop runs `steps_per_loop` steps per call and checkpoints
state (early stopping, history) that the handler does not know about.
"""

import contextlib
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
        self._at_once: str | None = None

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
        if self._at_once:
            raise Preempted(self._at_once.format(signal=self.name()))

    @contextlib.contextmanager
    def stopping_at_once(self, message: str):
        """Within the block a signal stops the run at once, raising `Preempted(message)`
        (`{signal}` in it is replaced by the signal's name); one already received raises on
        entry. For work after the last checkpoint that rerunning the command redoes."""
        self._at_once = message
        try:
            if self.received:
                raise Preempted(message.format(signal=self.name()))
            yield
        finally:
            self._at_once = None

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
