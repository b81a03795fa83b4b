"""Errors a user can fix: library code raises `UserError` (or a subclass) for anything caused by
input the user controls; `launch.py` prints it as one line on stderr and exits with its
`exit_code`. Every other exception is a bug and keeps its traceback.
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
