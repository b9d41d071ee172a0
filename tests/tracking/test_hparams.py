"""HParams sessions written into a run folder, read back with TensorBoard's own reader."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata
from torch.utils.tensorboard import SummaryWriter

from robustai.tracking.hparams import (
    eval_metrics,
    flat_metrics,
    known_metric_name,
    log_hparams,
    metric_value,
)

METRICS = {
    "clean_acc": 0.9,
    "robust_acc": {"fgsm@0.1": 0.6, "pgd20@0.1": 0.5, "pgd20@0.2": float("nan")},
    "worst_case_acc": {"0.1": 0.45, "0.2": 0.2},
    "train_seconds": 3.0,
    "privacy": {"epsilon": 2.5, "delta": 1e-5},
    "seed": 7,
    "stopped_early": False,
    "device": "cpu",
}


def test_flat_names_and_objective_values() -> None:
    flat = flat_metrics(METRICS)
    assert flat["robust_acc/pgd20@0.1"] == 0.5 and flat["worst_case_acc/0.2"] == 0.2
    assert flat["privacy/epsilon"] == 2.5
    assert "seed" not in flat and "stopped_early" not in flat and "device" not in flat
    assert metric_value(METRICS, "worst_case_acc") == 0.45  # the first eps
    assert metric_value(METRICS, "clean_acc") == 0.9
    assert metric_value({**METRICS, "privacy": None}, "privacy/epsilon") is None
    assert metric_value(METRICS, "robust_acc/apgd@0.1") is None
    assert known_metric_name("robust_acc/anything@1") and known_metric_name("worst_case_acc")
    assert not known_metric_name("robust_acc") and not known_metric_name("accuracy")
    tags = eval_metrics(METRICS)
    assert "eval/robust_acc/pgd20@0.2" not in tags  # NaN (empty split) is not a result
    assert tags["eval/privacy/epsilon"] == 2.5 and "eval/train_seconds" not in tags
    assert tags["eval/privacy/delta"] == 1e-5
    # DP-SGD's bookkeeping is no result column (noise_multiplier is a setting, an hparam)
    dp = {**METRICS, "privacy": {"epsilon": 2.5, "delta": 1e-5, "noise_multiplier": 1.1,
                                 "steps": 46, "sample_rate": 0.04}}  # fmt: skip
    assert {t for t in eval_metrics(dp) if t.startswith("eval/privacy/")} == {
        "eval/privacy/epsilon",
        "eval/privacy/delta",
    }
    # the first eps's worst case under one name: members of a sweep over eps (whose per-eps
    # tags differ) share this column, the default objective of a search
    assert tags["eval/worst_case_acc"] == 0.45
    other_eps = {**METRICS, "worst_case_acc": {"0.3": 0.1}}
    assert eval_metrics(other_eps)["eval/worst_case_acc"] == 0.1
    assert "eval/worst_case_acc" not in eval_metrics(
        {**METRICS, "worst_case_acc": {"0.1": math.nan}}
    )


def test_hparams_session_round_trips_through_the_event_file(tmp_path: Path) -> None:
    writer = SummaryWriter(log_dir=str(tmp_path))
    writer.add_scalar("eval/clean_acc", 0.9, 3)  # as the run's evaluation logs it
    hparams = {
        "trainer.lr": 0.05,
        "trainer.epochs": 3,
        "attack.random_start": True,
        "data": "synthetic",
        "attack.alpha": None,  # unset: left out
        "evaluator.eps": [0.1, 0.2],
    }
    log_hparams(writer, hparams, eval_metrics(METRICS), 3, already_logged={"eval/clean_acc"})
    writer.close()
    # One folder, one event file: the session sits next to the run's scalars.
    assert len(list(tmp_path.iterdir())) == 1

    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hp = start.hparams
    assert hp["trainer.lr"].number_value == pytest.approx(0.05)
    assert hp["trainer.epochs"].number_value == 3
    assert hp["attack.random_start"].bool_value is True
    assert hp["data"].string_value == "synthetic"
    assert hp["evaluator.eps"].string_value == "[0.1, 0.2]"
    assert "attack.alpha" not in hp
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    assert [e.value for e in acc.Scalars("eval/clean_acc")] == [pytest.approx(0.9)]  # not twice
    assert acc.Scalars("eval/worst_case_acc/0.1")[0].value == pytest.approx(0.45)
    assert acc.Scalars("eval/privacy/epsilon")[0].step == 3


@pytest.mark.parametrize(
    ("name", "shown", "absent"),
    [
        ("none", set(), {"privacy.sigma", "privacy.max_grad_norm", "privacy.sensitivity"}),
        ("dpsgd", {"privacy.noise_multiplier", "privacy.max_grad_norm"}, {"privacy.sigma"}),
        ("gaussian_noise", {"privacy.sigma", "privacy.where"}, {"privacy.max_grad_norm"}),
    ],
)
def test_hparams_show_only_the_privacy_settings_the_option_uses(
    name: str, shown: set[str], absent: set[str]
) -> None:
    """Every field of the one privacy schema was logged: a privacy=none run showed clipping
    at 1.0 and noise sigma 0.1 it never applied, misleading a sweep's HParams table."""
    import dataclasses

    from robustai.cli.pipeline import key_hparams
    from robustai.config import TrainConfig

    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy, name=name))
    keys = {k for k in key_hparams(cfg) if k.startswith("privacy.")}
    assert "privacy.name" in keys and shown <= keys and not absent & keys


@pytest.mark.parametrize(("objective", "replays"), [("free", True), ("adversarial", False)])
def test_hparams_show_the_replays_of_free_training(objective: str, replays: bool) -> None:
    """Free training's cost and robustness follow its minibatch replays; other objectives do
    not read them."""
    import dataclasses

    from robustai.cli.pipeline import key_hparams
    from robustai.config import TrainConfig

    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, replays=6))
    shown = key_hparams(cfg, objective=objective)
    assert shown["trainer.objective"] == objective
    assert ("trainer.replays" in shown) is replays
    if replays:
        assert shown["trainer.replays"] == 6
