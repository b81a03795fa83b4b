"""The work directory: one run per directory, its lock, atomic file writes and resume checks.

Training holds an exclusive `flock` on `WORKDIR/.lock`, readers a shared one, which the kernel
drops when a process dies. Files for users are replaced by renaming, so a kill leaves one readable.
"""

import contextlib
import csv
import errno
import fcntl
import fnmatch
import io
import json
import os
import pathlib
import tempfile

from absl import logging

from autoenc import config as config_lib
from autoenc.errors import UsageError, UserError

NO_LOCK_VARIABLE = "AUTOENC_NO_LOCK"  # set to go on without the lock where flock is missing
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)  # e.g. Lustre, NFS
_BEFORE_CONFIG = (".lock", ".config.json.*.tmp")  # a run's files before config.json


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old or the new file, never a part. The
    temporary file is named by pid (the workdir lock keeps runs apart), not made by `mkstemp`,
    whose 0600 mode would ignore the umask."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # name the file the user knows, not the temporary one
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def write_json(path: pathlib.Path, data) -> None:
    """Atomically writes `data` as indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: pathlib.Path, rows: list[dict], fields: tuple[str, ...]) -> None:
    """Atomically writes `rows` as CSV with the header `fields`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


class WorkdirLock:
    """A crash-safe claim on a work directory (`with WorkdirLock(path): ...`): exclusive (the
    default) for training, which writes the run; `shared=True` for a process that only reads it
    (eval, export, figures, apply), so readers run side by side and exclude training."""

    def __init__(self, workdir: pathlib.Path, *, shared: bool = False):
        self.path = pathlib.Path(workdir) / ".lock"
        self.shared = shared
        self._file = None

    def __enter__(self):
        try:
            file = open(self.path, "a+")
        except OSError as e:
            # Read-only for this user (another user's run, a read-only mount): still lockable.
            try:
                file = open(self.path)
            except OSError:
                raise UserError(
                    f"cannot use workdir {self.path.parent}: {self.path.name} cannot be opened"
                    f" ({e.strerror or e}); the run's own user can, or copy the workdir"
                    " somewhere writable"
                ) from None
        try:
            fcntl.flock(file, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            refusal = self._refusal(file, e)
            file.close()
            if refusal:
                raise UserError(refusal) from None
            logging.warning("%s=1: using %s without its lock", NO_LOCK_VARIABLE, self.path.parent)
            return self
        if file.writable() and not self.shared:  # readers leave the trainer's pid for messages
            file.truncate(0)
            file.write(str(os.getpid()))
            file.flush()
        self._file = file
        return self

    def _refusal(self, file, error: OSError) -> str | None:
        """Why the lock cannot be had, or None to go on without it (no flock, the variable set)."""
        reason = error.strerror or error
        if error.errno in _NO_FLOCK:
            if os.environ.get(NO_LOCK_VARIABLE, "0") not in ("", "0"):
                return None
            return (
                f"cannot lock {self.path}: its filesystem has no flock ({reason});"
                f" {NO_LOCK_VARIABLE}=1 goes on without the lock, if no other process uses this"
                " workdir meanwhile"
            )
        if not isinstance(error, BlockingIOError):
            return f"cannot lock {self.path}: {reason}"
        wait = "wait for it to finish" + ("" if self.shared else " or pick another --workdir")
        if not self.shared:
            with contextlib.suppress(OSError):  # a shared lock is free: readers hold it
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(file, fcntl.LOCK_UN)
                return (
                    f"another process is reading workdir {self.path.parent} (eval, export,"
                    f" figures or apply); {wait}"
                )
        holder = self.path.read_text().strip() or "unknown"
        return f"another run (pid {holder}) is using workdir {self.path.parent}; {wait}"

    def __exit__(self, *exc):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def check_readable(workdir) -> None:
    """Raises a one-line UserError if a run's workdir or its best/ exists but cannot be read."""
    path = pathlib.Path(workdir)
    for directory in (path, path / "best"):
        try:
            os.listdir(directory)
            if not os.access(directory, os.R_OK | os.X_OK):  # listing alone needs no X
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except (FileNotFoundError, NotADirectoryError):
            return  # no run there: the caller says so ("no best checkpoint ... train first")
        except OSError as e:
            raise UserError(f"--workdir={workdir}: cannot read {directory}: {e.strerror}") from None


def prepare(workdir) -> pathlib.Path:
    """Creates the work directory if needed; raises UsageError or UserError, naming the cause,
    if it is a file, lies behind a dangling symbolic link or cannot be written."""
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--workdir={workdir} is a file, not a directory")
    for part in (path, *path.parents):  # mkdir would only say "File exists"
        if part.is_symlink() and not part.exists():
            raise UsageError(
                f"--workdir={path}: {part} is a dangling symbolic link to {os.readlink(part)};"
                " create its target or pass another directory"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path, prefix=".write-test").close()
    except OSError as e:
        raise UserError(f"--workdir={workdir} is not writable: {e.strerror or e}") from None
    return path


def check_run_dir(workdir) -> None:
    """Raises UsageError, naming the first such file, if the directory holds files but no run
    (no config.json): training never overwrites or deletes a file it did not write."""
    path = pathlib.Path(workdir)
    try:
        if not path.is_dir() or (path / "config.json").exists():
            return
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as e:
        raise UserError(f"--workdir={workdir}: cannot read it: {e.strerror or e}") from None
    for entry in entries:
        if not any(fnmatch.fnmatchcase(entry.name, own) for own in _BEFORE_CONFIG):
            raise UsageError(
                f"--workdir={workdir} holds {entry.name}{'/' if entry.is_dir() else ''} but no"
                " run (no config.json); pass a new or empty directory, or the workdir of a run"
            )


def saved_config_differences(workdir: pathlib.Path, config) -> list[str] | None:
    """Dotted names of the fields where `config` differs from the run saved in `workdir`, or
    None if it holds no run (no config.json). Raises UserError if config.json is unreadable."""
    saved_path = pathlib.Path(workdir) / "config.json"
    if not saved_path.exists():
        return None
    return config_lib.differing_fields(config_lib.read_saved_config(saved_path), config.to_dict())


def check_resumable(workdir: pathlib.Path, config) -> bool:
    """Whether `workdir` holds a run of `config` to resume (False: a fresh directory); raises
    UsageError if a field that cannot change mid-run differs, or as `check_run_dir` does."""
    differing = saved_config_differences(workdir, config)
    if differing is None:
        check_run_dir(workdir)
        return False
    if blocking := [field for field in differing if field not in config_lib.RESUMABLE_CHANGES]:
        raise UsageError(
            f"workdir {workdir} holds a run with a different config"
            f" (differs in: {', '.join(blocking)}); use another --workdir"
        )
    return True
