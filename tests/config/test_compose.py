"""Every option of every config group composes, validates and builds its objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustai.cli.common import config_dir
from robustai.cli.pipeline import make_attack, make_data, make_model, make_optimizer
from robustai.cli.preflight import preflight
from robustai.config import TrainConfig, to_train_config
from robustai.data import DataBundle
from robustai.errors import DataError
from robustai.training import build_schedule

CONFIGS = config_dir()
GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONFIGS / g).glob("*.yaml"))]
#: what an option is used with: an L2 suite evaluates a run that trains against an L2 attack
COMPANIONS = {
    ("evaluator", "quick_l2"): ["attack=pgd", "attack.norm=l2"],
    ("evaluator", "standard_l2"): ["attack=pgd", "attack.norm=l2"],
}
# Data sets that torchvision would have to download: checked for their offline message instead.
DOWNLOADED = {"mnist", "fashion_mnist", "cifar10"}


def compose(overrides: list[str]) -> TrainConfig:
    """The CLI's own pre-flight path: Hydra composition, then schema and range checks."""
    out: list[TrainConfig] = []
    preflight(CONFIGS, "train", overrides, lambda cfg: out.append(to_train_config(cfg)))
    # A search (hparams_search=...) also checks each value of its search space after the base run.
    assert len(out) == 1 or any(o.startswith("hparams_search=") for o in overrides)
    return out[0]


def build_all(cfg: TrainConfig, data: DataBundle) -> None:
    model = make_model(cfg, data)
    x, y = data.train.x[:4], data.train.y[:4]
    assert model(x).shape == (len(x), data.num_classes)
    if cfg.attack.name != "none":
        attack = make_attack(cfg.attack)
        x_adv = attack(model, x, y)
        assert (x_adv - x).abs().max() <= attack.eps + 1e-6
    for a in cfg.evaluator.attacks:
        for eps in cfg.evaluator.eps:
            assert make_attack(a, eps).eps == pytest.approx(eps)
    opt = make_optimizer(cfg, model)
    build_schedule(cfg.trainer.schedule, opt, 10, cfg.trainer.warmup_fraction)


