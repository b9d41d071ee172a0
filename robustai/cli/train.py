"""``robustai train``: the Hydra app over ``configs/train.yaml``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustai.cli.common import fail
from robustai.errors import UserError

log = logging.getLogger(__name__)


def _objective(metrics: dict[str, Any]) -> float:
    """What a sweeper maximises by default: the worst-case robust accuracy at the first eps."""
    worst = metrics.get("worst_case_acc") or {}
    return float(next(iter(worst.values()))) if worst else float(metrics["clean_acc"])


def _task(cfg: Any) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from robustai.cli.pipeline import run_train, write_json
    from robustai.config import to_train_config

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    try:
        metrics = run_train(to_train_config(cfg), out_dir)
    except UserError as e:
        if hc.mode == RunMode.MULTIRUN:
            # One bad member must not end the sweep: record it and go on.
            log.error("run failed: %s", e)
            write_json(out_dir / "status.json", {"status": "failed", "error": str(e)})
            return None
        fail("train", str(e))
    return _objective(metrics)


def main(argv: Sequence[str]) -> int:
    import hydra

    from robustai.cli.common import config_dir
    from robustai.cli.preflight import preflight
    from robustai.config import to_train_config

    try:
        cdir = config_dir()
        preflight(cdir, "train", argv, to_train_config)
    except UserError as e:
        fail("train", str(e))
    app = hydra.main(config_path=str(cdir), config_name="train", version_base="1.3")(_task)
    sys.argv = ["robustai train", *argv]
    app()
    return 0
