"""The plumbing of `launch.py` that is not flags: `--config.FIELD=VALUE` overrides, which config
a command means, one-line errors, `~` in path flags, which of TensorFlow's log lines show, and
the process settings that must precede TensorFlow's start. No TensorFlow import here, so a usage
error answers before TensorFlow loads.
"""

import contextlib
import ctypes
import importlib.util
import logging
import os
import sys

from absl import logging as absl_logging

OVERRIDE_PREFIX = "--config."
# --tf_log_level: the lowest level of TensorFlow's own lines shown, and the native side's
# TF_CPP_MIN_LOG_LEVEL for it.
TF_LOG_LEVELS = {
    "info": (logging.INFO, "0"),
    "warning": (logging.WARNING, "1"),
    "error": (logging.ERROR, "2"),
}
PATH_FLAGS = ("export_dir", "inputs", "output_dir")  # mode flags that name files or directories


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separates `--config.FIELD=VALUE` and `--config.FIELD VALUE` arguments from the flags
    absl parses (the second form takes the next argument as the value, as absl's own flags
    and ml_collections' config flags do)."""
    rest, overrides = [], {}
    args = iter(argv)
    for arg in args:
        if arg.startswith(OVERRIDE_PREFIX):
            field, sep, value = arg[len(OVERRIDE_PREFIX) :].partition("=")
            if not sep:
                value = next(args, None)
                if value is None:
                    fail(f"{arg}: expected a value ({OVERRIDE_PREFIX}FIELD=VALUE)", 2)
            overrides[field] = value
        else:
            rest.append(arg)
    return rest, overrides


def expand_user(path: str | None) -> str | None:
    """`~` and `~user` at the start of a path flag mean a home directory, as in a shell (which
    does not expand them after `--flag=`)."""
    return os.path.expanduser(path) if path else path


def expand_user_paths(options: dict) -> dict:
    """The mode flags with `expand_user` applied to the ones that name paths."""
    expanded = dict(options)
    for flag in PATH_FLAGS:
        value = options.get(flag)
        if isinstance(value, list):
            expanded[flag] = [expand_user(item) for item in value]
        elif isinstance(value, str):
            expanded[flag] = expand_user(value)
    return expanded


def resolve_config(config_flag: str | None, mode: str, workdir: str | None, overrides: dict):
    """The config to use and the name that makes the default workdir: `--config` with the
    overrides applied, or, for a mode that uses a trained run, the run's own config.json.

    Raises:
        UsageError: no config to be had, or a bad override (see `autoenc.config`).
    """
    from autoenc import config as config_lib
    from autoenc.errors import UsageError

    if config_flag:
        config = config_lib.load_config(expand_user(config_flag))
        name = os.path.splitext(os.path.basename(config_flag))[0]
    elif mode == "train":
        raise UsageError("--config=NAME is required to train (e.g. --config=conv_denoise)")
    elif not workdir:
        raise UsageError(f"--mode={mode} needs --workdir=DIR, the run to use")
    else:
        config = config_lib.load_run_config(workdir)
        name = os.path.basename(os.path.normpath(workdir))
    config_lib.apply_overrides(config, overrides)
    return config, name


def set_tensorflow_log_level(level: str, *, given: bool) -> None:
    """Shows TensorFlow's and Keras' own log lines from `level` up; call before TensorFlow loads.

    Native lines obey TF_CPP_MIN_LOG_LEVEL (an exported value wins unless the flag is `given`).
    Python lines go through the `tensorflow` logger, or through absl's when a module logs with
    absl directly (the checkpoint saver's "Sharding callback duration", twice an epoch); absl's
    logger also carries the project's own lines, so a filter there drops only the libraries'.
    """
    python_level, native_level = TF_LOG_LEVELS[level]
    if given:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = native_level
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", native_level)
    logging.getLogger("tensorflow").setLevel(python_level)
    packages = [importlib.util.find_spec(name) for name in ("tensorflow", "keras")]
    directories = tuple(os.path.dirname(spec.origin) + os.sep for spec in packages if spec)
    absl_logging.get_absl_logger().addFilter(_LibraryLinesBelow(python_level, directories))


class _LibraryLinesBelow(logging.Filter):
    """Drops the records below a level that code in the given directories logs."""

    def __init__(self, level: int, directories: tuple[str, ...]):
        super().__init__()
        self.level, self.directories = level, directories

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.pathname.startswith(self.directories)


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
    """Process settings that must precede TensorFlow's start, for speed and peak memory.

    - TensorFlow's oneDNN CPU kernels on (unless TF_ENABLE_ONEDNN_OPTS is set). TensorFlow
      turns them on by itself only on CPUs with AVX512-VNNI/BF16 or AMX; on CPUs without them
      they made the conv step about twice as fast and lowered the peak RSS (docs/speed.md).
    - One glibc malloc arena (unless MALLOC_ARENA_MAX is set): with one arena per contending
      thread, each of TensorFlow's threads kept the tensor buffers it freed, and every
      evaluation added ~140 MB that was never given back.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


M_ARENA_MAX = -8  # glibc's malloc.h
