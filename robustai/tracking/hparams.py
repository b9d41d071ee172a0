"""Hyperparameters and final metrics for TensorBoard's HParams dashboard, and metric names.

A run's results live in metrics.json as nested tables; sweeps, objectives and the HParams
dashboard need them as flat names (``clean_acc``, ``robust_acc/pgd20@0.1``,
``worst_case_acc/0.1``, ``privacy/epsilon``). This module is the one place that defines them.

Each run writes its HParams session into its own folder (not a timestamped subfolder, as
``SummaryWriter.add_hparams`` does), next to its scalars, so pointing TensorBoard at a sweep
folder shows every member as one row of the HParams table. No experiment summary is written:
TensorBoard then derives the columns from all runs together, so members that differ in what
they log still line up.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)

HParamValue = bool | int | float | str

# Top-level numbers of metrics.json that are results (not bookkeeping like seed).
_SCALARS = ("clean_acc", "train_seconds", "images_per_s", "eval_seconds", "wall_seconds", "epochs")
# Tables of metrics.json, flattened as "<table>/<key>".
_TABLES = ("robust_acc", "worst_case_acc", "privacy")
# A table name used alone means its first entry: the evaluator's first eps for worst_case_acc.
_TABLE_ALIASES = ("worst_case_acc",)
# Metrics shown as HParams columns, tagged "eval/<name>" in the run's event file: of the
# privacy table, the guarantee alone (its bookkeeping, such as steps, sample_rate or the noise
# multiplier, made eight more result columns, two of them settings shown as hparams already).
_EVAL_PREFIXES = ("clean_acc", "robust_acc/", "worst_case_acc/", "privacy/epsilon", "privacy/delta")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """metrics.json as ``{name: value}``: ``clean_acc``, ``robust_acc/<attack>@<eps>``,
    ``worst_case_acc/<eps>``, ``privacy/epsilon``, timings; missing or null entries are left out.
    """
    flat: dict[str, float] = {}
    for key in _SCALARS:
        value = _number(metrics.get(key))
        if value is not None:
            flat[key] = value
    for table in _TABLES:
        entries = metrics.get(table)
        if isinstance(entries, Mapping):
            for key, raw in entries.items():
                value = _number(raw)
                if value is not None:
                    flat[f"{table}/{key}"] = value
    return flat


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """The value of one metric name (see :func:`flat_metrics`); ``worst_case_acc`` alone is the
    first eps. None when the run has no such value (e.g. ``privacy/epsilon`` without DP-SGD).
    """
    flat = flat_metrics(metrics)
    if name in flat:
        return flat[name]
    if name in _TABLE_ALIASES:
        entries = metrics.get(name)
        if isinstance(entries, Mapping) and entries:
            return _number(next(iter(entries.values())))
    return None


def better_direction(name: str) -> str | None:
    """How a search should optimize metric ``name``: "maximize" for accuracies and throughput,
    "minimize" for the privacy loss and times; None where either way makes sense (epochs)."""
    table = name.partition("/")[0]
    if name in ("clean_acc", "images_per_s") or table in ("robust_acc", "worst_case_acc"):
        return "maximize"
    if name.endswith("_seconds") or name in ("privacy/epsilon", "privacy/delta"):
        return "minimize"
    return None


def known_metric_name(name: str) -> bool:
    """Whether ``name`` has the shape of a metric name (the keys themselves depend on the run)."""
    if name in _SCALARS or name in _TABLE_ALIASES:
        return True
    table, sep, key = name.partition("/")
    return bool(sep and key) and table in _TABLES


def metric_names_help() -> str:
    return f"{', '.join(_SCALARS)}, {', '.join(_TABLE_ALIASES)}, " + ", ".join(
        f"{t}/<key>" for t in _TABLES
    )


def hparam_value(value: Any) -> HParamValue | None:
    """A value the HParams plugin can show: bool, number or string; None stays unlogged."""
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return str(list(value))
    return str(value)


def eval_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The final results shown as HParams columns, keyed by their TensorBoard tag; with
    ``eval/worst_case_acc``, the first eps's worst case (a search's default objective), which
    the members of a sweep over eps share: their per-eps columns differ from member to member."""
    out = {
        f"eval/{name}": value
        for name, value in flat_metrics(metrics).items()
        if name.startswith(_EVAL_PREFIXES) and not math.isnan(value)
    }
    for alias in _TABLE_ALIASES:
        value = metric_value(metrics, alias)
        if value is not None and not math.isnan(value):
            out[f"eval/{alias}"] = value
    return out


def log_hparams(
    writer: SummaryWriter,
    hparams: Mapping[str, Any],
    metrics: Mapping[str, float],
    step: int,
    already_logged: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Write an HParams session (hyperparameters, then success) into ``writer``'s own folder.

    ``metrics`` maps TensorBoard scalar tags to final values; tags in ``already_logged`` are
    expected to be in the event file already and are not written twice.
    """
    clean = {k: v for k, v in ((k, hparam_value(v)) for k, v in hparams.items()) if v is not None}
    for tag, value in metrics.items():
        if tag not in already_logged:
            writer.add_scalar(tag, value, step)
    file_writer = writer.file_writer
    if file_writer is None:
        raise RuntimeError("log_hparams needs an open SummaryWriter")
    file_writer.add_summary(summary_v2.hparams_pb(clean), step)
    end = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.STATUS_SUCCESS, end_time_secs=time.time()
        )
    )
    file_writer.add_summary(_plugin_summary(metadata.SESSION_END_INFO_TAG, end), step)
    writer.flush()
    log.debug("HParams: %d hyperparameters, %d metrics", len(clean), len(metrics))


def _plugin_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    summary = Summary()
    summary.value.add(
        tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary
