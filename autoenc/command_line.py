"""The plumbing of `launch.py` that is not flags: `--config.FIELD=VALUE` overrides, one-line
errors, silencing TensorFlow's native start-up chatter, and the process settings that must
precede TensorFlow's start. No TensorFlow import here, so a
usage error answers before TensorFlow loads.
"""

import contextlib
import ctypes
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


def configure_process() -> None:
    """Process settings that must precede TensorFlow's start; they keep a full conv_denoise run
    under 1 GB peak RSS on a 2-core CPU (issue 6) without changing any result.

    - One glibc malloc arena (unless MALLOC_ARENA_MAX is set): with one arena per contending
      thread, each of TensorFlow's threads kept the tensor buffers it freed, and every
      evaluation added ~140 MB that was never given back.
    - TensorFlow's oneDNN CPU kernels off (unless TF_ENABLE_ONEDNN_OPTS is set): their scratch
      buffers added tens of MB per conv step; the Eigen kernels gave bit-identical losses here
      and were not slower.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


M_ARENA_MAX = -8  # glibc's malloc.h
