"""A sweep member's status, and a Hydra callback that tallies them when the sweep ends.

A member that fails writes ``status.json`` (``{"status": "failed", ...}``) into its run folder
and the sweep goes on with the next member; a finished member has ``metrics.json``. When the
sweep is over, :class:`SweepStatus` counts the failures so that ``robustai train -m`` can exit
non-zero. It runs in the launching process whatever the launcher (members may run elsewhere),
and it reads the sweep folder rather than the members' return values, which not every
launcher and sweeper pass back.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.json"
WEIGHTS_FILE = "weights.safetensors"
OK, FAILED, INCOMPLETE = "ok", "failed", "incomplete"


def record_failure(run_dir: Path, error: BaseException) -> None:
    """Write ``status.json`` saying why the member failed (the traceback goes to the log). The
    values of secret variables are cut out, as from every one-line error: a value refused in
    the config may have been resolved from one."""
    from robustai.fileio import write_json
    from robustai.security.redact import scrub_values, secret_env_values

    secrets = secret_env_values()
    message = scrub_values(str(error), secrets)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / STATUS_FILE,
        {
            "status": FAILED,
            "error": message.splitlines()[0] if message.strip() else type(error).__name__,
            "error_type": type(error).__name__,
            "traceback": scrub_values("".join(traceback.format_exception(error)), secrets)[-4000:],
        },
    )


def clear_failure(run_dir: Path) -> None:
    """A run starting in ``run_dir`` (a failed member resumed or run again in place) makes the
    failure record of an earlier attempt stale: remove it, so the folder says what this run did."""
    (run_dir / STATUS_FILE).unlink(missing_ok=True)


def result_file(run_dir: Path) -> Path | None:
    """What a finished run leaves: ``metrics.json`` (``robustai train``, written last), or
    ``report.json`` without weights (``robustai evaluate``, which saves no model; a training run
    writes its weights before its report)."""
    if (run_dir / METRICS_FILE).is_file():
        return run_dir / METRICS_FILE
    if (run_dir / REPORT_FILE).is_file() and not (run_dir / WEIGHTS_FILE).exists():
        return run_dir / REPORT_FILE
    return None


def member_status(run_dir: Path) -> tuple[str, str]:
    """(status, error): ``ok`` with a result file (:func:`result_file`), ``failed`` with a
    failure record, else ``incomplete`` (still running, or killed before it could say)."""
    status_file = run_dir / STATUS_FILE
    if status_file.is_file():
        try:
            record = json.loads(status_file.read_text())
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):  # valid JSON, but not the record robustai writes
            record = {"status": FAILED, "error": f"unreadable {STATUS_FILE}: not an object"}
        if record.get("status") == FAILED:
            return FAILED, str(record.get("error", ""))
    if result_file(run_dir) is not None:
        return OK, ""
    return INCOMPLETE, ""


def find_members(root: Path) -> list[Path]:
    """Run folders (those with a ``.hydra/`` record) at or below ``root``, in job order."""
    found = {p.parent.parent for p in root.glob("**/.hydra/config.yaml")}
    found |= {p.parent for p in root.glob("**/" + STATUS_FILE)}
    members = [p for p in found if ".submitit" not in p.relative_to(root).parts]
    return sorted(members, key=lambda p: _natural_key(p.relative_to(root).parts))


def _natural_key(parts: tuple[str, ...]) -> list[tuple[int, Any]]:
    return [(0, int(s)) if s.isdigit() else (1, s) for s in parts]


@dataclass
class SweepOutcome:
    sweep_dir: Path
    members: int = 0
    failed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


# The files a member's run (re)writes: one that changed since the sweep started ran in it.
_TRACE_FILES = (".hydra/config.yaml", STATUS_FILE, METRICS_FILE, REPORT_FILE)
Snapshot = dict[str, tuple[tuple[int, int] | None, ...]]


def snapshot(sweep_dir: Path) -> Snapshot:
    """Each run folder already under ``sweep_dir`` with the (mtime, size) of its record files."""
    if not sweep_dir.is_dir():
        return {}
    out: Snapshot = {}
    for member in find_members(sweep_dir):
        stamps = []
        for name in _TRACE_FILES:
            try:
                st = (member / name).stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        out[str(member.relative_to(sweep_dir))] = tuple(stamps)
    return out


def tally(sweep_dir: Path, before: Snapshot | None = None) -> SweepOutcome:
    """The members of the sweep folder ``sweep_dir`` and which of them failed or are incomplete.

    With ``before`` (a :func:`snapshot` taken when the sweep started), run folders it left
    untouched are not counted: runs of an earlier sweep in the same folder (a failed member 2
    that this sweep, without the bad value, never ran again) are not this sweep's failures."""
    outcome = SweepOutcome(sweep_dir)
    now = snapshot(sweep_dir) if before else {}
    for member in find_members(sweep_dir) if sweep_dir.is_dir() else []:
        name = str(member.relative_to(sweep_dir))
        if before and name in before and now.get(name) == before[name]:
            continue
        outcome.members += 1
        status, _ = member_status(member)
        if status == FAILED:
            outcome.failed.append(name)
        elif status == INCOMPLETE:
            outcome.incomplete.append(name)
        else:
            outcome.finished.append(name)
    return outcome


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks``): counts failed members at the end of a sweep."""

    last: ClassVar[SweepOutcome | None] = None
    # The folder of the sweep this process started last: a sweeper that raises (Optuna's, when
    # no trial completed) ends the sweep without on_multirun_end, and the caller tallies it.
    started: ClassVar[Path | None] = None
    # The run folders already in that folder when it started, and their record files' stamps.
    before: ClassVar[Snapshot] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepStatus.last = None
        # Resolved now, on the sweep's own config: the same folder the launcher writes to.
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        SweepStatus.started = self.sweep_dir
        SweepStatus.before = snapshot(self.sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = getattr(self, "sweep_dir", None) or Path(str(config.hydra.sweep.dir))
        outcome = tally(sweep_dir, SweepStatus.before)
        SweepStatus.last = outcome
        log.info(
            "sweep done: %d members, %d failed; compare them with: robustai summarize %s",
            outcome.members,
            len(outcome.failed),
            sweep_dir,
        )
