"""A run's best checkpoint as one SavedModel that plain TensorFlow serves (`--mode=export`).

The SavedModel holds the weights and `autoenc.serving`'s signatures (`serving_default` is
`reconstruct`); its `export.json` records the model, the checkpoint and each signature's shapes.
It is written beside the target and renamed onto it once complete. A previous export there is
replaced only if its `export.json` says this command wrote it and lists every file the directory
holds: the command never deletes a file it did not write.
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


def _files_in(directory: pathlib.Path) -> list[str]:
    """The files under `directory`, as sorted relative POSIX paths."""
    paths = directory.rglob("*")
    return sorted(path.relative_to(directory).as_posix() for path in paths if not path.is_dir())


def _check_target(target: pathlib.Path) -> None:
    """Refuses an export directory that holds anything but an earlier export's own files."""
    try:
        if target.exists() and not target.is_dir():
            raise UsageError(f"--export_dir={target} is a file; pass a directory")
        present = _files_in(target)  # none in a new or empty directory: nothing to lose
        info = json.loads((target / INFO_FILE).read_text()) if INFO_FILE in present else {}
    except OSError as e:
        raise UserError(f"cannot read --export_dir={target}: {e.strerror or e}") from None
    except ValueError:
        info = {}  # an export.json that is not ours
    if present and (not isinstance(info, dict) or info.get("written_by") != WRITTEN_BY):
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
        dims = ["N"] + ["any" if d is None else str(d) for d in spec.shape[1:]]
        return f"{spec.dtype.name} [{', '.join(dims)}]"

    inputs = signature.structured_input_signature[0]  # the specs of `input_signature`
    return {
        "inputs": {spec.name: shape_text(spec) for spec in inputs},
        "outputs": {name: shape_text(spec) for name, spec in signature.structured_outputs.items()},
    }


def _write_saved_model(functions: serving.ServingFunctions, directory: pathlib.Path, info):
    signatures = {
        name: function.get_concrete_function() for name, function in functions.signatures().items()
    }
    tf.saved_model.save(functions, str(directory), signatures=signatures)
    info["signatures"] = {name: _describe(function) for name, function in signatures.items()}
    info["files"] = sorted({*_files_in(directory), INFO_FILE})  # what a later export may replace
    workdir_lib.write_json(directory / INFO_FILE, info)


def export_workdir(config, workdir, export_dir=None, weights="best") -> pathlib.Path:
    """Exports a run's best weights (or its final ones, `weights="final"`) as a SavedModel.

    `config`, `workdir` and their errors are those of `checkpoints.open_trained_run`.
    `export_dir` (default `WORKDIR/export`) may hold an earlier export, which is replaced;
    anything else there, or an unwritable target, is a UserError. Returns the export directory.
    """
    workdir = pathlib.Path(workdir)
    target = pathlib.Path(export_dir) if export_dir else workdir / "export"
    if target.name in ("", ".."):  # the SavedModel is written beside the target
        raise UsageError(
            f"--export_dir={export_dir}: name a directory of its own for the export"
            " (e.g. --export_dir=exports/dense)"
        )
    _check_target(target)
    with checkpoints.open_trained_run(config, workdir, weights=weights) as (nets, best):
        info = dict(written_by=WRITTEN_BY, model=config.model, checkpoint=os.path.abspath(best))
        info.update({field: config[field] for field in models.spec(config).fields})
        _write_and_swap(serving.ServingFunctions(nets, config.model), target, info)
    return target


def _write_and_swap(functions, target: pathlib.Path, info: dict) -> None:
    """Writes the SavedModel into a fresh directory beside `target`, then renames it onto it; a
    previous export there is renamed aside first and removed last, or put back on failure."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a leftover of a crashed attempt
        staging.mkdir()
        _write_saved_model(functions, staging, info)
        if target.exists():
            os.rename(target, aside)
        os.rename(staging, target)
    except (OSError, tf.errors.OpError) as e:
        if aside.exists() and not target.exists():
            os.rename(aside, target)  # put the previous export back
        reason = (e.strerror or e) if isinstance(e, OSError) else str(e).splitlines()[0]
        raise UserError(f"cannot write the export to {target}: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)
