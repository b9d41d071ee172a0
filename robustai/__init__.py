"""robustai: train models that stay correct under attack and keep their training data private."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("robustai")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
