"""Turn a composed config into a checked :class:`TrainConfig`, or one clear :class:`ConfigError`."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError
from omegaconf.nodes import ValueNode

from robustai.argcheck import MAX_L2_EPS, SEED_LIMIT
from robustai.config.schema import (
    AttackConfig,
    DataConfig,
    EvaluateConfig,
    EvaluatorConfig,
    PrivacyConfig,
    TrainConfig,
    TrainerConfig,
)
from robustai.errors import ConfigError

_FRACTION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*/\s*([0-9]*\.?[0-9]+)\s*$")

ATTACK_NONE = "none"
OBJECTIVES = ("standard", "adversarial", "free")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "onecycle", "cyclic")
DISTRIBUTED = ("none", "ddp")
BACKENDS = ("auto", "nccl", "gloo")
NORMS = ("linf", "l2")
MODEL_MODES = ("eval", "train", "keep")
APGD_LOSSES = ("ce", "dlr")


# What Hydra may instantiate from a config: a config is data, and must not be able to run
# arbitrary code (``os.system``, or robustai's own file writers) when Hydra instantiates it.
# Entries ending in "." are packages whose classes may be named; the others are exact names.
ALLOWED_TARGETS = (
    "robustai.cli.run_lock.RunLock",
    "robustai.cli.sweep_status.SweepStatus",
    "robustai.cli.sweep_signals.SweepSignals",
    "robustai.cli.optuna_trials.UnfinishedTrials",
    "robustai.cli.redaction.RedactSecrets",
    "hydra._internal.core_plugins.",
    "hydra_plugins.",
    "optuna.samplers.",
    "optuna.pruners.",
)
# What ``logging.config.dictConfig`` may build from Hydra's ``job_logging`` / ``hydra_logging``
# (handler and formatter ``class``es, ``()`` factories): it calls whatever it is named, and a
# handler writes where it is told, so only these classes, which write to the console or to a
# ``.log`` file (:func:`_check_log_file`), and the formatters and filters Hydra's and
# hydra_colorlog's configs use.
LOGGING_CLASSES = (
    "logging.StreamHandler",
    "logging.FileHandler",
    "logging.NullHandler",
    "colorlog.StreamHandler",
    "logging.Formatter",
    "colorlog.ColoredFormatter",
    "colorlog.TTYColoredFormatter",
    "colorlog.LevelFormatter",
    "logging.Filter",
)
_LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
# Resolvers that return a string (or a value of the config itself, checked where it is), never
# a node built from their arguments, unlike oc.create, oc.decode and oc.select's default.
_PLAIN_RESOLVERS = frozenset({"oc.env", "now", "hydra", "python_version"})
_RESOLVER_CALL = re.compile(r"\$\{\s*([\w.]+)\s*:")
# What a log file's name may refer to before it resolves: values Hydra sets at job start.
_JOB_VALUE = re.compile(r"\$\{(?:hydra[.:](?:runtime|job)\.[\w.]+|now:[^${}]*)\}")
_JOB_KEY = re.compile(r"\$\{hydra[.:]((?:runtime|job)\.[\w.]+)\}")
# dictConfig turns a string "cfg://a.b" into another value of the logging config, and sets a
# handler's attributes from its "." mapping after building it (baseFilename: another file)
_LOGGING_REFERENCE = re.compile(r"^[A-Za-z][\w+.-]*://")
# How OmegaConf says that a value refers to an unset variable or to a key without a value
_UNSET_ENV = re.compile(r"Environment variable '([^']+)' not found")
_NO_VALUE = re.compile(r"(?:Interpolation key '([^']+)' not found|Missing mandatory value: (\S+))")


def check_targets(node: Any, path: str = "", *, resolve: bool = True) -> None:
    """Refuse any ``_target_`` outside :data:`ALLOWED_TARGETS` anywhere in a config tree, the
    Optuna sweeper's ``custom_search_space`` (a function it calls) and logging factories
    outside :data:`LOGGING_CLASSES`. ``resolve=False`` checks the raw names only, importing and
    evaluating nothing (a config typo is then still refused before torch loads); the full check
    resolves every value as Hydra will (an interpolation such as ``${oc.create:{_target_: ...}}``
    becomes a node to instantiate) and follows each name as Hydra imports it
    (:func:`target_refusal`)."""
    raw_hydra = None
    if isinstance(node, DictConfig) and not path and resolve:
        raw_hydra = node.get("hydra")
    if isinstance(node, DictConfig | ListConfig):
        node = _resolved(node, path) if resolve else OmegaConf.to_container(node, resolve=False)
    _walk_targets(node, path, resolve)
    hydra = node.get("hydra") if isinstance(node, dict) and not path else None
    if isinstance(hydra, dict):
        sweeper = hydra.get("sweeper")
        search = sweeper.get("custom_search_space") if isinstance(sweeper, dict) else None
        if search is not None:
            raise ConfigError(
                f"hydra.sweeper.custom_search_space={search}: not allowed; a config may not name"
                " a function to run: give the search space as hydra.sweeper.params"
            )
        for key in ("job_logging", "hydra_logging"):
            _check_logging(hydra.get(key), f"hydra.{key}", resolve)
            if raw_hydra is not None:
                _check_logging_raw(raw_hydra.get(key), f"hydra.{key}")


def _walk_targets(node: Any, path: str, resolve: bool) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                why = target_refusal(str(value), resolve=resolve)
                if why:
                    raise ConfigError(f"{where}={value}: not allowed; {why}")
            _walk_targets(value, where, resolve)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk_targets(value, f"{path}[{i}]", resolve)


def _resolved(node: Any, path: str = "") -> Any:
    """``node`` as plain containers, each value resolved on its own as Hydra resolves it when
    it instantiates that part. A value that does not resolve yet (it refers to what Hydra sets
    only when the job starts, such as ``hydra.runtime.output_dir``) is left out, unless it calls
    a resolver that builds a node from its arguments: that node could name a target when the
    job starts, and is refused now (:func:`_check_unresolved`)."""
    if isinstance(node, DictConfig | ListConfig):
        keys = list(node) if isinstance(node, DictConfig) else list(range(len(node)))
        out: list[tuple[Any, Any]] = []
        for key in keys:
            where = _joined(path, key)
            try:
                value = node[key]
            except Exception as e:  # unresolvable now: refused if it could become a node later
                _check_unresolved(_raw(node, key), where, e)
                continue
            out.append((key, _resolved(value, where)))
        return dict(out) if isinstance(node, DictConfig) else [v for _, v in out]
    if isinstance(node, dict):  # e.g. what oc.decode made of a string
        return {k: _resolved(v, _joined(path, k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_resolved(v, _joined(path, i)) for i, v in enumerate(node)]
    return node


def _joined(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _raw(node: DictConfig | ListConfig, key: Any) -> Any:
    """The value of ``node[key]`` as written, interpolations unresolved."""
    try:
        return node._get_node(key)._value()  # type: ignore[union-attr]
    except Exception:
        return None


def _not_job_time(e: BaseException | None) -> str | None:
    """Why a value does not resolve, where the reason is not a value Hydra sets only when the
    job starts (``hydra.runtime.*``, ``hydra.job.*``): an unset environment variable, or a key
    the config does not set. None otherwise."""
    text = str(e) if e is not None else ""
    if unset := _UNSET_ENV.search(text):
        return f"environment variable {unset[1]} is not set; export it before the run"
    missing = _NO_VALUE.search(text)
    key = missing and (missing[1] or missing[2])
    if key and not re.match(r"hydra[.:](?:runtime|job)\.", key):
        return f"it refers to {key}, which is not set; set it, or give the value without it"
    return None


def _check_unresolved(raw: Any, where: str, error: BaseException | None = None) -> None:
    calls = sorted(set(_RESOLVER_CALL.findall(str(raw))) - _PLAIN_RESOLVERS)
    if re.search(r"\$\{\s*\$\{", str(raw)):  # ${${name}:...}: a resolver named at job start
        calls.append("a resolver named by an interpolation")
    if calls and (why := _not_job_time(error)):
        raise ConfigError(f"{where}={raw}: {why}")
    if calls:
        raise ConfigError(
            f"{where}={raw}: not allowed; it cannot be checked before the run (it refers to a"
            f" value set only when the job starts) and calls {', '.join(calls)}, which builds"
            " a config node from its arguments; give the value without it"
        )


def _check_logging(node: Any, path: str, resolve: bool) -> None:
    """``logging.config.dictConfig`` imports and calls the ``class`` of each handler and
    formatter and the ``()`` of any entry, and imports what ``ext://`` names."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            _check_logging(value, f"{path}[{i}]", resolve)
        return
    if not isinstance(node, dict):
        reference = isinstance(node, str) and _LOGGING_REFERENCE.match(node)
        if reference and node not in _LOGGING_STREAMS:
            raise ConfigError(
                f"{path}={node}: not allowed; logging configs may refer to nothing but "
                + " and ".join(_LOGGING_STREAMS)
            )
        return
    for key, value in node.items():
        where = f"{path}.{key}"
        if key == ".":
            raise ConfigError(
                f"{where}: not allowed; a logging config may not set attributes of the objects"
                " it builds (a handler's file among them)"
            )
        if key in ("()", "class"):
            if value not in LOGGING_CLASSES:
                raise ConfigError(
                    f"{where}={value}: not allowed; a logging config may name only "
                    + ", ".join(LOGGING_CLASSES)
                )
        elif key == "filename":
            _check_log_file(value, where)
        _check_logging(value, where, resolve)


