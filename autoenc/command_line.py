"""The plumbing of `launch.py` that is not flags: `--config.FIELD=VALUE` overrides, one-line
errors, and silencing TensorFlow's native start-up chatter. No TensorFlow import here, so a
usage error answers before TensorFlow loads.
"""

import contextlib
import os
import sys

OVERRIDE_PREFIX = "--config."


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separates `--config.FIELD=VALUE` arguments from the flags absl parses."""
    rest, overrides = [], {}
    for arg in argv:
        if arg.startswith(OVERRIDE_PREFIX):
            field, sep, value = arg[len(OVERRIDE_PREFIX) :].partition("=")
            if not sep:
                fail(f"{arg}: expected {OVERRIDE_PREFIX}FIELD=VALUE", 2)
            overrides[field] = value
        else:
            rest.append(arg)
    return rest, overrides


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences file descriptor 2 (C++ logging) for the block; Python errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def fail(message: str, code: int) -> None:
    print(f"launch.py: error: {message}", file=sys.stderr)
    sys.exit(code)
