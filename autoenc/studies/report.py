"""The studies' command-line plumbing: shared flags, list arguments, one-line errors, and writing
a study's table and figure into the directory the user names, headed by the command that made
them, the CPU it ran on and the date.
"""

import argparse
import datetime
import pathlib
import shlex
import sys
from collections.abc import Callable

import tensorflow as tf
from matplotlib.figure import Figure

from autoenc import plots
from autoenc import workdir as workdir_lib
from autoenc.errors import UserError

# /proc/cpuinfo flag -> the name a figure gives it: the extensions that decide TensorFlow's
# CPU kernels, and so how fast a study's models train.
VECTOR_EXTENSIONS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "amx_tile": "AMX",
}


def parser(module: str, description: str, default_workdir: str) -> argparse.ArgumentParser:
    """An argument parser for `python -m MODULE` with the flags every study has: --workdir and
    --output_dir."""
    result = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    result.add_argument(
        "--workdir",
        default=default_workdir,
        help="the study's trained models and its cache of finished points (default: %(default)s)",
    )
    result.add_argument(
        "--output_dir",
        default=None,
        help="where the table (.md) and the figure (.png) go; default: the workdir",
    )
    return result


def comma_list(kind: type, allow_empty: bool = False) -> Callable[[str], list]:
    """An argparse type: comma-separated values of `kind` (at least one unless `allow_empty`)."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}"
            ) from None
        if not values and not allow_empty:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    return parse


def cpu_description(cpuinfo: pathlib.Path = pathlib.Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and which of `VECTOR_EXTENSIONS` it has, e.g. "AMD EPYC (with AVX2;
    no AVX-512, AVX512-BF16, AMX)"."""
    model, flags = "unknown CPU", set()
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break  # the first processor's; the others are the same
    has = [name for flag, name in VECTOR_EXTENSIONS.items() if flag in flags]
    lacks = [name for flag, name in VECTOR_EXTENSIONS.items() if flag not in flags]
    parts = ([f"with {', '.join(has)}"] if has else []) + (
        [f"no {', '.join(lacks)}"] if lacks else []
    )
    return f"{model} ({'; '.join(parts)})"


def provenance(module: str, argv: list[str]) -> str:
    """The line that heads a study's table: the command that made it, what it ran on and when."""
    command = shlex.join(["python", "-m", module, *argv])
    return (
        f"Made by `{command}` on {cpu_description()}, TensorFlow {tf.__version__}, on"
        f" {datetime.date.today().isoformat()}; times are wall times, taken when each point was"
        " computed.\n"
    )


def write(output_dir, name: str, text: str, figure: Figure) -> list[pathlib.Path]:
    """Writes `OUTPUT_DIR/NAME.md` and `OUTPUT_DIR/NAME.png`, each atomically.

    Returns:
        The two paths written.

    Raises:
        UserError: the output directory cannot be created or written.
    """
    directory = pathlib.Path(output_dir)
    paths = [directory / f"{name}.md", directory / f"{name}.png"]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        workdir_lib.atomic_write_text(paths[0], text)
        plots.save_png(figure, paths[1])
    except OSError as e:
        raise UserError(f"cannot write into --output_dir={output_dir}: {e.strerror or e}") from None
    return paths


def run_command(module: str, main: Callable[[list[str]], None]) -> None:
    """Runs `main(sys.argv[1:])`; a `UserError` ends the program with one line on stderr and
    its exit code, as `launch.py` does."""
    try:
        main(sys.argv[1:])
    except UserError as e:
        print(f"python -m {module}: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