def _check_log_file(name: Any, where: str, shown: Any = None) -> None:
    """A log handler's file must be a ``.log`` file: a handler appends text the config chooses
    (its format) to it, which in ``~/.profile``, ``authorized_keys`` or a ``Makefile`` would be
    code the next shell or build runs."""
    text = str(name)
    plain = isinstance(name, str) and not _LOGGING_REFERENCE.match(text) and "\n" not in text
    if not (plain and text.endswith(".log")):
        raise ConfigError(
            f"{where}={name if shown is None else shown}: not allowed; a log handler's file must"
            " be a path ending in .log,"
            " no reference such as cfg://... (e.g. ${hydra.runtime.output_dir}/${hydra.job.name}"
            ".log, Hydra's default)"
        )


def _check_logging_raw(node: Any, path: str) -> None:
    """What does not resolve before the run in a logging config (Hydra builds it per job) is
    refused, except a log file's name built from what Hydra sets at job start
    (``${hydra.runtime.output_dir}/${hydra.job.name}.log``): anything else could become a
    handler or a file name no check has seen."""
    if not isinstance(node, DictConfig | ListConfig):
        return
    keys = list(node) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        where = _joined(path, key)
        try:
            value = node[key]
        except Exception as e:
            raw = _raw(node, key)
            if why := _not_job_time(e):
                raise ConfigError(f"{where}={raw}: {why}") from None
            if key == "filename" and isinstance(raw, str):
                _check_job_time_log_file(node, raw, where)
                continue
            raise ConfigError(
                f"{where}={raw}: not allowed; a logging config is checked before the run, and"
                " this value cannot be resolved until the job starts (only a log file's name"
                " may use what Hydra sets then: ${hydra.runtime.*}, ${hydra.job.*})"
            ) from None
        if key == "filename" and isinstance(raw := _raw(node, key), str):
            _check_job_keys(node, raw, where)  # ${hydra:job.bogus} resolves now, to None
        _check_logging_raw(value, where)


def _check_job_time_log_file(node: DictConfig | ListConfig, raw: str, where: str) -> None:
    """A log file's name that Hydra completes at job start (``${hydra.runtime.output_dir}/...``):
    the name as written ends in ``.log`` (so every value it takes does), and the rest of it
    resolves now, to a name that passes :func:`_check_log_file` with the job's values left
    blank."""
    _check_log_file(raw, where)
    _check_unresolved(raw, where)
    _check_job_keys(node, raw, where)
    rest = _JOB_VALUE.sub("job", raw)
    if "$" not in rest:
        return
    probe = OmegaConf.create({"name": rest})
    probe._set_parent(node._get_root())  # absolute interpolations resolve in the whole config
    try:
        value = probe.name
    except Exception as e:
        why = _not_job_time(e) or (
            "not allowed; this value cannot be resolved until the job starts (only a log file's"
            " name may use what Hydra sets then: ${hydra.runtime.*}, ${hydra.job.*})"
        )
        raise ConfigError(f"{where}={raw}: {why}") from None
    _check_log_file(value, where, shown=raw)


def _check_job_keys(node: DictConfig | ListConfig, raw: str, where: str) -> None:
    """Each ``${hydra.job.*}`` / ``${hydra.runtime.*}`` of a log file's name is a key Hydra has:
    a typo fails at job start with a traceback (``${hydra.job.bogus}``; read through the
    ``hydra:`` resolver it is "None", and opening None/x.log fails then)."""
    root = node._get_root()
    for path in _JOB_KEY.findall(raw):
        if not _hydra_key_exists(root, path):
            raise ConfigError(
                f"{where}={raw}: hydra.{path} is no value Hydra sets; use one that it does,"
                " e.g. ${hydra.runtime.output_dir}/${hydra.job.name}.log"
            )


