"""Trains the autoencoders of a TensorFlow 2 textbook chapter on Fashion-MNIST, or uses a run.

Usage:
  python launch.py --config=NAME [--config.FIELD=VALUE ...] [--workdir=DIR]
  python launch.py --mode=MODE --workdir=DIR [mode flags]

Configs (configs/NAME.py): {configs}; or a path to a .py file with get_config().
Overrides: --config.FIELD=VALUE or --config.FIELD VALUE, dotted for nested fields
(--config.early_stopping.patience=5). The workdir defaults to runs/NAME; rerunning the same
command resumes an interrupted run.
Modes: train (the default); figures, eval, export, apply and embeddings use a trained run's
best checkpoint and read its config from DIR/config.json, so they need no --config.
Reference: docs/usage.md.

Examples:
  python launch.py --config=dense_compress
  python launch.py --config=conv_denoise --config.epochs=10 --workdir=runs/conv10
  python launch.py --mode=eval --workdir=runs/conv10 --noise_factor=0.3
  python launch.py --mode=apply --workdir=runs/conv10 --inputs=scans/ --output_dir=denoised
"""

import os
import sys

from absl import app, flags

from autoenc.command_line import (
    TF_LOG_LEVELS,
    configure_process,
    expand_user,
    expand_user_paths,
    fail,
    quiet_native_stderr,
    resolve_config,
    set_tensorflow_log_level,
    split_overrides,
)
from autoenc.config import available_configs

__doc__ = __doc__.replace("{configs}", ", ".join(available_configs()))  # what --help shows

configure_process()  # before TensorFlow loads: see its docstring

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Config name in configs/ (e.g. conv_denoise) or a .py path.")
flags.DEFINE_string("workdir", None, "Output directory; default runs/<config name>.")
flags.DEFINE_enum(
    "strategy",
    "mirrored",
    ["mirrored", "multi_worker"],
    "mirrored: all local GPUs (or --cpu_devices); multi_worker: the machines in TF_CONFIG.",
)
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (N replicas).")
flags.DEFINE_bool("debug", False, "Show full tracebacks for user errors.")
flags.DEFINE_enum(
    "tf_log_level",
    "warning",
    list(TF_LOG_LEVELS),
    "TensorFlow's and Keras' own console lines from this level up: warning (their warnings and"
    " errors), info (also their notes, e.g. each checkpoint's sharding time) or error. Sets"
    " TF_CPP_MIN_LOG_LEVEL (0, 1, 2), whose exported value wins when this flag is not given."
    " The run's own lines follow --verbosity.",
)
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "figures", "eval", "export", "apply", "embeddings"],
    "train; or, from WORKDIR's best checkpoint: figures (redraw WORKDIR/figures/), eval (test"
    " metrics to WORKDIR/eval/), export (a SavedModel), apply (to your image files),"
    " embeddings (the code's Projector files, figures and probe.json).",
)
flags.DEFINE_float("noise_factor", None, "eval: noise level of the test inputs; default the run's.")
flags.DEFINE_integer("eval_seed", None, "eval: seed of that noise; default the run's seed.")
flags.DEFINE_string("export_dir", None, "export: SavedModel directory; default WORKDIR/export.")
flags.DEFINE_list("inputs", None, "apply: .png/.jpg/.jpeg/.npy files and directories of them.")
flags.DEFINE_string("output_dir", None, "apply: where the results go (created if missing).")
flags.DEFINE_bool("overwrite", None, "apply: replace files in --output_dir named like a result.")
flags.DEFINE_enum(
    "weights",
    None,
    ["best", "final"],
    "eval/export/apply: best (the best val_loss checkpoint, the default) or final (the weights"
    " training ended with, as Keras' fit leaves them: see early_stopping.restore_best_weights).",
)


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    from autoenc import config as config_lib  # no TensorFlow yet: config errors answer fast
    from autoenc import data
    from autoenc import workdir as workdir_lib
    from autoenc.errors import UserError

    try:
        workdir = expand_user(FLAGS.workdir)
        config, name = resolve_config(FLAGS.config, FLAGS.mode, workdir, overrides)
        config_lib.validate(config, num_train_images=data.TRAIN_COUNT)
        workdir = workdir or os.path.join("runs", name)
        if FLAGS.mode == "train":
            workdir_lib.check_run_dir(workdir)  # before anything, even the lock, lands in it

        set_tensorflow_log_level(FLAGS.tf_log_level, given=FLAGS["tf_log_level"].present)
        with quiet_native_stderr():  # TensorFlow's C++ start-up notes, e.g. "no CUDA drivers"
            from autoenc import distribute, modes

        if FLAGS.cpu_devices:
            distribute.configure_cpu_devices(FLAGS.cpu_devices)
        options = {flag: FLAGS[flag].value for names in modes.MODE_FLAGS.values() for flag in names}
        options = expand_user_paths(options)
        modes.run(FLAGS.mode, config, workdir, strategy_name=FLAGS.strategy, options=options)
    except UserError as e:
        if FLAGS.debug:
            raise
        fail(str(e), e.exit_code)


if __name__ == "__main__":
    absl_argv, config_overrides = split_overrides(sys.argv)

    def parse_flags(argv):
        try:
            return FLAGS(argv)
        except flags.Error as e:
            fail(str(e), 2)

    # Training turns SIGINT into a checkpointed stop; anywhere else it ends the command at once.
    try:
        app.run(lambda argv: main(argv, config_overrides), argv=absl_argv, flags_parser=parse_flags)
    except KeyboardInterrupt:
        fail("interrupted (SIGINT)", 130)
