"""Graceful stops: SIGTERM (a preemptible machine's warning) or SIGINT (Ctrl-C) sets a flag that
the training loop reads between step calls, so the checkpoint it then writes is consistent, and
the run ends with `Preempted` (exit 75, EX_TEMPFAIL): rerunning the same command resumes it.
TensorFlow's `PreemptionCheckpointHandler` does not fit: it wraps one step per call and owns the
checkpoint, while this loop runs several steps per call and saves state the handler never sees.
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

    def __init__(self):
        self.received: int | None = None
        self._previous = {}
        self._at_once: str | None = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers need the main thread
            for signum in (signal.SIGTERM, signal.SIGINT):
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
        """Within the block a signal (or one already received) raises `Preempted(message)` at
        once, `{signal}` in it naming the signal: for work after the last checkpoint, such as
        test scoring and figures, that rerunning the command redoes."""
        self._at_once = message
        try:
            if self.received:
                raise Preempted(message.format(signal=self.name()))
            yield
        finally:
            self._at_once = None

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
