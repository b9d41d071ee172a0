"""What a config may make Hydra (and the logging module it configures) import and call."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig, OmegaConf

from robustai.config.validate import check_targets
from robustai.errors import ConfigError

HYDRA_CALLBACKS = {
    "sweep_signals": {"_target_": "robustai.cli.sweep_signals.SweepSignals"},
    "run_lock": {"_target_": "robustai.cli.run_lock.RunLock"},
    "sweep_status": {"_target_": "robustai.cli.sweep_status.SweepStatus"},
    "unfinished_trials": {"_target_": "robustai.cli.optuna_trials.UnfinishedTrials"},
    "redaction": {
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
        ({"handlers": {"h": {"class": "logging.os.system"}}}, "handlers.h.class=logging.os"),
        ({"handlers": {"h": {"()": ["os.mkdir"]}}}, "handlers.h.()=['os.mkdir']: not allowed"),
        ({"root": {"handlers": ["ext://antigravity"]}}, "ext://antigravity: not allowed"),
        # a function under logging: fileConfig evaluates the file it reads
        ({"formatters": {"f": {"()": "logging.config.fileConfig"}}}, "f.()=logging.config"),
        # handlers that send the records elsewhere
        ({"handlers": {"h": {"class": "logging.handlers.SocketHandler"}}}, "SocketHandler"),
        # a handler appends the text its format chooses to its file: code in ~/.profile
        (
            {"handlers": {"h": {"class": "logging.FileHandler", "filename": "/x/.profile"}}},
            "handlers.h.filename=/x/.profile: not allowed; a log handler's file must be a path",
        ),
        (
            {"handlers": {"h": {"filename": "${hydra.runtime.output_dir}/../../.bashrc"}}},
            "handlers.h.filename=${hydra.runtime.output_dir}/../../.bashrc: not allowed",
        ),
        # what resolves only when the job starts could become a handler no check has seen
        (
            {"handlers": {"h": "${oc.select:x,{class: os.system}}${hydra.runtime.output_dir}"}},
            "handlers.h=${oc.select:",
        ),
        (
            {"handlers": {"h": {"class": "logging.StreamHandler", "stream": "${hydra.job.id}"}}},
            "handlers.h.stream=${hydra.job.id}: not allowed; a logging config is checked",
        ),
        # dictConfig sets the "." attributes of what it built: another file for the handler
        (
            {"handlers": {"h": {"filename": "x.log", ".": {"baseFilename": "/x/.profile"}}}},
            "handlers.h..: not allowed",
        ),
        # and turns "cfg://..." into another value of the logging config
        (
            {"t": {"log": "/x/.zshrc"}, "handlers": {"h": {"filename": "cfg://t.log"}}},
            "handlers.h.filename=cfg://t.log: not allowed",
        ),
        (
            {"handlers": {"h": {"filename": "cfg://${hydra.job.name}.log"}}},
            "handlers.h.filename=cfg://${hydra.job.name}.log: not allowed",
        ),
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


@pytest.mark.parametrize(
    "value",
    [
        "${oc.create:{_target_: os.mkdir, _args_: [${hydra.runtime.output_dir}]}}",
        '${oc.decode:"{_target_: os.mkdir, path: ${hydra.job.num}}"}',
        "${oc.select:missing,{_target_: os.mkdir, path: ${hydra.job.id}}}",
        # a resolver named by an interpolation: ${n} is oc.create
        "${${n}:{_target_: os.mkdir, path: ${hydra.job.id}}}",
    ],
)
def test_a_node_built_from_a_value_set_at_job_start_is_refused(value: str) -> None:
    """A value that refers to what Hydra sets only when the job starts did not resolve in the
    pre-flight and was left out of the check; a resolver that builds a node from it then built
    a target (or a logging handler) at job start that nothing had checked."""
    for where in ("hydra.callbacks.x", "hydra.job_logging.handlers.x"):
        cfg = OmegaConf.create({"n": "oc.create", **_hydra()})
        OmegaConf.update(cfg, where, value, force_add=True)
        with pytest.raises(ConfigError, match="not allowed") as e:
            check_targets(cfg)
        assert f"{where}=${{" in str(e.value)


def test_hydra_s_own_logging_configs_pass() -> None:
    """Hydra's job_logging default (its log file in the run folder, named when the job starts)
    and hydra_debug (a file in the working folder), as Hydra ships them."""
    from pathlib import Path

    import hydra

    conf = Path(hydra.__file__).parent / "conf" / "hydra"
    for name in ("job_logging/default", "job_logging/stdout", "hydra_logging/hydra_debug"):
        logging = OmegaConf.load(conf / f"{name}.yaml")
        cfg = OmegaConf.create(_hydra(job_logging=logging, hydra_logging=logging))
        check_targets(cfg)
        check_targets(cfg, resolve=False)
    # a log file named by what Hydra sets at job start
    for name in ("${hydra.job.override_dirname}", "${now:%H-%M}", "${hydra:runtime.output_dir}"):
        logging = {"handlers": {"f": {"class": "logging.FileHandler", "filename": f"{name}.log"}}}
        check_targets(OmegaConf.create(_hydra(job_logging=logging)))


def _file_logging(filename: str, **top: object) -> DictConfig:
    handler = {"class": "logging.FileHandler", "filename": filename}
    return OmegaConf.create({**top, **_hydra(job_logging={"handlers": {"f": handler}})})


@pytest.mark.parametrize(
    "filename",
    [
        "${hydra.runtime.output_dir}/${name}.log",
        "${hydra.runtime.output_dir}/${trainer.seed}-${hydra.job.name}.log",
        "${hydra.runtime.output_dir}/${oc.env:HOME}.log",
    ],
)
def test_a_job_time_log_file_may_use_the_configs_own_values(filename: str) -> None:
    """The run's name or seed beside the run folder: resolved now, the job's values blank."""
    check_targets(_file_logging(filename, name="run", trainer={"seed": 3}))


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        # the config's part of the name is checked as the job will see it
        ("${name}${hydra.runtime.output_dir}.log", "not allowed; a log handler's file must be"),
        ("${hydra.runtime.output_dir}/${name}", "not allowed; a log handler's file must be"),
        ("${hydra.runtime.output_dir}/${oc.select:name,x}.log", "calls oc.select"),
        (
            "${hydra.runtime.output_dir}/${oc.env:ROBUSTAI_SURELY_UNSET_VARIABLE}.log",
            "environment variable ROBUSTAI_SURELY_UNSET_VARIABLE is not set; export it",
        ),
        ("${hydra.runtime.output_dir}/${nokey}.log", "it refers to nokey, which is not set"),
    ],
)
def test_a_job_time_log_file_s_other_values_must_resolve_to_a_log_file(
    filename: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        check_targets(_file_logging(filename, name="cfg://t"))
    assert str(e.value).startswith(f"hydra.job_logging.handlers.f.filename={filename}: ")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (
            "hydra.job_logging.root.level",
            "${oc.env:ROBUSTAI_SURELY_UNSET_VARIABLE}",
            "environment variable ROBUSTAI_SURELY_UNSET_VARIABLE is not set; export it",
        ),
        ("hydra.job_logging.root.level", "${log_level}", "it refers to log_level, which is not"),
        (
            "hydra.callbacks.x",
            "${oc.decode:${oc.env:ROBUSTAI_SURELY_UNSET_VARIABLE}}",
            "environment variable ROBUSTAI_SURELY_UNSET_VARIABLE is not set; export it",
        ),
    ],
)
def test_an_unset_variable_or_key_is_named_not_blamed_on_the_job(
    where: str, value: str, message: str
) -> None:
    """Values refused because they do not resolve say why when the reason is the user's (an
    unset variable, a missing key), not that Hydra sets them at job start."""
    cfg = OmegaConf.create(_hydra())
    OmegaConf.update(cfg, where, value, force_add=True)
    with pytest.raises(ConfigError) as e:
        check_targets(cfg)
    assert str(e.value).startswith(f"{where}={value}: ") and message in str(e.value)
    assert "job starts" not in str(e.value)
