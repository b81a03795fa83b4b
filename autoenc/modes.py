"""What `launch.py --mode=...` does once it has a config and a workdir: train, or one of the
ways of using a trained run (figures, eval, export, apply), with their logging and output files.

Each mode's own flags are refused with the other modes, so a misplaced flag is an error rather
than silently ignored.
"""

import sys

from absl import logging

from autoenc import apply as apply_lib
from autoenc import evaluate, export, latent, plots, train
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError

# The flags of each mode that has its own; given with any other mode, they are refused.
MODE_FLAGS = {
    "eval": ("noise_factor", "eval_seed", "weights"),
    "export": ("export_dir", "weights"),
    "apply": ("inputs", "output_dir", "overwrite", "weights"),
}


def run(mode: str, config, workdir: str, *, strategy_name: str, options: dict) -> None:
    """Runs `mode` (train, figures, eval, export, apply).

    Args:
        mode: the --mode flag.
        config: the resolved config.
        workdir: the run's work directory.
        strategy_name: the --strategy flag (training only).
        options: the mode flags of `MODE_FLAGS` by name (None or absent: not given).

    Raises:
        UserError: anything the user can fix, including a flag given with the wrong mode.
    """
    for flag, value in options.items():
        if value is not None and flag not in MODE_FLAGS.get(mode, ()):
            owners = "|".join(name for name, flags in MODE_FLAGS.items() if flag in flags)
            raise UsageError(f"--{flag} is for --mode={owners}, not --mode={mode}")
    weights = options.get("weights") or "best"  # which checkpoint eval/export/apply use
    if mode == "train":
        metrics = train.train_and_evaluate(config, workdir, strategy_name=strategy_name)
        logging.info("metrics in %s/metrics.json: test %s", workdir, metrics["test"])
    elif mode == "figures":
        try:
            paths = plots.figures_from_workdir(config, workdir)
        except OSError as e:
            raise UserError(f"cannot write figures in {workdir}: {e.strerror or e}") from None
        logging.info("figures: %s", ", ".join(str(path) for path in paths))
    elif mode == "embeddings":
        result = latent.from_workdir(config, workdir)
        logging.info(
            "code probe (%s): code %.4f, PCA of its width %s, pixels %.4f; Projector files in %s",
            result["classifier"],
            result["code"],
            "-" if result["pca"] is None else f"{result['pca']:.4f}",
            result["pixels"],
            f"{workdir}/projector",
        )
    elif mode == "eval":
        noise_factor, seed = options.get("noise_factor"), options.get("eval_seed")
        run_eval(config, workdir, noise_factor, seed, weights)
    elif mode == "export":
        path = export.export_workdir(config, workdir, options.get("export_dir"), weights)
        signatures = "serving_default, reconstruct, encode, decode"
        logging.info("SavedModel in %s (signatures: %s)", path, signatures)
    else:
        inputs, output_dir = options.get("inputs"), options.get("output_dir")
        run_apply(config, workdir, inputs, output_dir, bool(options.get("overwrite")), weights)


def run_eval(config, workdir, noise_factor, seed, weights="best") -> None:
    """Evaluates the best checkpoint (or the final weights) and writes
    `WORKDIR/eval/noise<X>_seed<N>[_final].json`."""
    result = evaluate.evaluate_workdir(
        config, workdir, noise_factor=noise_factor, seed=seed, weights=weights
    )
    path = evaluate.evaluation_path(workdir, result["noise_factor"], result["seed"], weights)
    try:
        path.parent.mkdir(exist_ok=True)
        workdir_lib.write_json(path, result)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    noise = f"noise {result['noise_factor']:g}, seed {result['seed']}"
    logging.info("test (%s, %s): %s", result["checkpoint"], noise, _brief(result["test"]))
    if "noisy_input" in result:
        logging.info("noisy input (%s): %s", noise, _brief(result["noisy_input"]))
    logging.info("written to %s", path)


def _brief(quality: dict) -> str:
    return "  ".join(
        f"{name} {value:.2f} dB" if name == "psnr" else f"{name} {value:.4f}"
        for name, value in quality.items()
    )


def run_apply(config, workdir, inputs, output_dir, overwrite=False, weights="best") -> None:
    """Applies the best model (or the final one) to files; one stderr line per file that
    fails, then an error."""
    if not inputs or not output_dir:
        raise UsageError("--mode=apply needs --inputs=PATH[,PATH...] and --output_dir=DIR")
    failed = total = 0
    outcomes = apply_lib.apply_to_files(
        config, workdir, inputs, output_dir, overwrite=overwrite, weights=weights
    )
    for outcome in outcomes:
        total += 1
        if outcome.problem:
            failed += 1
            print(f"launch.py: skipped {outcome.source}: {outcome.problem}", file=sys.stderr)
        else:
            logging.info("%s -> %s", outcome.source, outcome.output)
    if failed:
        raise UserError(
            f"{failed} of {total} input files failed (listed above);"
            f" {total - failed} results written to {output_dir}"
        )
    logging.info("%d results written to %s", total, output_dir)
