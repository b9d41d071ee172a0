"""Error types that separate bad user input from internal failures.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2; anything else is a
bug or a run failure and keeps its traceback.
"""


class UserError(Exception):
    """Bad input (config, paths, files); the message says what is wrong and how to fix it."""


class ConfigError(UserError):
    """A config value is missing, misspelt, of the wrong type or out of range."""


class DataError(UserError):
    """A data set cannot be found or read."""


class CheckpointError(UserError):
    """A weights file or its metadata is missing, unreadable or does not match."""


class RunFailure(Exception):
    """The run itself failed (e.g. the loss diverged): exit status 1 with one line, no traceback."""


class RunInterrupted(Exception):
    """A signal stopped the run after a checkpoint was saved; exits with 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
