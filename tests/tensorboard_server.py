"""A real `tensorboard --logdir` process on a loopback port, for the tests that ask its HTTP API
what a user's browser would be sent."""

import contextlib
import json
import pathlib
import re
import subprocess
import sys
import time
import urllib.request
from typing import NamedTuple

import pytest

STARTUP_SECONDS = 90  # about 4 s on an idle 2-core machine; generous for a loaded one
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


class Server(NamedTuple):
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: pathlib.Path  # its stderr

    def poll(self, fetch, deadline_seconds=STARTUP_SECONDS):
        """Returns fetch()'s first truthy value, retrying until a deadline.

        Connection errors and unparsable answers count as "not yet"; the test fails at the
        deadline, or at once if the server has exited.
        """
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                value = fetch()
                if value:
                    return value
            except (OSError, ValueError, KeyError):
                pass
            if self.process.poll() is not None:
                pytest.fail(
                    f"tensorboard exited ({self.process.returncode}): {self.log.read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"tensorboard not ready in {deadline_seconds} s: {self.log.read_text()}"
                )
            time.sleep(0.2)


@contextlib.contextmanager
def running(logdir, log: pathlib.Path):
    """A `Server` for `tensorboard --logdir=LOGDIR` once it listens, its stderr in `log`;
    stopped by its PID afterwards."""
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}"]
            + ["--host=127.0.0.1", "--port=0"],  # port 0: the OS picks a free one, no race
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def printed_url():  # "TensorBoard 2.21.0 at http://127.0.0.1:PORT/" once it listens
            match = re.search(r"http://127\.0\.0\.1:\d+", log.read_text())
            return match and match[0]

        starting = Server("", process, log)
        yield starting._replace(url=starting.poll(printed_url))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(url: str, body: dict | None = None) -> bytes:
    request = urllib.request.Request(url)
    if body is not None:  # the HParams routes take a JSON POST
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with OPENER.open(request, timeout=30) as response:
        return response.read()


def get_json(url: str, body: dict | None = None):
    return json.loads(get(url, body))
