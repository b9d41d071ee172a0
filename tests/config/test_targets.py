"""What a config may make Hydra (and the logging module it configures) import and call."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from robustai.config.validate import check_targets
from robustai.errors import ConfigError

HYDRA_CALLBACKS = {
    "run_lock": {"_target_": "robustai.cli.run_lock.RunLock"},
    "sweep_status": {"_target_": "robustai.cli.sweep_status.SweepStatus"},
    "redact_secrets": {
        "_target_": "robustai.cli.redaction.RedactSecrets",
        "output_subdir": ".hydra",
    },
}


def _hydra(**hydra: object) -> dict:
    return {"hydra": {"callbacks": HYDRA_CALLBACKS, **hydra}}


def test_the_shipped_callbacks_sweeper_launcher_and_logging_pass() -> None:
    cfg = _hydra(
        sweeper={
            "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
            "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 0},
            "custom_search_space": None,
        },
        launcher={"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
        job_logging={
            "formatters": {"simple": {"format": "%(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
                "file": {"class": "logging.FileHandler", "filename": "x.log", "delay": True},
            },
        },
    )
    check_targets(OmegaConf.create(cfg))
    check_targets(OmegaConf.create(cfg), resolve=False)


@pytest.mark.parametrize(
    ("logging", "message"),
    [
        ({"formatters": {"f": {"()": "os.mkdir", "path": "x"}}}, "formatters.f.()=os.mkdir"),
        ({"filters": {"f": {"()": "builtins.exec"}}}, "filters.f.()=builtins.exec"),
        ({"handlers": {"h": {"class": "subprocess.Popen"}}}, "handlers.h.class=subprocess.Popen"),
        ({"handlers": {"h": {"class": "logging.os.system"}}}, "logging.os is the module os"),
        ({"handlers": {"h": {"()": ["os.mkdir"]}}}, "handlers.h.(): not allowed"),
        ({"root": {"handlers": ["ext://antigravity"]}}, "ext://antigravity: not allowed"),
        # a function under logging: fileConfig evaluates the file it reads
        ({"formatters": {"f": {"()": "logging.config.fileConfig"}}}, "only handler, formatter"),
    ],
)
def test_logging_factories_outside_logging_are_refused(logging: dict, message: str) -> None:
    """logging.config.dictConfig imports and calls the ``()`` factory of any entry and the
    ``class`` of handlers and formatters, and imports what ``ext://`` names: from a config file
    (an experiment, ROBUSTAI_CONFIG_DIR) that ran any code."""
    for key in ("job_logging", "hydra_logging"):
        with pytest.raises(ConfigError, match="not allowed") as e:
            check_targets(OmegaConf.create(_hydra(**{key: logging})))
        assert message in str(e.value)


def test_a_target_inside_an_interpolation_is_checked_once_resolved() -> None:
    """``${oc.create:...}`` and ``${oc.decode:...}`` are strings in the raw config and nodes
    once resolved, which Hydra then instantiates."""
    for value in (
        "${oc.create:{_target_: os.mkdir, _args_: [x]}}",
        '${oc.decode:"{_target_: os.mkdir, path: x}"}',
    ):
        cfg = OmegaConf.create({"hydra": {"callbacks": {"x": value}}})
        check_targets(cfg, resolve=False)  # the raw names: nothing to see yet
        with pytest.raises(ConfigError, match=r"hydra\.callbacks\.x\._target_=os\.mkdir"):
            check_targets(cfg)


def test_a_value_that_does_not_resolve_is_left_to_fail_where_it_is_used() -> None:
    cfg = OmegaConf.create({"a": "${oc.env:ROBUSTAI_SURELY_UNSET_VARIABLE}", **_hydra()})
    check_targets(cfg)
