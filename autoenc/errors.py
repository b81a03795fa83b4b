"""Errors a user can fix, and how the command line reports them.

Library code raises `UserError` (or a subclass) for anything caused by input the user
controls: a config, a flag, a data file, a work directory. `launch.py` turns one into a single
line on stderr and the exception's exit code; every other exception is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """A problem the user can fix; reported as one line, exit code `exit_code`."""

    exit_code = 1


class UsageError(UserError):
    """A bad command line or config value (exit code 2, as for any usage error)."""

    exit_code = 2


class DataError(UserError):
    """Fashion-MNIST files that are missing, truncated or corrupt."""

    exit_code = 3


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss; the message names the epoch and step."""

    exit_code = 4
