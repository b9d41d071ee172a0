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