def _hydra_key_exists(root: Any, path: str) -> bool:
    """Whether ``hydra.<path>`` is a key of the config's hydra node, set or still to be set at
    job start (``hydra.job.num`` has no value until then; ``hydra.job.bogus`` never will). A
    config without Hydra's ``job`` / ``runtime`` sections (one not composed by Hydra) cannot
    tell: True."""
    section = OmegaConf.select(root, f"hydra.{path.split('.')[0]}", default=None)
    if not isinstance(section, DictConfig):
        return True
    node = root
    for part in ["hydra", *path.split(".")]:
        if not isinstance(node, DictConfig):
            return False
        try:
            node = node._get_node(part)
        except Exception:  # a struct node says so by raising
            return False
        if node is None:
            return False
    return True


def _named(target: str, allowed: tuple[str, ...]) -> bool:
    return any(target == a or (a.endswith(".") and target.startswith(a)) for a in allowed)


def _home_allowed(home: object, allowed: tuple[str, ...]) -> bool:
    """Whether code defined in module ``home`` may be reached: under an allowed package, or the
    module of an allowed exact name."""
    if not isinstance(home, str):
        return False
    return any(
        (home + ".").startswith(a) if a.endswith(".") else home == a.rpartition(".")[0]
        for a in allowed
    )


def target_refusal(
    target: str, *, resolve: bool = True, allowed: tuple[str, ...] = ALLOWED_TARGETS
) -> str | None:
    """Why Hydra may not instantiate ``target``, or None.

    The name alone is not enough: Hydra imports the longest module prefix it can and walks the
    rest as attributes, so ``robustai.models.artifact.torch.load`` is torch.load (an unpickler)
    reached through a module that imports torch. Every object on the way must itself be defined
    where ``allowed`` permits; a module must be the one its path names.
    """
    shown = ", ".join(a.rstrip(".") + (".*" if a.endswith(".") else "") for a in allowed)
    if not _named(target, allowed):
        return f"a config may only name {shown}"
    parts = target.split(".")
    if any(part.startswith("__") for part in parts):
        return "a config may not name dunder attributes"
    if not resolve:
        return None
    return _located(parts, allowed, shown)[1]


def _located(
    parts: list[str], allowed: tuple[str, ...], shown: str
) -> tuple[object | None, str | None]:
    """The object a dotted name leads to as Hydra (and logging) import it, and why it may not
    be used (None: it may)."""
    obj, depth = None, len(parts)
    while depth > 0:
        try:
            obj = importlib.import_module(".".join(parts[:depth]))
            break
        except Exception:  # not a module (or not importable): try the prefix
            depth -= 1
    if obj is None:
        return None, "no such module"
    for end in range(depth + 1, len(parts) + 1):
        name = ".".join(parts[:end])
        obj = getattr(obj, parts[end - 1], _MISSING)
        if obj is _MISSING:
            return None, f"{name} does not exist"
        home = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
        if inspect.ismodule(obj) and home != name:
            return None, (
                f"{name} is the module {home}, imported there; name code where it is defined"
            )
        if not _home_allowed(home, allowed):
            return None, f"{name} is defined in {home}; a config may only name {shown}"
    return obj, None


_MISSING = object()


def parse_fraction(value: Any, key: str = "") -> Any:
    """``"8/255"`` -> 0.0313..., so eps and step sizes can be written as papers write them.
    ``key`` names the setting in the error message."""
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                shown = f"{key}={value}" if key else f"'{value}'"
                raise ConfigError(f"{shown} divides by zero; write a fraction like 8/255")
            return float(m.group(1)) / den
    return value


def to_train_config(cfg: DictConfig | dict[str, Any]) -> TrainConfig:
    """Resolve, type-check and range-check a composed train config (ignoring the ``hydra`` node)."""
    obj = _to_structured(cfg, TrainConfig)
    validate(obj)
    return obj


def to_evaluate_config(cfg: DictConfig | dict[str, Any]) -> EvaluateConfig:
    """Resolve, type-check and range-check a composed ``robustai evaluate`` config."""
    obj = _to_structured(cfg, EvaluateConfig)
    validate_evaluate(obj)
    return obj


def validate_evaluate(cfg: EvaluateConfig) -> None:
    """The data, evaluator and logger checks of :func:`validate`, plus the checkpoint and
    device. An empty ``evaluator.eps`` means the checkpoint's own threat model."""
    if not cfg.checkpoint:
        raise ConfigError(
            "checkpoint is not set: give checkpoint=<run folder or its weights.safetensors>"
        )
    _seed("seed", cfg.seed)  # first: evaluator.seed follows it, and seed is the one given
    evaluator = dataclasses.replace(cfg.evaluator, eps=list(cfg.evaluator.eps) or [cfg.data.eps])
    validate(
        TrainConfig(
            data=cfg.data,
            attack=AttackConfig(name=ATTACK_NONE),
            evaluator=evaluator,
            logger=cfg.logger,
            paths=cfg.paths,
        )
    )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        raise ConfigError(f"device={cfg.device}: must be auto, cpu, cuda, cuda:N or mps")
    if cfg.threads is not None:
        _at_least("threads", cfg.threads, 1)


def _to_structured(cfg: DictConfig | dict[str, Any], cls: Any) -> Any:
    """Merge a composed config into the dataclass schema ``cls``: one ConfigError if it does not
    fit (unknown key, wrong type, bad interpolation, disallowed ``_target_``)."""
    try:
        if isinstance(cfg, DictConfig):
            cfg = cfg.copy()
            with open_dict(cfg):
                cfg.pop("hydra", None)  # Hydra's own node resolves only inside a running job
            if cls is TrainConfig:
                _check_l2_suite_eps(cfg)
            container = OmegaConf.to_container(cfg, resolve=True)
        else:
            container = dict(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from e
    assert isinstance(container, dict)
    container.pop("hydra", None)
    check_targets(container, resolve=False)
    if cls is TrainConfig:
        _check_attack_eps_set(container)
    _coerce_fractions(container, cls)
    _check_sections(container, cls)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), container)
        obj = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        _check_attack_keys(container, unknown_only=True)  # OmegaConf loses a list entry's path
        raise ConfigError(_unknown_key(e, cls)) from e
    except OmegaConfBaseException as e:
        _check_attack_entry_values(container)  # OmegaConf loses a list entry's path here too
        raise ConfigError(_one_line(e, cls)) from e
    assert isinstance(obj, cls)
    _check_attack_keys(container)
    return obj


