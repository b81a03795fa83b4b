"""Measuring one config: its arms built for each precision and warmed up (traced, compiled),
the length of a steady measurement chosen from the warm-up, the interleaved rounds, and then a
whole run in a child process. Loads TensorFlow, with launch.py's process settings.
"""

import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from autoenc.command_line import configure_process  # noqa: E402

configure_process()  # the process settings launch.py runs with, before TensorFlow loads

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoenc import data as data_lib  # noqa: E402
from autoenc import train  # noqa: E402
from benchmarks import arms, report  # noqa: E402
from benchmarks.rounds import log, run_rounds  # noqa: E402
from benchmarks.whole_run import whole_run  # noqa: E402


def versions() -> str:
    return f"TF {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"


def check_model(name: str, config) -> None:
    """Exits with one line if `fit` has no book model for the config's."""
    if config.model not in arms.BOOK_INPUTS:
        raise SystemExit(
            f"benchmarks: {name} trains a {config.model!r} model; fit is measured on the"
            f" book's models only ({', '.join(arms.BOOK_INPUTS)})"
        )


def build_arms(config, precisions: list[str], rounds: int) -> tuple[dict, arms.OurLoop]:
    """{arm name: arm(steps) -> Timing} for each precision, in the order they run in a round:
    each `ours` next to its `fit`, the precisions' `ours` next to each other."""
    data = data_lib.load_fashion_mnist(config.data_dir or None).x_train
    data = data[: config.train_examples or None]
    images, book_data = tf.constant(data), arms.book_data(config, data)
    built, first_loop = {}, None
    for index, precision in enumerate(precisions):
        variant = config.copy_and_resolve_references()
        variant.precision = precision
        loop = arms.OurLoop(variant, images, measurements=rounds + 1)
        first_loop = first_loop or loop
        short = report.SHORT[precision]
        trio = {
            f"ours {short}": loop.steady,
            f"fit {short}": arms.FitArm(variant, book_data),
            f"epoch {short}": loop.whole_epoch,
        }
        built.update(reversed(trio.items()) if index % 2 == 0 else trio.items())
    return built, first_loop


def measure(name: str, config, args, overrides: dict, precisions: list[str]) -> report.ConfigResult:
    """One config: warm-ups, the rounds, then the whole run."""
    train.set_op_determinism(config.deterministic)
    log(f"{name}: building {', '.join(precisions)}")
    all_arms, loop = build_arms(config, precisions, args.rounds)
    per_call = config.steps_per_loop
    warm = {arm: run(per_call) for arm, run in all_arms.items()}  # traces and compiles
    for arm, timing in warm.items():
        log(f"  warm-up {arm:<12}{timing.rate:12,.0f} images/s")
    ours_rate = warm[f"ours {report.SHORT[precisions[0]]}"].rate
    calls = round(args.seconds * ours_rate / (per_call * config.batch_size))
    steps = per_call * max(1, min(calls, loop.max_steps // per_call))
    results = run_rounds(
        {arm: (lambda r=run: r(steps)) for arm, run in all_arms.items()}, args.rounds
    )
    facts = (
        f"global batch {config.batch_size}, steps_per_loop {per_call}, {steps} timed steps per"
        f" measurement, {args.rounds} rounds, {loop.batches.steps_per_epoch} steps per epoch,"
        f" xla {config.xla}, op determinism {config.deterministic}"
    )
    result = report.ConfigResult(name, facts, results)
    if args.run_epochs:
        log(f"{name}: a whole run of {args.run_epochs} epoch(s) in a child process")
        result.run = whole_run(name, args.run_epochs, overrides)
    return result
