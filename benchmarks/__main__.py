"""`python -m benchmarks`: how fast this CPU trains autoenc's configs, our loop against Keras `fit`.

    python -m benchmarks [--config=dense_compress,conv_denoise] [--precisions=float32,...]
                         [--rounds=6] [--seconds=3] [--run-epochs=2] [--config.FIELD=VALUE ...]

Per config and precision (float32, and mixed_bfloat16 where the CPU has bfloat16 units), three
arms run in interleaved rounds with launch.py's process settings: our loop in steady state,
`fit` on the book's Keras layers, and our loop over whole epochs. Then a whole run in a child
process gives history.csv's epoch rates and the run's peak RSS. It prints the CPU line, each
arm's rates, the ratios round by round and the targets met or not (`benchmarks.report`).
TensorFlow loads only once the command line and the configs were found good.
"""

import argparse
import os
import sys
import time

from autoenc import config as config_lib
from autoenc.command_line import split_overrides
from autoenc.errors import UserError
from benchmarks import machine, report

DEFAULT_CONFIGS = "dense_compress,conv_denoise"


def precisions_for(cpu: machine.Cpu, asked: str | None) -> list[str]:
    """The precisions asked for, or those that pay on this CPU: float32, and mixed_bfloat16
    where it has bfloat16 units."""
    if asked:
        return asked.split(",")
    return ["float32"] + ["mixed_bfloat16"] * cpu.has_bf16_units


def load(name: str, overrides: dict):
    """The config `name` with the overrides, validated (a `UserError` if it is no good)."""
    config = config_lib.load_config(name)
    config_lib.apply_overrides(config, overrides)
    config_lib.validate(config)
    return config


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        raise SystemExit(f"python -m benchmarks: error: {message}")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    rest, overrides = split_overrides(argv)
    parser = _Parser(prog="python -m benchmarks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default=DEFAULT_CONFIGS, help="comma-separated names")
    parser.add_argument("--precisions", help="comma-separated; default: those that pay here")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0, help="per steady measurement")
    parser.add_argument("--run-epochs", type=int, default=2, help="0: no whole run")
    args = parser.parse_args(rest)
    if args.rounds < 1 or args.seconds <= 0 or args.run_epochs < 0:
        parser.error("--rounds must be at least 1, --seconds above 0, --run-epochs at least 0")
    for precision in (args.precisions or "float32").split(","):
        if precision not in report.SHORT:
            parser.error(f"--precisions: {precision!r} is not one of {', '.join(report.SHORT)}")
    return args, overrides


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv)
    try:  # every config checked before TensorFlow loads and the first is measured
        configs = {name: load(name, overrides) for name in args.config.split(",")}
        from benchmarks import measure  # TensorFlow loads here

        for name, config in configs.items():
            measure.check_model(name, config)
        cpu = machine.this_cpu()
        precisions = precisions_for(cpu, args.precisions)
        load_at_start = os.getloadavg()[0]
        results = [
            measure.measure(name, config, args, overrides, precisions)
            for name, config in configs.items()
        ]
    except UserError as error:  # a bad config value, or no data
        raise SystemExit(f"benchmarks: {error}") from None
    print(" ".join(["python -m benchmarks", *argv]))
    print(f"{time.strftime('%Y-%m-%d')}; CPU: {cpu.describe()}; {measure.versions()}")
    print(f"load average (1 min) at start {load_at_start:.1f}, at end {os.getloadavg()[0]:.1f}\n")
    for result in results:
        print("\n".join(result.lines(cpu.has_bf16_units)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
