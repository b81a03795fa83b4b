"""What `launch.py --mode=...` does once it has a config and a workdir: train, or use a trained
run (figures, embeddings, eval, export, apply), with the logging and output files of each. A
mode's own flags are refused with the other modes, so a misplaced flag is an error."""

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
    """Runs `mode` (train, figures, embeddings, eval, export, apply) on a resolved config.

    `strategy_name` is the --strategy flag (training only); `options` holds the flags of
    `MODE_FLAGS` by name (None: not given). Raises `UserError` for anything the user can fix."""
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
        probe = latent.from_workdir(config, workdir)
        pca = "-" if probe["pca"] is None else f"{probe['pca']:.4f}"
        scores = f"code {probe['code']:.4f}, PCA of its width {pca}, pixels {probe['pixels']:.4f}"
        where = f"Projector files in {workdir}/projector"
        logging.info("code probe (%s): %s; %s", probe["classifier"], scores, where)
    elif mode == "eval":
        run_eval(config, workdir, options.get("noise_factor"), options.get("eval_seed"), weights)
    elif mode == "export":
        path = export.export_workdir(config, workdir, options.get("export_dir"), weights)
        signatures = "serving_default, reconstruct, encode, decode"
        logging.info("SavedModel in %s (signatures: %s)", path, signatures)
    else:
        run_apply(config, workdir, options, weights)


def run_eval(config, workdir, noise_factor, seed, weights="best") -> None:
    """Evaluates the best (or final) weights into `WORKDIR/eval/noise<X>_seed<N>[_final].json`."""
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


def _brief(scores: dict) -> str:
    return "  ".join(
        f"{k} {v:.2f} dB" if k == "psnr" else f"{k} {v:.4f}" for k, v in scores.items()
    )


def run_apply(config, workdir, options: dict, weights="best") -> None:
    """Applies the best (or final) model to `--inputs`: a line per failed file, then an error."""
    inputs, output_dir = options.get("inputs"), options.get("output_dir")
    if not inputs or not output_dir:
        raise UsageError("--mode=apply needs --inputs=PATH[,PATH...] and --output_dir=DIR")
    overwrite = bool(options.get("overwrite"))
    failed = total = 0
    for outcome in apply_lib.apply_to_files(
        config, workdir, inputs, output_dir, overwrite=overwrite, weights=weights
    ):
        total += 1
        if outcome.problem:
            failed += 1
            print(f"launch.py: skipped {outcome.source}: {outcome.problem}", file=sys.stderr)
        else:
            logging.info("%s -> %s", outcome.source, outcome.output)
    if failed:
        written = f"{total - failed} results written to {output_dir}"
        raise UserError(f"{failed} of {total} input files failed (listed above); {written}")
    logging.info("%d results written to %s", total, output_dir)
