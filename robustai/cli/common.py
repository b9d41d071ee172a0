"""Shared CLI plumbing: where configs live, and how bad input is reported."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from robustai.errors import ConfigError

EXIT_FAILURE = 1  # the run itself failed (e.g. diverged)
EXIT_BAD_INPUT = 2


def config_dir() -> Path:
    """``$ROBUSTAI_CONFIG_DIR``, else the ``configs/`` folder of robustai's source tree."""
    env = os.environ.get("ROBUSTAI_CONFIG_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "train.yaml").is_file():
            raise ConfigError(
                f"ROBUSTAI_CONFIG_DIR={env} holds no train.yaml; point it at robustai's configs/"
            )
        return path
    path = Path(__file__).resolve().parents[2] / "configs"
    if not (path / "train.yaml").is_file():
        raise ConfigError(
            f"robustai's configs/ folder was not found at {path}; install robustai from a source "
            "checkout (pip install -e .) or set ROBUSTAI_CONFIG_DIR"
        )
    return path


def fail(command: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr, then exit: the contract for bad input."""
    sys.stderr.write(f"robustai {command}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)
