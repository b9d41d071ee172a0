"""Shared CLI plumbing: where configs live, and how bad input is reported."""

from __future__ import annotations

import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn

from robustai.errors import ConfigError

EXIT_FAILURE = 1  # the run itself failed (e.g. diverged)
EXIT_BAD_INPUT = 2
ENV_CONFIG_DIR = "ROBUSTAI_CONFIG_DIR"


def config_dir(app: str = "train") -> Path:
    """The folder of Hydra configs (it holds ``<app>.yaml``: train, evaluate); the first of:

    1. ``$ROBUSTAI_CONFIG_DIR``;
    2. the ``configs/`` folder at the top of robustai's source checkout, so that with an editable
       install (``pip install -e .``) edits there take effect;
    3. the copy installed with the package (``robustai/configs/``: pyproject.toml maps the
       top-level ``configs/`` there when a wheel is built).
    """
    env = os.environ.get(ENV_CONFIG_DIR)
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / f"{app}.yaml").is_file():
            raise ConfigError(
                f"{ENV_CONFIG_DIR}={env} holds no {app}.yaml; point it at robustai's configs/"
            )
        return path
    for path in (_source_tree_configs(), _installed_configs()):
        if path is not None and (path / "train.yaml").is_file():
            return path
    raise ConfigError(
        "robustai's configs were not found (neither a source checkout's configs/ nor the copy "
        f"installed with the package); reinstall robustai or set {ENV_CONFIG_DIR}"
    )


def _source_tree_configs() -> Path | None:
    """``<checkout>/configs`` when robustai is imported from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    return root / "configs" if (root / "pyproject.toml").is_file() else None


def _installed_configs() -> Path | None:
    """The configs installed inside the package, when they are plain files Hydra can read."""
    path = resources.files("robustai") / "configs"
    return path if isinstance(path, Path) else None


def fail(command: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One line on stderr, then exit: the contract for bad input. The line names the value at
    fault, which may be a secret (``trainer.lr=${oc.env:TRACKER_TOKEN}`` resolved): the values
    of secret-looking environment variables, URL passwords and secret-looking ``key=value``
    pairs (``?password=...`` inside a path) are cut out of it."""
    from robustai.security.redact import scrub_message, secret_env_values

    message = scrub_message(message, secret_env_values())
    sys.stderr.write(f"robustai {command}: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def unechoed(message: str) -> str:
    """argparse's error ``message`` without what was typed: a password or token given by mistake
    on the command line (``--password=...``, a stray argument) must not reach the terminal's
    scrollback or a CI log again."""
    if message.startswith("unrecognized arguments"):
        return "unrecognized arguments (see --help)"
    message = re.sub(r": ignored explicit argument '.*'$", ": takes no value", message)
    return re.sub(r"invalid choice: '.*?'", "invalid choice", message)
