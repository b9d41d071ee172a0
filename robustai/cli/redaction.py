"""A Hydra callback that keeps secrets out of the run folder.

Hydra records every command-line override in plain text (``.hydra/overrides.yaml``, the
``hydra.overrides`` lists and ``hydra.job.override_dirname`` in ``.hydra/hydra.yaml``, a sweep's
``multirun.yaml``). robustai's Hydra config sets ``hydra.output_subdir: null``, so Hydra itself
writes none of these; this callback writes ``.hydra/config.yaml``, ``hydra.yaml`` and
``overrides.yaml`` instead, with secret-looking keys redacted and the values of secret-looking
environment variables (``ROBUSTAI_SIGNING_KEY``, ``*_TOKEN``, ``*_API_KEY``, ...) cut out. Log
records are scrubbed of the same values as they are created; when the job ends, the files of the
run folder are checked once more.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from robustai.fileio import write_text
from robustai.security.redact import (
    REDACTED,
    collect_secret_values,
    install_log_scrubber,
    is_secret_key,
    redact_override,
    redact_tree,
    scrub_text,
    secret_env_values,
)

log = logging.getLogger(__name__)

_TEXT_SUFFIXES = {".json", ".yaml", ".yml", ".log", ".md", ".txt", ".csv"}
_MAX_SCAN_BYTES = 512 * 1024 * 1024


def _container(node: Any, resolve: bool) -> Any:
    try:
        return OmegaConf.to_container(node, resolve=resolve)
    except Exception:  # an interpolation that cannot resolve here: use the raw form
        return OmegaConf.to_container(node, resolve=False)


def secret_values(config: DictConfig) -> set[str]:
    """Everything that counts as a secret value for this job: values under secret-looking keys
    (resolved, so ``${oc.env:...}`` references count too), in secret-looking overrides, and of
    secret-looking environment variables (after ``hydra.job.env_set``)."""
    values = collect_secret_values(_container(config, resolve=True))
    values |= collect_secret_values(_container(config, resolve=False))
    return values | secret_env_values()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def _yaml(tree: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(tree))


def redact_override_dirname(value: str, item_sep: str, kv_sep: str, values: set[str]) -> str:
    parts = []
    for item in value.split(item_sep):
        key, sep, _ = item.partition(kv_sep)
        parts.append(f"{key}{kv_sep}{REDACTED}" if sep and is_secret_key(key) else item)
    return scrub_text(item_sep.join(parts), values, pairs=False)


def write_redacted_hydra_files(config: DictConfig, folder: Path, values: set[str]) -> None:
    """``config.yaml`` (the job's config), ``hydra.yaml`` and ``overrides.yaml``, redacted."""
    task = {k: v for k, v in _container(config, resolve=False).items() if k != "hydra"}
    hydra = redact_tree(_container(config.hydra, resolve=False), values)
    job = hydra.get("job", {})
    if isinstance(job.get("override_dirname"), str):
        seps = job.get("config", {}).get("override_dirname", {})
        job["override_dirname"] = redact_override_dirname(
            job["override_dirname"], seps.get("item_sep", ","), seps.get("kv_sep", "="), values
        )
    overrides = [redact_override(str(o), values) for o in config.hydra.overrides.task]
    _write_text(folder / "config.yaml", _yaml(redact_tree(task, values)))
    _write_text(folder / "hydra.yaml", _yaml({"hydra": hydra}))
    _write_text(folder / "overrides.yaml", _yaml(overrides))


def redact_yaml_file(path: Path, values: set[str]) -> None:
    """Rewrite a YAML file Hydra or a sweeper wrote (e.g. ``multirun.yaml``), redacted."""
    if not path.is_file():
        return
    try:
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # not YAML after all: fall back to plain-text scrubbing
        text = path.read_text(encoding="utf-8", errors="replace")
        clean = scrub_text(text, values)
        if clean != text:
            _write_text(path, clean)
        return
    clean_tree = redact_tree(tree, values)
    if clean_tree != tree:
        _write_text(path, _yaml(clean_tree))


def scrub_folder(folder: Path, values: set[str]) -> list[Path]:
    """Cut secret values out of the text files below ``folder``; returns the files that held one.
    A binary file that holds one cannot be repaired and is reported in the log."""
    needles = [v.encode("utf-8") for v in values if len(v) >= 6]
    found: list[Path] = []
    if not needles or not folder.is_dir():
        return found
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            if path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if not any(n in data for n in needles):
            continue
        found.append(path)
        if path.suffix not in _TEXT_SUFFIXES:
            log.error("%s holds a secret value and cannot be redacted; delete it", path)
            continue
        text = data.decode("utf-8", errors="replace")
        clean = _scrub_json(text, values) if path.suffix == ".json" else scrub_text(text, values)
        if clean != text:
            _write_text(path, clean)
            log.warning("removed a secret value from %s (a writer did not redact it)", path.name)
        if any(n in clean.encode("utf-8") for n in needles):
            log.error(
                "%s holds a secret value in a key or number, left as it is (a checkpoint or"
                " metrics file must stay loadable); delete it if that is a secret",
                path,
            )
    return found


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"(?P<key>\s*:)?')


def _scrub_json(text: str, values: set[str]) -> str:
    """``text`` (JSON) with secret values cut out of its string values only: a key or number
    that happens to hold one (a short password that is a common word, a PIN among the digits of
    a timing) is part of the file's structure, and replacing it broke checkpoints on resume."""

    def sub(m: re.Match[str]) -> str:
        if m.group("key"):
            return m.group(0)
        value = json.loads(m.group(0))
        clean = scrub_text(value, values)
        return m.group(0) if clean == value else json.dumps(clean, ensure_ascii=False)

    return _JSON_STRING.sub(sub, text)


class RedactSecrets(Callback):
    """Configured under ``hydra.callbacks`` (see ``configs/hydra/default.yaml``).

    Log records are scrubbed when they are created (:func:`install_log_scrubber`), so whatever
    handlers Hydra configures later, and its launchers' "#0 : <overrides>" lines, are covered.
    """

    def __init__(self, output_subdir: str = ".hydra") -> None:
        self.output_subdir = output_subdir
        self._values: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the secret values it collected: a launcher that runs jobs in other
        processes (submitit, Slurm) pickles its callbacks into files of the sweep folder, and
        each job collects the values again when it starts."""
        return {**self.__dict__, "_values": set()}

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._values |= secret_values(config)
        install_log_scrubber(self._values)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._values |= secret_values(config)
        install_log_scrubber(self._values)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        self._values |= secret_values(config)
        values = set(self._values)
        install_log_scrubber(values)
        hc = config.hydra
        run_dir = Path(str(hc.runtime.output_dir))
        subdir = hc.output_subdir if hc.output_subdir is not None else self.output_subdir
        if subdir:
            write_redacted_hydra_files(config, run_dir / str(subdir), values)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            self._redact_sweep_files(Path(str(hc.sweep.dir)), values)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.runtime.output_dir))
        scrub_folder(run_dir, self._values | secret_env_values())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._values |= secret_values(config)
        self._redact_sweep_files(Path(str(config.hydra.sweep.dir)), set(self._values))

    @staticmethod
    def _redact_sweep_files(sweep_dir: Path, values: set[str]) -> None:
        for path in sorted(sweep_dir.glob("*.yaml")):
            redact_yaml_file(path, values)