def test_groups_are_the_documented_ones() -> None:
    expected = {"attack", "data", "evaluator", "experiment", "logger", "model", "paths", "trainer"}
    assert expected <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(
    group: str, option: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    overrides = [f"{group}={option}", *COMPANIONS.get((group, option), [])]
    data_name = option if group == "data" else None
    if group == "experiment":
        data_name = {"mnist_idx_fgsm_rs": "idx"}.get(option, "downloaded")
    if data_name == "idx":  # only these options need the MNIST fixture (and skip without it)
        overrides.append(f"data.root={request.getfixturevalue('mnist_idx_dir')}")
    elif data_name in DOWNLOADED or data_name == "downloaded":
        overrides.append(f"data.root={tmp_path}")
    cfg = compose(overrides)
    if group != "experiment":
        assert cfg.data.name == (option if group == "data" else "digits")
    if data_name in DOWNLOADED or data_name == "downloaded":
        # Offline: the data set is absent, and the message says where and which flag fetches it.
        with pytest.raises(DataError, match=r"data\.download=true"):
            make_data(cfg)
        shape = (3, 32, 32) if cfg.data.name == "cifar10" else (1, 28, 28)
        data = _fake_bundle(cfg, shape)
    else:
        cfg.data.train_size, cfg.data.eval_size = 64, 32
        data = make_data(cfg)
    build_all(cfg, data)


def _fake_bundle(cfg: TrainConfig, shape: tuple[int, int, int]) -> DataBundle:
    from robustai.data import TensorLoader

    x, y = torch.rand(8, *shape), torch.arange(8) % 10
    return DataBundle(
        name=cfg.data.name,
        train=TensorLoader(x, y, 4),
        eval=TensorLoader(x, y, 4),
        input_shape=shape,
        num_classes=10,
        mean=(0.5,) * shape[0],
        std=(0.25,) * shape[0],
    )


def test_fractions_are_accepted_for_eps_and_step_sizes() -> None:
    cfg = compose(
        ["attack=pgd", "attack.eps=8/255", "attack.alpha=2/255", "evaluator.eps=[4/255,8/255]"]
    )
    assert cfg.attack.eps == pytest.approx(8 / 255)
    assert cfg.attack.alpha == pytest.approx(2 / 255)
    assert cfg.evaluator.eps == pytest.approx([4 / 255, 8 / 255])


def test_evaluation_follows_the_training_eps() -> None:
    cfg = compose(["attack.eps=0.05"])
    assert cfg.evaluator.eps == [pytest.approx(0.05)]


def test_defaults_are_the_documented_default_experiment() -> None:
    cfg = compose([])
    assert (cfg.data.name, cfg.model.name, cfg.attack.name) == ("digits", "small_cnn", "fgsm")
    assert cfg.attack.random_start is True
    assert cfg.attack.eps == pytest.approx(0.1)
    assert [a.name for a in cfg.evaluator.attacks] == ["fgsm", "pgd"]
    assert cfg.evaluator.attacks[1].steps == 20


def test_ddp_batch_of_one_is_refused_except_for_dp_sgd() -> None:
    """DP-SGD's batch size is the expected size of Poisson batches, which any number of
    processes can share (the launch-time check allows it too); other runs split the global
    batch among the processes."""
    from robustai.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.batch_size=1 must be at least the number of"):
        compose(["trainer=ddp", "data.batch_size=1"])
    cfg = compose(["trainer=ddp", "privacy=dpsgd", "data.batch_size=1"])
    assert (cfg.trainer.distributed, cfg.data.batch_size) == ("ddp", 1)


def test_the_l2_suites_are_the_l_inf_ones_in_l2() -> None:
    """AutoAttack's L2 version has the same attacks as its L-inf one (APGD-CE, APGD-T, Square),
    each in L2 with the same settings; so do standard_l2 and quick_l2."""
    for suite in ("quick", "standard"):
        linf = compose([f"evaluator={suite}"]).evaluator.attacks
        l2 = compose([f"evaluator={suite}_l2", *COMPANIONS[("evaluator", f"{suite}_l2")]])
        l2_attacks = l2.evaluator.attacks
        assert len(l2_attacks) == len(linf) - (suite == "quick")  # quick_l2 has no FGSM
        for a in l2_attacks:
            ref = next(b for b in linf if b.name == a.name)
            assert make_attack(a, 1.0).label == make_attack(ref, 0.1).label + "_l2"
            assert make_attack(a, 1.0).norm == "l2"
            assert {k: v for k, v in vars(a).items() if k != "norm"} == {
                k: v for k, v in vars(ref).items() if k != "norm"
            }


def test_settings_the_run_does_not_read_are_named_for_its_log() -> None:
    """Two free runs with attack.alpha=0.5 and 0.01 gave the same weights, without a word, and
    recorded alpha as if applied; warned about (not refused: an experiment may set them for its
    own objective, a sweep for the members that read them)."""
    import dataclasses

    from robustai.cli.pipeline import key_hparams
    from robustai.config import TrainConfig
    from robustai.config.validate import unused_settings

    cfg = TrainConfig()
    assert unused_settings(cfg) == []

    def with_(trainer: dict | None = None, attack: dict | None = None) -> TrainConfig:
        return dataclasses.replace(
            cfg,
            trainer=dataclasses.replace(cfg.trainer, **(trainer or {})),
            attack=dataclasses.replace(cfg.attack, **(attack or {})),
        )

    free = with_({"objective": "free"}, {"alpha": 0.5, "model_mode": "train"})
    (line,) = unused_settings(free)
    assert line.startswith("attack.alpha=0.5, attack.model_mode=train: trainer.objective=free")
    assert unused_settings(with_({"objective": "free"}, {"name": "pgd", "steps": 10}))[0]
    assert unused_settings(with_({"objective": "free"})) == []  # fgsm_rs's own random start
    assert "attack.alpha" not in key_hparams(free) and key_hparams(free)["trainer.replays"] == 4
    assert "attack.alpha" in key_hparams(with_(attack={"alpha": 0.5}))
    for trainer, attack, start in (
        ({"replays": 8}, None, "trainer.replays=8: not used"),
        ({"schedule": "constant", "warmup_fraction": 0.4}, None, "trainer.warmup_fraction=0.4"),
        ({"eps_warmup_epochs": 0.5}, {"name": "none"}, "trainer.eps_warmup_epochs=0.5: not"),
        ({"objective": "free"}, {"name": "none"}, "trainer.objective=free with attack=none"),
    ):
        (line,) = unused_settings(with_(trainer, attack))
        assert line.startswith(start), line


def test_a_run_logs_the_settings_it_does_not_read(tmp_path: Path) -> None:
    from inprocess import robustai

    run = tmp_path / "run"
    proc = robustai(
        "train", "data=digits", "trainer.epochs=1", "trainer.replays=8", "trainer.threads=1",
        "evaluator=quick", "evaluator.samples=20", "evaluator.sanity.enabled=false",
        "evaluator.curve.enabled=false", "logger=none", f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "[WARNING] - trainer.replays=8: not used; only trainer.objective=free replays" in log
