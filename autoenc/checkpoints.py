"""Opening a trained run: the one way figures, eval, export and apply get a run's weights.

`open_trained_run` checks the workdir can be read, finds its best (or final) checkpoint, takes
the workdir's shared lock (so training cannot replace the weights mid-read, while other readers
may share it) and yields the model with those weights, refusing a config that differs from the
run's in a field that decides them. `autoenc.run_state.RunState` writes the checkpoints.
"""

import contextlib
import pathlib

import tensorflow as tf

from autoenc import models
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError
from autoenc.run_state import checkpoint_path_problem, latest_checkpoint

# The config fields that decide the noisy test images a run was scored on (the noise is keyed
# on the seed and the batch index): what figures and evaluation must share with the run too.
TEST_NOISE_FIELDS = ("noise_factor", "seed", "batch_size")


def best_checkpoint_path(workdir, weights: str = "best") -> str:
    """The path prefix of a workdir's best checkpoint (or, with `weights="final"`, of its
    final weights); a one-line `UserError` if there is none."""
    problem = checkpoint_path_problem(workdir)
    if problem:
        raise UserError(problem)
    directory = pathlib.Path(workdir) / weights
    path = latest_checkpoint(directory) if directory.is_dir() else None
    if path is None:
        remedy = "train first (--mode=train, the default)"
        if weights == "final":
            remedy = "a run keeps its final weights when its last epoch ends; finish it first"
        raise UserError(f"no {weights} checkpoint in {directory}: {remedy}")
    return path


def load_best_model(config, workdir, *, also=(), hint="", weights="best") -> models.Autoencoder:
    """Builds the model `config` describes with a workdir's best (or final) weights; the encoder
    and decoder share the autoencoder's layers, so all three carry them.

    Args:
        config: the config the run was trained with.
        workdir: the run's work directory.
        also: fields that must equal the run's besides the model's own (`TEST_NOISE_FIELDS`
            when the noisy test images matter too).
        hint: appended to the refusal, e.g. which flags to use instead.
        weights: "best" (WORKDIR/best) or "final" (WORKDIR/final).

    Raises:
        UserError: the workdir has no such checkpoint, or it cannot be restored.
        UsageError: `config` differs from the run's in a field that decides the weights.
    """
    workdir = pathlib.Path(workdir)
    best = best_checkpoint_path(workdir, weights)
    deciding = ("model", *models.spec(config).fields, *also)
    differing = workdir_lib.saved_config_differences(workdir, config) or []
    differing = [field for field in differing if field in deciding]
    if differing:
        raise UsageError(
            f"workdir {workdir} holds a run with a different config"
            f" (differs in: {', '.join(differing)}); pass the --config it was trained with{hint}"
        )
    nets = models.build(config)
    try:
        tf.train.Checkpoint(model=nets.autoencoder).restore(best).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise UserError(f"cannot restore {best}: {str(e).splitlines()[0]}") from None
    return nets


@contextlib.contextmanager
def open_trained_run(config, workdir, *, weights="best", also=(), hint=""):
    """Yields `(nets, checkpoint_path)` as `load_best_model` builds them, holding the workdir's
    shared lock; a `UserError` also for an unreadable workdir or a run training there now."""
    workdir_lib.check_readable(workdir)
    path = best_checkpoint_path(workdir, weights)  # a missing run fails before the lock
    with workdir_lib.WorkdirLock(workdir, shared=True):
        yield load_best_model(config, workdir, also=also, hint=hint, weights=weights), path