def _check_sections(container: dict[str, Any], cls: Any) -> None:
    """A value where the schema has a group of settings (``evaluator.sanity=false``): name the
    key and its settings; OmegaConf's merge would say only "bool is not a subclass of ..."."""

    def walk(node: Any, schema: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            sub = schema.get(key) if isinstance(schema, DictConfig) and key in schema else None
            if not isinstance(sub, DictConfig):
                continue
            path = f"{prefix}{key}"
            if value is not None and not isinstance(value, dict):
                keys = ", ".join(f"{path}.{k}" for k in sub)
                hint = f"; e.g. {path}.enabled=false" if "enabled" in sub else ""
                shown = str(value).lower() if isinstance(value, bool) else value
                raise ConfigError(
                    f"{path}={shown}: {path} is a group of settings, not a value; set its keys "
                    f"({keys}){hint}"
                )
            walk(value, sub, f"{path}.")

    walk(container, OmegaConf.structured(cls), "")


def _check_attack_keys(container: dict[str, Any], unknown_only: bool = False) -> None:
    """Each attack's keys against what that attack takes (``+attack.steps=5`` on FGSM, a typo in
    an ``evaluator.attacks`` entry), naming the key and the attack's own keys: the schema knows
    only the union over all attacks. ``unknown_only``: look only for keys no attack takes (and
    import torch, which the attacks need, only if there is one)."""
    fields = [f.name for f in dataclasses.fields(AttackConfig)]
    entries: list[tuple[str, Any]] = [("attack", container.get("attack"))]
    evaluator = container.get("evaluator")
    if isinstance(evaluator, dict) and isinstance(evaluator.get("attacks"), list):
        entries += [(f"evaluator.attacks[{i}]", a) for i, a in enumerate(evaluator["attacks"])]
    entries = [(prefix, e) for prefix, e in entries if isinstance(e, dict)]  # else: wrong type
    if unknown_only:
        entries = [(prefix, e) for prefix, e in entries if set(e) - set(fields)]
    if not entries:
        return
    from robustai.attacks import ATTACKS
    from robustai.attacks.registry import accepted_kwargs

    for prefix, entry in entries:
        if prefix != "attack" and "name" not in entry:
            raise ConfigError(
                f"{prefix}: give the attack's name, e.g. {{name:pgd,steps:20}}; valid: "
                + ", ".join(ATTACKS)
            )
        name = entry.get("name")
        if isinstance(name, str) and name in ATTACKS:
            takes = ["name", *(k for k in accepted_kwargs(ATTACKS[name]) if k in fields)]
        elif name == ATTACK_NONE and prefix == "attack":  # eps: the threat model evaluated at
            takes = ["name", "eps", "norm", "model_mode"]
        else:  # an unknown name (validate names what is valid)
            takes = fields
        if prefix != "attack":  # the suite runs every attack at each of evaluator.eps
            if entry.get("eps") is not None:
                raise ConfigError(
                    f"{prefix}.eps: the evaluator runs each attack at every eps of "
                    "evaluator.eps; give evaluator.eps=[...] instead"
                )
            takes = [k for k in takes if k != "eps"]
        for key, value in entry.items():
            if key in takes or (key in fields and value is None):
                continue
            if key in fields:  # spelled right, for another attack
                what = f"attack {name!r} does not take {key}"
            else:
                hint = difflib.get_close_matches(str(key), takes, n=1)
                what = "no such key" + (f" (did you mean {prefix}.{hint[0]}?)" if hint else "")
            raise ConfigError(f"{prefix}.{key}: {what}; valid keys: {', '.join(takes)}")


def _check_attack_entry_values(container: dict[str, Any]) -> None:
    """Each ``evaluator.attacks`` entry merged into the attack schema on its own, so that a value
    of the wrong type (``+evaluator.attacks.1.eot_iter=4.5``) is named with its entry: merged as
    part of the list, OmegaConf reports the bare key (``eot_iter``), as if ``attack.`` had it."""
    evaluator = container.get("evaluator")
    if not isinstance(evaluator, dict) or not isinstance(evaluator.get("attacks"), list):
        return
    for i, entry in enumerate(evaluator["attacks"]):
        if not isinstance(entry, dict):
            continue
        try:
            OmegaConf.merge(OmegaConf.structured(AttackConfig), entry)
        except OmegaConfBaseException as e:
            prefix = f"evaluator.attacks[{i}]."
            msg = _one_line(e, AttackConfig)
            key = str(getattr(e, "full_key", "") or "")
            if key and msg.startswith(key):  # the entry's key, and its example, with the path
                msg = re.sub(rf"(?<![\w.]){re.escape(key)}\b", prefix + key, msg)
            else:
                msg = prefix.rstrip(".") + ": " + msg
            raise ConfigError(msg) from e


def _check_l2_suite_eps(cfg: DictConfig) -> None:
    """Standard training (``attack=none``) under a suite with L2 attacks, at the eps that follows
    ``data.eps``: that is the data set's L-inf budget (0.1 on digits), which the L2 attacks
    would take as their radius, a tiny one, and report robustness that is not there."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    attack, evaluator = raw.get("attack"), raw.get("evaluator")
    if not isinstance(attack, dict) or not isinstance(evaluator, dict):
        return
    attacks = evaluator.get("attacks")
    l2 = isinstance(attacks, list) and any(
        isinstance(a, dict) and a.get("norm") == "l2" for a in attacks
    )
    follows = attack.get("eps") == "${data.eps}" and evaluator.get("eps") == ["${attack.eps}"]
    if attack.get("name") == ATTACK_NONE and l2 and follows:
        raise ConfigError(
            "evaluator.eps follows data.eps, the data set's L-inf budget, which the suite's L2"
            " attacks would take as their radius (attack=none trains for no eps of its own);"
            " give evaluator.eps=[...] as L2 radii, e.g. [0.5,1.0]"
        )


def _check_attack_eps_set(container: dict[str, Any]) -> None:
    """``attack.eps=null``: the evaluator's eps follows it (``${attack.eps}``), so the schema
    would name ``evaluator.eps[0]``; name the key the user set instead."""
    attack, evaluator = container.get("attack"), container.get("evaluator")
    if not isinstance(attack, dict) or attack.get("eps", 0) is not None:
        return
    data = container.get("data")
    if isinstance(data, dict) and "eps" in data and data["eps"] is None:
        return  # data.eps=null, which attack.eps follows: the schema names data.eps
    follows = isinstance(evaluator, dict) and None in (evaluator.get("eps") or [])
    if attack.get("name") != ATTACK_NONE or follows:
        raise ConfigError(
            "attack.eps is not set: give the attack's eps in [0, 1], e.g. 0.1 or 8/255"
            + (" (evaluator.eps follows it)" if follows else "")
        )


# The data settings only some of the built-in data sets read, and which; each group's file lists
# only its own, so such a key reaches another set only when added with "+" (forgotten data=idx).
_DATA_KEY_USERS = {
    "root": ("mnist", "fashion_mnist", "cifar10", "idx"),
    "download": ("mnist", "fashion_mnist", "cifar10"),
    "images": ("idx",),
    "labels": ("idx",),
    "num_samples": ("synthetic",),
    "input_shape": ("synthetic",),
    "num_classes": ("synthetic",),
    "noise": ("synthetic",),
}
_BUILTIN_DATA = {"digits", "mnist", "fashion_mnist", "cifar10", "idx", "synthetic"}


def _check_data_keys_used(d: DataConfig) -> None:
    """A setting the chosen data set does not read, changed from its default, was ignored while
    ``.hydra/`` recorded it as if applied (``+data.images=...`` on ``data=digits``)."""
    if d.name not in _BUILTIN_DATA:
        return  # a data set registered by the user may read any of them
    for key, users in _DATA_KEY_USERS.items():
        value = getattr(d, key)
        if d.name not in users and value != getattr(DataConfig(), key):
            sets = ", ".join(f"data={u}" for u in users)
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ConfigError(
                f"data.{key}={shown}: data={d.name} does not read it ({sets}"
                f" {'does' if len(users) == 1 else 'do'}); leave it out, or choose the data set"
                " that reads it"
            )


def unused_settings(cfg: TrainConfig) -> list[str]:
    """Settings the chosen objective, attack or schedule does not read, each as a line for the
    run's log: they were ignored without a word while ``.hydra/`` recorded them as if applied
    (two free runs with attack.alpha=0.5 and 0.01 gave the same weights). Warned about, not
    refused: an experiment may set them for its own objective, and a sweep may set one for the
    members that read it."""
    t, a = cfg.trainer, cfg.attack
    lines = []
    if t.objective == "free" and a.name != ATTACK_NONE:
        # Shafahi et al.: each replay's step is eps, from the perturbation the last one left
        # (no random start, no steps of its own), in the training pass's own forward
        unused = [
            f"attack.{key}={value}"
            for key, value, default in (
                ("alpha", a.alpha, None), ("steps", a.steps, None), ("restarts", a.restarts, None),
                ("model_mode", a.model_mode, AttackConfig.model_mode),
                ("eot_iter", a.eot_iter, None),
            )
            if value != default
        ]  # fmt: skip
        if a.name != "fgsm":
            unused.insert(0, f"attack={a.name}")
        if unused:
            lines.append(
                f"{', '.join(unused)}: trainer.objective=free does not use it (each replay steps"
                " by attack.eps from the perturbation the last one left, in the training pass)"
            )
    if a.name == ATTACK_NONE and t.objective == "free":
        lines.append(
            "trainer.objective=free with attack=none: trains without an attack (free training"
            " needs an attack's eps, e.g. attack=fgsm_rs)"
        )
    if a.name == ATTACK_NONE and t.eps_warmup_epochs != TrainerConfig.eps_warmup_epochs:
        lines.append(
            f"trainer.eps_warmup_epochs={t.eps_warmup_epochs:g}: not used; it ramps the attack's"
            " eps up, and attack=none trains without an attack"
        )
    if t.objective != "free" and t.replays != TrainerConfig.replays:
        lines.append(
            f"trainer.replays={t.replays}: not used; only trainer.objective=free replays"
            " minibatches"
        )
    if t.schedule == "constant" and t.warmup_fraction != TrainerConfig.warmup_fraction:
        lines.append(
            f"trainer.warmup_fraction={t.warmup_fraction:g}: not used; trainer.schedule=constant"
            " has no warm-up"
        )
    return lines


def validate(cfg: TrainConfig) -> None:
    """Range and name checks that types alone cannot express."""
    from robustai.attacks import attack_names
    from robustai.data import data_names
    from robustai.data.augment import AUGMENTATIONS
    from robustai.models import model_names

    d, t, a, e = cfg.data, cfg.trainer, cfg.attack, cfg.evaluator
    _choice("data.name", d.name, data_names())
    _choice("data.augment", d.augment, list(AUGMENTATIONS))
    _choice("model.name", cfg.model.name, model_names())
    _check_model_params(cfg.model.name, cfg.model.params)
    _choice("attack.name", a.name, [ATTACK_NONE, *attack_names()])
    _at_least("data.batch_size", d.batch_size, 1)
    _at_least("data.eval_batch_size", d.eval_batch_size, 1)
    _open_unit("data.holdout", d.holdout)
    if d.train_size is not None:
        _at_least("data.train_size", d.train_size, 1)
    if d.eval_size is not None:
        _at_least("data.eval_size", d.eval_size, 1)
    _unit("data.eps", d.eps, _EPS_HINT)
    _seed("data.split_seed", d.split_seed)
    if d.name == "synthetic":
        _non_negative("data.noise", d.noise)
        _at_least("data.num_samples", d.num_samples, 2)
        _at_least("data.num_classes", d.num_classes, 2)
        if len(d.input_shape) != 3 or min(d.input_shape) < 1:
            raise ConfigError(
                f"data.input_shape={d.input_shape}: must be [channels, height, width], all >= 1"
            )
    _check_data_keys_used(d)
    _check_attack("attack", a, need_eps=a.name != ATTACK_NONE)
    _choice("trainer.objective", t.objective, OBJECTIVES)
    _at_least("trainer.epochs", t.epochs, 1)
    _at_least("trainer.replays", t.replays, 1)
    if t.objective == "free" and a.name != ATTACK_NONE and a.norm != "linf":
        raise ConfigError("trainer.objective=free: free adversarial training is L-inf only; "
                          "set attack.norm=linf")
    _choice("trainer.optimizer", t.optimizer, OPTIMIZERS)
    _choice("trainer.schedule", t.schedule, SCHEDULES)
    _seed("trainer.seed", t.seed)
    _positive("trainer.lr", t.lr)
    _non_negative("trainer.momentum", t.momentum)
    if t.momentum >= 1:  # a velocity that never decays: SGD diverges
        raise ConfigError(f"trainer.momentum={t.momentum}: must be below 1, e.g. 0.9")
    if t.optimizer == "adam" and (t.nesterov or t.momentum != TrainerConfig.momentum):
        # recorded in .hydra/ and the checkpoint as if they had been used
        given = "trainer.nesterov=true" if t.nesterov else f"trainer.momentum={t.momentum:g}"
        raise ConfigError(
            f"{given}: SGD's setting, which trainer.optimizer=adam does not use (Adam keeps its"
            " own moment estimates); leave it out, or use trainer.optimizer=sgd"
        )
    if t.nesterov and t.momentum == 0:
        raise ConfigError(
            "trainer.nesterov=true needs trainer.momentum > 0 (Nesterov momentum without"
            " momentum is plain SGD); set trainer.momentum, e.g. 0.9"
        )
    _non_negative("trainer.weight_decay", t.weight_decay)
    _open_unit("trainer.warmup_fraction", t.warmup_fraction)
    _non_negative("trainer.eps_warmup_epochs", t.eps_warmup_epochs)
    if a.name != ATTACK_NONE and t.eps_warmup_epochs >= t.epochs:
        # meta.json would record attack.eps as the threat model the run never trained at
        raise ConfigError(
            f"trainer.eps_warmup_epochs={t.eps_warmup_epochs}: the eps ramp must end before "
            f"training does (trainer.epochs={t.epochs}), or no step trains at attack.eps; "
            f"e.g. trainer.eps_warmup_epochs={t.epochs / 2:g}"
        )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", t.device):
        raise ConfigError(f"trainer.device={t.device}: must be auto, cpu, cuda, cuda:N or mps")
    _choice("trainer.distributed", t.distributed, DISTRIBUTED)
    _choice("trainer.backend", t.backend, BACKENDS)
    if t.distributed == "ddp" and cfg.data.batch_size < 2 and cfg.privacy.name != "dpsgd":
        # (DP-SGD's batch size is the expected size of Poisson batches: any size shards)
        raise ConfigError(
            f"trainer=ddp: data.batch_size={cfg.data.batch_size} must be at least the number of "
            "processes (the global batch is split among them), e.g. data.batch_size=64"
        )
    _non_negative("trainer.checkpoint_every", t.checkpoint_every)
    _at_least("trainer.keep_checkpoints", t.keep_checkpoints, 1)
    if t.resume is not None:
        _check_resume(t.resume)
    if t.threads is not None:
        _at_least("trainer.threads", t.threads, 1)
    _at_least("trainer.watchdog.samples", t.watchdog.samples, 1)
    _at_least("trainer.watchdog.steps", t.watchdog.steps, 1)
    _unit("trainer.watchdog.max_drop", t.watchdog.max_drop)
    if not e.eps:
        raise ConfigError("evaluator.eps is empty: give at least one eps, e.g. evaluator.eps=[0.1]")
    for i, ac in enumerate(e.attacks):
        _choice(f"evaluator.attacks[{i}].name", ac.name, attack_names())
        _check_attack(f"evaluator.attacks[{i}]", ac, need_eps=False)
        if ac.model_mode == "train":
            raise ConfigError(
                f"evaluator.attacks[{i}].model_mode=train: robust accuracy is counted with the"
                " model in eval mode, and an attack in train mode would choose its examples"
                " against another model (dropout draws, batch statistics), so the accuracy would"
                " read high; use model_mode=eval (evaluator.eot_iter for a randomized model)"
            )
    norms = {ac.norm for ac in e.attacks}
    _check_suite_norm(cfg.attack, norms)
    seen: dict[str, int] = {}
    for i, eps in enumerate(e.eps):
        _suite_eps(f"evaluator.eps[{i}]", eps, norms)
        key = f"{float(eps):g}"  # the metric keys' eps (robust_acc's pgd20@0.1, worst_case_acc)
        if key in seen:  # refused later, after the data loaded, as two attacks sharing a key
            raise ConfigError(
                f"evaluator.eps[{i}]={eps:g} repeats evaluator.eps[{seen[key]}]: list each eps"
                " once (values equal in their first 6 digits share one metric key)"
            )
        seen[key] = i
    if e.samples is not None:
        _at_least("evaluator.samples", e.samples, 1)
    _at_least("evaluator.eot_iter", e.eot_iter, 1)
    if e.seed is not None:  # torch's generators take it after the run has trained
        _seed("evaluator.seed", e.seed)
    _check_evaluator_extras(e)
    _non_negative("logger.image_grid", cfg.logger.image_grid)
    _check_privacy(cfg.privacy)
    if cfg.privacy.name == "dpsgd" and (t.amp or t.compile):
        raise ConfigError(
            "trainer.amp / trainer.compile are not supported with privacy=dpsgd (Opacus' "
            "per-sample gradients assume full precision, eager modules); set them to false"
        )
    if cfg.privacy.name == "dpsgd" and t.objective == "free" and cfg.attack.name != ATTACK_NONE:
        raise ConfigError(
            "trainer.objective=free is not supported with privacy=dpsgd (DP-SGD trains with"
            " the standard and adversarial objectives); use trainer.objective=adversarial"
        )
    if t.compile and (t.cuda_graphs or e.cuda_graphs):
        raise ConfigError(
            "trainer.compile=true with trainer.cuda_graphs / evaluator.cuda_graphs: capturing a"
            " compiled model is not supported; set one of them to false"
        )


def _check_model_params(name: str, params: typing.Mapping[str, Any]) -> None:
    """``model.params`` are the model's keyword arguments, checked here before a run folder
    exists (the model's own check, in config terms)."""
    from robustai.models import check_model_params

    try:
        check_model_params(name, params, prefix="model.params.")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_privacy(p: PrivacyConfig) -> None:
    from robustai.privacy import ACCOUNTANTS, GRAD_SAMPLE_MODES, WHERE, privacy_names

    _choice("privacy.name", p.name, privacy_names())
    if p.noise_seed is not None:
        _seed("privacy.noise_seed", p.noise_seed)
    if p.name == "dpsgd":
        if p.noise_multiplier is not None and p.target_epsilon is not None:
            raise ConfigError(
                f"privacy.noise_multiplier={p.noise_multiplier} and privacy.target_epsilon="
                f"{p.target_epsilon} are both set: give one (privacy.noise_multiplier=null to "
                "calibrate the noise for the target)"
            )
        if p.noise_multiplier is None and p.target_epsilon is None:
            raise ConfigError(
                "privacy=dpsgd needs privacy.noise_multiplier or privacy.target_epsilon"
            )
        if p.noise_multiplier is not None:
            _positive("privacy.noise_multiplier", p.noise_multiplier)
        if p.target_epsilon is not None:
            _positive("privacy.target_epsilon", p.target_epsilon)
        if p.delta is not None:
            _open_unit("privacy.delta", p.delta)
        _positive("privacy.max_grad_norm", p.max_grad_norm)
        _choice("privacy.accountant", p.accountant, ACCOUNTANTS)
        if p.max_epsilon is not None:
            _positive("privacy.max_epsilon", p.max_epsilon)
        _choice("privacy.grad_sample_mode", p.grad_sample_mode, GRAD_SAMPLE_MODES)
    elif p.name in ("laplace", "gaussian"):
        _choice("privacy.where", p.where, WHERE)
        _positive("privacy.sensitivity", p.sensitivity)
        if p.epsilon is None:
            raise ConfigError(f"privacy={p.name} needs privacy.epsilon (per record and release)")
        _positive("privacy.epsilon", p.epsilon)
        if p.name == "gaussian":
            if p.delta is None:
                raise ConfigError("privacy=gaussian needs privacy.delta, e.g. 1e-5")
            _open_unit("privacy.delta", p.delta)
    elif p.name == "gaussian_noise":
        _choice("privacy.where", p.where, WHERE)
        _non_negative("privacy.sigma", p.sigma)


def _check_resume(folder: str) -> None:
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    if not folder.strip():  # not ".": the current folder is not what an empty value means
        raise ConfigError(
            "trainer.resume is empty: give the run folder to continue, or leave it out (null) "
            "to start a new run"
        )
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"trainer.resume={folder}: no such run folder")
    if path.name == CHECKPOINT_DIR and list_checkpoints(path):
        raise ConfigError(
            f"trainer.resume={folder} is a run's checkpoints folder; give the run folder"
            f" (trainer.resume={path.parent}), which resumes from its newest checkpoint"
        )
    if not list_checkpoints(path / CHECKPOINT_DIR):
        raise ConfigError(
            f"trainer.resume={folder}: no checkpoint in {path / CHECKPOINT_DIR}; "
            "give the folder of a run that saved one (trainer.checkpoint_every > 0)"
        )


def _check_evaluator_extras(e: EvaluatorConfig) -> None:
    """Robustness curve and sanity-check settings."""
    norms = {ac.norm for ac in e.attacks}
    for i, eps in enumerate(e.curve.eps):
        _suite_eps(f"evaluator.curve.eps[{i}]", eps, norms)
    if e.curve.samples is not None:
        _at_least("evaluator.curve.samples", e.curve.samples, 1)
    s = e.sanity
    _at_least("evaluator.sanity.samples", s.samples, 1)
    if not 0.0 <= s.tolerance < 1.0:  # a tolerance of 1 would call every difference noise
        raise ConfigError(f"evaluator.sanity.tolerance={s.tolerance}: must be in [0, 1)")
    if not 0.0 < s.large_eps <= 1.0:
        raise ConfigError(f"evaluator.sanity.large_eps={s.large_eps}: must be in (0, 1]")
    _unit("evaluator.sanity.chance_margin", s.chance_margin)
    _at_least("evaluator.sanity.black_box_queries", s.black_box_queries, 1)


def _check_attack(prefix: str, a: AttackConfig, need_eps: bool) -> None:
    if need_eps and a.eps is None:
        raise ConfigError(
            f"{prefix}.eps is not set: give the attack's eps in [0, 1], e.g. 0.1 or 8/255"
        )
    _choice(f"{prefix}.norm", a.norm, NORMS)
    if a.eps is not None:
        _eps(f"{prefix}.eps", a.eps, a.norm)
    if a.alpha is not None:
        _positive(f"{prefix}.alpha", a.alpha)
        if a.norm == "linf" and a.alpha > 1:
            raise ConfigError(f"{prefix}.alpha={a.alpha}: must be in (0, 1] (pixel units)")
        if not math.isfinite(a.alpha):
            raise ConfigError(f"{prefix}.alpha={a.alpha}: must be a finite number")
    if a.steps is not None:
        _at_least(f"{prefix}.steps", a.steps, 1)
    if a.restarts is not None:
        _at_least(f"{prefix}.restarts", a.restarts, 1)
    _choice(f"{prefix}.model_mode", a.model_mode, MODEL_MODES)
    if a.loss is not None:
        _choice(f"{prefix}.loss", a.loss, APGD_LOSSES)
    if a.n_target_classes is not None:
        _at_least(f"{prefix}.n_target_classes", a.n_target_classes, 1)
    if a.n_queries is not None:
        _at_least(f"{prefix}.n_queries", a.n_queries, 1)
    if a.p_init is not None and not 0.0 < a.p_init <= 1.0:
        raise ConfigError(f"{prefix}.p_init={a.p_init}: must be in (0, 1]")
    if a.eot_iter is not None:
        _at_least(f"{prefix}.eot_iter", a.eot_iter, 1)


def _choice(key: str, value: str, allowed: typing.Sequence[str]) -> None:
    if value not in allowed:
        hint = difflib.get_close_matches(str(value), allowed, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        raise ConfigError(f"{key}={value}: unknown{maybe}; valid: {', '.join(allowed)}")


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{key}={value}: must be >= {low}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}={value}: must be > 0")
    if math.isinf(value):  # noise_multiplier=inf: the accountant searches forever
        raise ConfigError(f"{key}={value}: must be a finite number")


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{key}={value}: must be >= 0")
    if math.isinf(value):  # weight_decay=inf: the loss goes NaN, blamed on the learning rate
        raise ConfigError(f"{key}={value}: must be a finite number")


def _seed(key: str, value: int) -> None:
    """A seed torch's generators take (a signed 64-bit integer) once offsets are added."""
    if not 0 <= value < SEED_LIMIT:  # the library's seeds, checked as argcheck.check_seed does
        raise ConfigError(f"{key}={value}: must be a whole number in [0, 2**62), e.g. 0")


def _eps(key: str, value: float, norm: str) -> None:
    """An attack's eps: [0, 1] for L-inf; for L2 a radius up to ``MAX_L2_EPS`` (2.0 is usual
    on MNIST)."""
    if norm == "linf":
        _unit(key, value, _EPS_HINT)
    elif not (math.isfinite(value) and 0.0 <= value <= MAX_L2_EPS):
        raise ConfigError(
            f"{key}={value}: must be in [0, {MAX_L2_EPS:g}] (the L2 radius in [0, 1] pixel units,"
            " e.g. 0.5 or 2.0; sqrt(d) already covers all of [0, 1]^d)"
        )


def _check_suite_norm(attack: Any, norms: typing.Collection[str]) -> None:
    """An adversarially trained run is evaluated in the threat model it trains for: with
    evaluator.eps following attack.eps, an L2 run under the default (L-inf) suite would report
    L-inf attacks at its L2 radius, under names that do not say so."""
    if attack.name == ATTACK_NONE or not norms or attack.norm in norms:
        return
    if attack.norm == "l2":
        fix = (
            "choose evaluator=quick_l2 (PGD-20 in L2) or standard_l2 (APGD in L2), or give an"
            " L2 attack in evaluator.attacks"
        )
    else:
        fix = "choose evaluator=quick, or give an L-inf attack in evaluator.attacks"
    raise ConfigError(
        f"attack.norm={attack.norm}, but every attack of evaluator.attacks is"
        f" {'/'.join(sorted(norms))}: the run would report robustness in another threat model"
        f" than it trains for; {fix}"
    )


def _suite_eps(key: str, value: float, norms: typing.Collection[str]) -> None:
    """An eps every one of the suite's attacks is run at: its L-inf attacks bound it by 1. An
    L2 radius above 1 is refused with the way out: evaluator.eps follows attack.eps, so an L2
    run with the default (L-inf) suite lands here without the user having set it."""
    norm = "linf" if "linf" in norms or not norms else "l2"
    if norm == "linf" and math.isfinite(value) and value > 1.0:
        raise ConfigError(
            f"{key}={value}: must be in [0, 1] for the L-inf attacks of evaluator.attacks; an "
            "L2 radius needs L2 attacks there, e.g. evaluator=quick_l2"
        )
    _eps(key, value, norm)


_EPS_HINT = " (inputs are in [0, 1]; e.g. 0.1 or 8/255)"


def _unit(key: str, value: float, hint: str = "") -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}={value}: must be in [0, 1]{hint}")


