"""An Optuna search that ends part-way leaves no trial in state RUNNING.

The Optuna sweeper asks its study for a batch of trials, launches them and tells the study how
each ended. A search stopped before it tells (Ctrl-C or SIGTERM: the interrupted member, or the
launching process of a joblib sweep, exits) left the batch's trials RUNNING, in a database study
for good: a later look at the study, or a search that goes on with it, counted them as running,
even after the interrupted trial was resumed alone as its line said. While a search runs, this
records the trials it asks for in this process; when it ends by an exception, those still
running are told FAIL, which is what Optuna records for a trial that did not finish.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class UnfinishedTrials(Callback):
    """Hydra callback: records the trials an Optuna search of this process asks for. The
    command calls :func:`fail_unfinished` when the sweep ends by an exception, and
    :func:`release` in any case."""

    asked: ClassVar[list[tuple[Any, Any]]] = []  # (study, trial), in the order asked
    _original: ClassVar[Any] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        release()
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        if "optuna" not in sweeper.lower():
            return
        from optuna.study import Study

        original = Study.ask

        def ask(study: Study, *args: Any, **kw: Any) -> Any:
            trial = original(study, *args, **kw)
            UnfinishedTrials.asked.append((study, trial))
            return trial

        UnfinishedTrials._original = original
        Study.ask = ask  # type: ignore[method-assign]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release()


def fail_unfinished() -> None:
    """Tell FAIL to each trial this process's search asked for that is still RUNNING."""
    if not UnfinishedTrials.asked:
        return
    from optuna.trial import TrialState

    for study, trial in UnfinishedTrials.asked:
        try:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if any(t.number == trial.number for t in running):
                study.tell(trial, state=TrialState.FAIL)
                log.info(
                    "trial %d of study %s: FAIL (did not finish)", trial.number, study.study_name
                )
        except Exception as e:  # the database may be what failed; the exit must go on
            log.warning("trial %d left RUNNING in the study: %s", trial.number, e)
    UnfinishedTrials.asked = []


def release() -> None:
    """Stop recording (the search ended); Optuna's own ``Study.ask`` again."""
    UnfinishedTrials.asked = []
    if UnfinishedTrials._original is not None:
        from optuna.study import Study

        Study.ask = UnfinishedTrials._original  # type: ignore[method-assign]
        UnfinishedTrials._original = None
