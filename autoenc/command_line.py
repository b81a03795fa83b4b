"""launch.py's plumbing besides flags: config overrides, one-line errors, `~` in paths, TensorFlow's
log level and process settings. It imports no TensorFlow, so usage errors answer before it loads.
"""

import contextlib
import ctypes
import importlib.util
import logging
import os
import sys

from absl import logging as absl_logging

from autoenc.errors import UsageError

TF_LOG_LEVELS = ("info", "warning", "error")  # --tf_log_level; TF_CPP_MIN_LOG_LEVEL is the index
PATH_FLAGS = ("export_dir", "inputs", "output_dir")  # mode flags that name files or directories


def fail(message: str, code: int) -> None:
    """Prints `message` as launch.py's one-line error and exits with `code`."""
    print(f"launch.py: error: {message}", file=sys.stderr)
    sys.exit(code)


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separates `--config.FIELD=VALUE` and `--config.FIELD VALUE` from the flags absl parses
    (the second form takes the next argument, as absl's and ml_collections' flags do)."""
    rest, overrides = [], {}
    args = iter(argv)
    for arg in args:
        if not arg.startswith("--config."):
            rest.append(arg)
            continue
        field, sep, value = arg.removeprefix("--config.").partition("=")
        if not sep and (value := next(args, None)) is None:
            fail(f"{arg}: expected a value (--config.FIELD=VALUE)", 2)
        overrides[field] = value
    return rest, overrides


def expand_user(path: str | None) -> str | None:
    """Expands a leading `~` or `~user` as a shell would (which it does not after `--flag=`)."""
    return os.path.expanduser(path) if path else path


def expand_user_paths(options: dict) -> dict:
    """The mode flags with `expand_user` applied to those that name paths (or lists of them)."""

    def expand(value):
        return list(map(expand_user, value)) if isinstance(value, list) else expand_user(value)

    return {flag: expand(value) if flag in PATH_FLAGS else value for flag, value in options.items()}


def resolve_config(config_flag: str | None, mode: str, workdir: str | None, overrides: dict):
    """The config (`--config`, or a trained run's config.json) with the overrides applied, and
    the name of the default workdir. Raises UsageError if there is none or an override is bad."""
    from autoenc import config as config_lib

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
    Python lines come through the `tensorflow` logger or absl's (the checkpoint saver's), which
    the project's own lines share: the filter on it drops only the libraries' lines."""
    python_level, native_level = getattr(logging, level.upper()), str(TF_LOG_LEVELS.index(level))
    if given or "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = native_level
    logging.getLogger("tensorflow").setLevel(python_level)
    specs = [importlib.util.find_spec(name) for name in ("tensorflow", "keras")]
    libraries = tuple(os.path.dirname(spec.origin) + os.sep for spec in specs if spec)

    def shown(record: logging.LogRecord) -> bool:
        return record.levelno >= python_level or not record.pathname.startswith(libraries)

    absl_logging.get_absl_logger().addFilter(shown)


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


def configure_process() -> None:
    """Process settings that must precede TensorFlow's start, each unless the user set it: oneDNN's
    CPU kernels on (TensorFlow's default only with AVX512-VNNI/BF16 or AMX; docs/speed.md), and
    one glibc malloc arena, without which threads kept the buffers they freed (~140 MB an eval)."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX (glibc's malloc.h): 1 arena
