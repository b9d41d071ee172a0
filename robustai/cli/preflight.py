"""Compose and validate a Hydra config before Hydra runs, to report bad input in one line.

Hydra prints multi-line errors and exits 1 for composition problems; robustai promises one line
and exit status 2 for any bad input, before any work starts.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robustai.errors import ConfigError

# Hydra's own flags; with these the user wants Hydra's output, not a run.
_INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
    "-sc",
}
_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
_MAX_COMBINATIONS = 64


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags, overrides) of a command line."""
    flags, overrides = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in _FLAGS_WITH_VALUE and "=" not in arg:
                nxt = next(it, None)
                if nxt is not None and not (arg in ("--cfg", "-c", "--info", "-i") and "=" in nxt):
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return flags, overrides


def preflight(
    config_dir: Path, config_name: str, argv: Sequence[str], check: Callable[[Any], object]
) -> None:
    """Raise :class:`ConfigError` unless every run the command line asks for composes and passes
    ``check`` (which receives the composed DictConfig)."""
    flags, overrides = split_args(argv)
    if _INFO_FLAGS.intersection(f.split("=")[0] for f in flags):
        return
    if any(
        f.split("=")[0] in ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
        for f in flags
    ):
        return  # another primary config: let Hydra report on it
    multirun = "-m" in flags or "--multirun" in flags
    user = [o for o in overrides if not re.match(r"^[+~]*hydra[./]", o)]
    for combo in _expand(user, multirun):
        _compose_and_check(config_dir, config_name, combo, check)


def _expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """One override list per run: sweeps (a=1,2) are expanded so that every value is checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(f"bad override: {_first_line(e)}") from e
    choices: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override():
            if not multirun:
                raise ConfigError(
                    f"'{o.input_line}' lists several values: add -m to sweep over them"
                )
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # interval() and other search spaces are checked by the sweeper
                continue
            prefix = o.get_key_element()
            choices.append([f"{prefix}={v}" for v in values])
        else:
            choices.append([o.input_line])
    combos = [list(c) for c in itertools.islice(itertools.product(*choices), _MAX_COMBINATIONS)]
    return combos or [[]]


def _compose_and_check(
    config_dir: Path, config_name: str, overrides: list[str], check: Callable[[Any], object]
) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            try:
                cfg = compose(
                    config_name=config_name, overrides=overrides, return_hydra_config=True
                )
            except MissingConfigException as e:
                raise ConfigError(_missing_option(e, overrides)) from e
            except ConfigCompositionException as e:
                raise ConfigError(_composition_error(e, config_name, overrides)) from e
            except OmegaConfBaseException as e:
                raise ConfigError(_first_line(e)) from e
            from hydra.core.hydra_config import HydraConfig

            HydraConfig.instance().set_config(cfg)
            check(cfg)
    finally:
        GlobalHydra.instance().clear()


def _missing_option(e: Exception, overrides: list[str]) -> str:
    options = list(getattr(e, "options", None) or [])
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    group, _, choice = missing.rpartition("/")
    if group and options:
        hint = difflib.get_close_matches(choice, options, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        return f"{group}={choice}: unknown option{maybe}; valid: {', '.join(sorted(options))}"
    return _first_line(e)


def _composition_error(e: Exception, config_name: str, overrides: list[str]) -> str:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return _unknown_key(m.group(1), config_name, overrides)
    cause = e.__cause__
    if cause is not None and str(cause) and _first_line(cause) not in text:
        return f"{_first_line(e)}: {_first_line(cause)}"
    return _first_line(e)


def _unknown_key(key: str, config_name: str, overrides: list[str]) -> str:
    """Name the valid keys at the misspelt key's level, composed without the bad override."""
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    valid: list[str] = []
    try:
        node = compose(config_name=config_name, overrides=rest)
        node = OmegaConf.select(node, parent) if parent else node
        if isinstance(node, DictConfig):
            valid = [str(k) for k in node]
    except Exception:  # best effort: the message stays useful without the list
        valid = []
    hint = difflib.get_close_matches(leaf, valid, n=1)
    maybe = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    where = f" of {parent}" if parent else ""
    listing = f"; valid keys{where}: {', '.join(valid)}" if valid else ""
    return f"{key}: no such key{maybe}{listing}"


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
