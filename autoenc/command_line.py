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
    """Process settings that must precede TensorFlow's start (issue 6: speed and peak RSS).

    - TensorFlow's oneDNN CPU kernels on (unless TF_ENABLE_ONEDNN_OPTS is set). TensorFlow
      turns them on by itself only on CPUs with AVX512-VNNI/BF16 or AMX; on our AVX2 EPYC they
      were off, and turning them on made the conv step 1.9-2.1x faster (interleaved pairs) and
      a full conv_denoise epoch's peak RSS 0.87 GB instead of 0.95 GB, with bit-identical
      reruns and the same val_loss to 4 digits (README, "Speed").
    - One glibc malloc arena (unless MALLOC_ARENA_MAX is set): with one arena per contending
      thread, each of TensorFlow's threads kept the tensor buffers it freed, and every
      evaluation added ~140 MB that was never given back.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


M_ARENA_MAX = -8  # glibc's malloc.h
