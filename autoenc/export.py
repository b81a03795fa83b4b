"""A run's best checkpoint as one SavedModel that plain TensorFlow can serve (`--mode=export`).

The SavedModel (default `WORKDIR/export/`) holds the weights and four serving signatures,
`serving_default` and `reconstruct` (the same function), `encode` and `decode`, described in
`autoenc.serving`; `tf.saved_model.load(DIR)` in any TensorFlow 2.21 program loads it, with no
autoenc code. Next to `saved_model.pb` an `export.json` records the model, the checkpoint it
came from and each signature's input and output shapes.

It is never half-written: the SavedModel is written into a fresh directory beside the target
and renamed onto it once complete. A previous export at the target is replaced (renamed aside
first, removed last), but only if its `export.json` says this command wrote it and the
directory holds no file but the ones that `export.json` lists: anything else there (the user's
own SavedModel, notes put beside an export) is refused, so the command never deletes a file it
did not write.
"""

import json
import os
import pathlib
import shutil

import tensorflow as tf

from autoenc import checkpoints, models, serving
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError

INFO_FILE = "export.json"
WRITTEN_BY = "autoenc --mode=export"  # export.json's mark of a directory this command wrote


def _target_path(export_dir: str) -> pathlib.Path:
    """The export directory a `--export_dir` names; it must end in a name of its own, since
    the SavedModel is written beside it and renamed onto it."""
    target = pathlib.Path(export_dir)
    if target.name in ("", ".."):
        raise UsageError(
            f"--export_dir={export_dir}: name a directory of its own for the export"
            " (e.g. --export_dir=exports/dense)"
        )
    return target


def _check_target(target: pathlib.Path) -> None:
    """Refuses an export directory that holds anything but an earlier export's own files."""
    try:
        if not target.exists():
            return
        if not target.is_dir():
            raise UsageError(f"--export_dir={target} is a file; pass a directory")
        present = sorted(
            path.relative_to(target).as_posix() for path in target.rglob("*") if not path.is_dir()
        )
        if not present:
            return  # an empty directory: nothing to lose
        info = json.loads((target / INFO_FILE).read_text()) if INFO_FILE in present else {}
    except OSError as e:
        raise UserError(f"cannot read --export_dir={target}: {e.strerror or e}") from None
    except ValueError:
        info = {}  # an export.json that is not ours
    if not isinstance(info, dict) or info.get("written_by") != WRITTEN_BY:
        raise UsageError(
            f"--export_dir={target} exists and holds something other than an export;"
            " pass a new or empty directory"
        )
    foreign = [name for name in present if name not in info.get("files", ())]
    if foreign:
        raise UsageError(
            f"--export_dir={target} holds {foreign[0]}, which no export wrote;"
            " move it away or pass another directory"
        )


def _describe(signature) -> dict:
    """{'inputs': {name: 'float32 [N, 28, 28]'}, 'outputs': {...}} of a concrete function."""

    def shape_text(spec):
        dims = [
            "N" if i == 0 else ("any" if d is None else str(d)) for i, d in enumerate(spec.shape)
        ]
        return f"{spec.dtype.name} [{', '.join(dims)}]"

    positional, named = signature.structured_input_signature
    inputs = {spec.name: spec for spec in positional} | named
    return {
        "inputs": {name: shape_text(spec) for name, spec in inputs.items()},
        "outputs": {name: shape_text(spec) for name, spec in signature.structured_outputs.items()},
    }


def _write_saved_model(functions: serving.ServingFunctions, directory: pathlib.Path, info):
    signatures = {
        name: function.get_concrete_function() for name, function in functions.signatures().items()
    }
    tf.saved_model.save(functions, str(directory), signatures=signatures)
    info["signatures"] = {name: _describe(function) for name, function in signatures.items()}
    # What a later export may replace: these files and nothing else.
    written = {path.relative_to(directory).as_posix() for path in directory.rglob("*")}
    info["files"] = sorted(
        name for name in written | {INFO_FILE} if not (directory / name).is_dir()
    )
    workdir_lib.write_json(directory / INFO_FILE, info)


def export_workdir(config, workdir, export_dir=None, weights="best") -> pathlib.Path:
    """Exports a run's best weights (or its final ones) as a SavedModel with serving
    signatures.

    Args:
        config: the config the run was trained with (only the model fields must match).
        workdir: a finished or interrupted run's work directory.
        export_dir: where the SavedModel goes; default `WORKDIR/export`. A previous export
            there is replaced; anything else there (a file it did not write) is refused.
        weights: "best" (the best checkpoint) or "final" (the weights training ended with).

    Returns:
        The export directory.

    Raises:
        UserError: no best checkpoint, a run still using the workdir, or an unwritable target.
        UsageError: a config with another model, or a target that is not an export.
    """
    workdir = pathlib.Path(workdir)
    target = _target_path(export_dir) if export_dir else workdir / "export"
    _check_target(target)
    with checkpoints.open_trained_run(config, workdir, weights=weights) as (nets, best):
        staging = _make_staging_dir(target)  # an unwritable target fails before the work
        try:
            functions = serving.ServingFunctions(nets, config.model)
            info = dict(written_by=WRITTEN_BY, model=config.model, checkpoint=os.path.abspath(best))
            info.update({field: config[field] for field in models.spec(config).fields})
            _write_and_swap(functions, staging, target, info)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _make_staging_dir(target: pathlib.Path) -> pathlib.Path:
    """A fresh empty directory beside `target`, where the SavedModel is written first."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a leftover of a crashed attempt
        staging.mkdir()
    except OSError as e:
        raise UserError(f"cannot write the export to {target}: {e.strerror or e}") from None
    return staging


def _write_and_swap(functions, staging: pathlib.Path, target: pathlib.Path, info: dict) -> None:
    """Writes the SavedModel into `staging`, then renames it onto `target`; a previous export
    there is renamed aside first and removed last, or put back if anything fails."""
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        _write_saved_model(functions, staging, info)
        if target.exists():
            os.rename(target, aside)
        os.rename(staging, target)
    except (OSError, tf.errors.OpError) as e:
        if aside.exists() and not target.exists():
            os.rename(aside, target)  # put the previous export back
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        raise UserError(f"cannot write the export to {target}: {reason}") from None
    shutil.rmtree(aside, ignore_errors=True)