def _open_unit(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{key}={value}: must be strictly between 0 and 1")


def _one_line(e: OmegaConfBaseException, root: Any = TrainConfig) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    key = getattr(e, "full_key", None)
    node = getattr(e, "value", None)
    if key and isinstance(e, ValidationError) and _value_of(node) is None:
        return _null_value(str(key), root)
    missing = re.match(r"Interpolation key '([^']+)' not found", msg)
    if key and missing:  # ${...} names a key that is not set, e.g. after ~data
        ref = missing.group(1)
        group, dot, _ = ref.partition(".")
        fix = f"choose {group}=<option> (see --help) or set {ref}" if dot else "set it"
        return f"{key} refers to {ref}, which is not set: {fix}"
    wrong = _WRONG_TYPE.search(msg)
    if key and wrong:
        return _wrong_type(str(key), _value_of(node), wrong.group("to") or "bool", root)
    if key and "is not a ListConfig, list or tuple" in msg:  # OmegaConf's words for a scalar
        node = getattr(e, "value", None)
        value = node._value() if isinstance(node, ValueNode) else node
        return f"{key}={value}: must be a list, e.g. {key}=[{value}]"
    return f"{key}: {msg}" if key and key not in msg else msg


#: OmegaConf's words for a value of the wrong type: "... could not be converted to Integer",
#: "... is not a valid bool"
_WRONG_TYPE = re.compile(r"could not be converted to (?P<to>Integer|Float)|is not a valid bool")
_KINDS = {"Integer": "a whole number", "Float": "a number", "bool": "true or false"}


def _wrong_type(key: str, value: Any, to: str, root: Any) -> str:
    """``key=value`` of the wrong type: what the key takes, with its default as the example
    (OmegaConf says only that the value "could not be converted to Integer")."""
    whole = re.sub(r"\[\d+\]$", "", key)
    try:
        default = OmegaConf.select(OmegaConf.structured(root), whole)
    except OmegaConfBaseException:
        default = None
    if OmegaConf.is_config(default):
        default = str(OmegaConf.to_container(default)).replace(" ", "")
    if isinstance(default, bool):
        default = str(default).lower()
    example = f", e.g. {whole}={default}" if default not in (None, "[]") else ""
    if not example and whole != key and to in ("Float", "Integer"):  # an item of a list
        example = f", e.g. {whole}=[{'0.1,8/255' if to == 'Float' else '100'}]"
    elif not example and to == "Float":
        example = f", e.g. {whole}=0.1 or {whole}=8/255"
    elif not example and to == "Integer":
        example = f", e.g. {whole}=100"
    return f"{key}={value}: must be {_KINDS[to]}{example}"


def _value_of(node: Any) -> Any:
    return node._value() if isinstance(node, ValueNode) else node


def _null_value(key: str, root: Any) -> str:
    """``key=null`` where the schema needs a value: say so, with the default as the example."""
    whole = re.sub(r"\[\d+\]$", "", key)  # a null inside a list: show the list's default
    try:
        default = OmegaConf.select(OmegaConf.structured(root), whole)
    except OmegaConfBaseException:
        default = None
    if whole != key:
        shown = str(OmegaConf.to_container(default)).replace(" ", "") if default else "[...]"
        return f"{key}=null: the list needs a value there, e.g. {whole}={shown}"
    if isinstance(default, ListConfig | list) or (
        default is not None and not OmegaConf.is_config(default)
    ):
        shown = OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
        shown = str(shown).replace(" ", "")
        return f"{key}=null: must be set, e.g. {key}={shown}"
    return f"{key}=null: must be set; leave it out to keep the default"


def _unknown_key(e: ConfigKeyError, root: Any = TrainConfig) -> str:
    full_key = str(getattr(e, "full_key", "") or "")
    parent, _, leaf = full_key.rpartition(".")
    valid = _keys_at(parent, root)
    hint = difflib.get_close_matches(leaf, valid, n=1)
    maybe = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    where = f" of {parent}" if parent else ""
    return f"{full_key}: no such key{maybe}; valid keys{where}: {', '.join(valid)}"


def _keys_at(path: str, root: Any = TrainConfig) -> list[str]:
    cls: Any = root
    for part in [p for p in path.split(".") if p]:
        hints = typing.get_type_hints(cls)
        cls = hints.get(re.sub(r"\[\d+\]$", "", part))
        cls = _dataclass_in(cls)
        if cls is None:
            return []
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _dataclass_in(tp: Any) -> Any:
    """The dataclass inside ``tp`` (itself, ``X | None`` or ``list[X]``), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


def _float_field(tp: Any) -> bool:
    if tp is float:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list):
        return any(_float_field(arg) for arg in typing.get_args(tp))
    return False


def _coerce_fractions(node: Any, cls: Any, path: str = "") -> None:
    """Replace 'a/b' strings by floats wherever the schema expects a float."""
    if not (isinstance(node, dict) and dataclasses.is_dataclass(cls)):
        return
    hints = typing.get_type_hints(cls)
    for key, value in node.items():
        tp = hints.get(key)
        if tp is None:
            continue
        where = f"{path}{key}"
        if isinstance(value, str) and _float_field(tp):
            node[key] = parse_fraction(value, where)
        elif isinstance(value, list):
            sub = _dataclass_in(tp)
            for i, item in enumerate(value):
                if sub is not None:
                    _coerce_fractions(item, sub, f"{where}[{i}].")
                elif _float_field(tp):
                    value[i] = parse_fraction(item, f"{where}[{i}]")
        else:
            _coerce_fractions(value, _dataclass_in(tp), f"{where}.")
