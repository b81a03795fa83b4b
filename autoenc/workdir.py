"""The work directory: one run per directory, atomic file writes, and resume compatibility.

A training run holds an exclusive `flock` on `WORKDIR/.lock` for its lifetime, a process that
only reads the run a shared one; the kernel drops it when the process dies, so a crashed run
never leaves the directory stuck. Every file a run writes
for users (config.json, history.csv, metrics.json) is written to a temporary file and renamed
over the old one, so a kill at any instant leaves the previous version readable.
"""

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


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old or the new file, never a part.

    The temporary file is named by pid rather than made by `mkstemp`, whose 0600 mode would
    ignore the user's umask; the workdir lock keeps two runs from sharing a name.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


# Set to go on without the workdir lock where the filesystem has no flock.
NO_LOCK_VARIABLE = "AUTOENC_NO_LOCK"
# What flock raises where the filesystem does not support it (Lustre without -o flock, some NFS).
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)


class WorkdirLock:
    """A crash-safe claim on a work directory (`with WorkdirLock(path): ...`).

    Exclusive (the default) for a process that writes the run, training; `shared=True` for
    one that only reads it (eval, export, figures, apply), so that readers run side by side
    while training excludes them all and they exclude training.
    """

    def __init__(self, workdir: pathlib.Path, *, shared: bool = False):
        self.path = pathlib.Path(workdir) / ".lock"
        self.shared = shared
        self._file = None

    def __enter__(self):
        writable = True
        try:
            self._file = open(self.path, "a+")
        except OSError as e:
            # A workdir the user may read but not write (another user's run, a read-only
            # mount): its lock file, left by the run that made it, can still be locked.
            writable = False
            self._file = self._open_read_only(e)
        try:
            locked = self._lock()
        except BaseException:
            self._file.close()
            self._file = None
            raise
        if not locked:
            self._file.close()
            self._file = None
        elif writable and not self.shared:  # readers leave the trainer's pid for messages
            self._file.truncate(0)
            self._file.write(str(os.getpid()))
            self._file.flush()
        return self

    def _lock(self) -> bool:
        """Takes the lock; False if the filesystem has none and the user said to go on."""
        try:
            fcntl.flock(
                self._file, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            )
        except BlockingIOError:
            raise UserError(self._busy_message()) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise UserError(f"cannot lock {self.path}: {e.strerror or e}") from None
            if os.environ.get(NO_LOCK_VARIABLE, "0") in ("", "0"):
                raise UserError(
                    f"cannot lock {self.path}: its filesystem has no flock ({e.strerror or e});"
                    f" {NO_LOCK_VARIABLE}=1 goes on without the lock, if no other process uses"
                    " this workdir meanwhile"
                ) from None
            logging.warning("%s=1: using %s without its lock", NO_LOCK_VARIABLE, self.path.parent)
            return False
        return True

    def _busy_message(self) -> str:
        """Who holds the lock: readers (if a shared lock is free) or a run, named by its pid."""
        workdir = self.path.parent
        if not self.shared:
            try:
                fcntl.flock(self._file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(self._file, fcntl.LOCK_UN)
                return (
                    f"another process is reading workdir {workdir} (eval, export, figures or"
                    " apply); wait for it to finish or pick another --workdir"
                )
            except OSError:
                pass  # a writer holds it
        self._file.seek(0)
        holder = self._file.read().strip() or "unknown"
        advice = "" if self.shared else " or pick another --workdir"
        return (
            f"another run (pid {holder}) is using workdir {workdir}; wait for it to finish{advice}"
        )

    def _open_read_only(self, error: OSError):
        try:
            return open(self.path)
        except OSError:
            reason = error.strerror or error
            raise UserError(
                f"cannot use workdir {self.path.parent}: {self.path.name} cannot be opened"
                f" ({reason}); the run's own user can, or copy the workdir somewhere writable"
            ) from None

    def __exit__(self, *exc):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def check_readable(workdir) -> None:
    """Checks that a run's work directory, if it exists, can be read (for the modes that use
    a trained run), so a permission problem is one line rather than an error deep inside.

    Raises:
        UserError: the workdir or its best checkpoint directory cannot be listed.
    """
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
    """Creates the work directory if needed and checks it is a writable directory.

    Raises:
        UserError: the path is a file, or cannot be created or written.
    """
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--workdir={workdir} is a file, not a directory")
    _check_no_dangling_link(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test")
        probe.close()
    except OSError as e:
        raise UserError(f"--workdir={workdir} is not writable: {e.strerror or e}") from None
    return path


# What a run leaves in its workdir before config.json: the lock and a config.json being written.
_BEFORE_CONFIG = (".lock", ".config.json.*.tmp")


def check_run_dir(workdir) -> None:
    """Refuses a directory that holds files but no run (no config.json), so that training never
    overwrites or deletes a file it did not write (history.csv, event files, figures).

    Raises:
        UsageError: the directory holds something no run wrote; the message names it.
        UserError: the directory cannot be listed.
    """
    path = pathlib.Path(workdir)
    try:
        if not path.is_dir() or (path / "config.json").exists():
            return
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as e:
        raise UserError(f"--workdir={workdir}: cannot read it: {e.strerror or e}") from None
    for entry in entries:
        if not any(fnmatch.fnmatchcase(entry.name, own) for own in _BEFORE_CONFIG):
            name = entry.name + ("/" if entry.is_dir() else "")
            raise UsageError(
                f"--workdir={workdir} holds {name} but no run (no config.json); pass a new"
                " or empty directory, or the workdir of a run"
            )


def _check_no_dangling_link(path: pathlib.Path) -> None:
    """Names a symbolic link on the way to `path` whose target is missing (mkdir would only
    say "File exists")."""
    for part in (path, *path.parents):
        if part.is_symlink() and not part.exists():
            raise UsageError(
                f"--workdir={path}: {part} is a dangling symbolic link to {os.readlink(part)};"
                " create its target or pass another directory"
            )


def saved_config_differences(workdir: pathlib.Path, config) -> list[str] | None:
    """Dotted names of the fields where `config` differs from the run saved in `workdir`.

    Returns:
        None if the workdir holds no run (no config.json), else the differing fields.

    Raises:
        UserError: config.json exists but cannot be read.
    """
    saved_path = pathlib.Path(workdir) / "config.json"
    if not saved_path.exists():
        return None
    return config_lib.differing_fields(config_lib.read_saved_config(saved_path), config.to_dict())


def check_resumable(workdir: pathlib.Path, config) -> bool:
    """Compares `config` with the one a previous run saved in `workdir`.

    Returns:
        True if there is a previous run to resume, False for a fresh directory.

    Raises:
        UsageError: the saved config differs in a field that cannot change mid-run, or the
            directory holds files but no run (see `check_run_dir`).
    """
    differing = saved_config_differences(workdir, config)
    if differing is None:
        check_run_dir(workdir)
        return False
    blocking = [field for field in differing if field not in config_lib.RESUMABLE_CHANGES]
    if blocking:
        raise UsageError(
            f"workdir {workdir} holds a run with a different config"
            f" (differs in: {', '.join(blocking)}); use another --workdir"
        )
    return True
