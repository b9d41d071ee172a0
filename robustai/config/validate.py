"""Turn a composed config into a checked :class:`TrainConfig`, or one clear :class:`ConfigError`."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from robustai.config.schema import AttackConfig, TrainConfig
from robustai.errors import ConfigError

_FRACTION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*([0-9]*\.?[0-9]+)\s*$")

ATTACK_NONE = "none"
OBJECTIVES = ("standard", "adversarial")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "onecycle", "cyclic")
NORMS = ("linf", "l2")
MODEL_MODES = ("eval", "train", "keep")


def parse_fraction(value: Any) -> Any:
    """``"8/255"`` -> 0.0313..., so eps and step sizes can be written as papers write them."""
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(f"'{value}' divides by zero; write a fraction like 8/255")
            return float(m.group(1)) / den
    return value


def to_train_config(cfg: DictConfig | dict[str, Any]) -> TrainConfig:
    """Resolve, type-check and range-check a composed train config (ignoring the ``hydra`` node)."""
    try:
        if isinstance(cfg, DictConfig):
            cfg = cfg.copy()
            with open_dict(cfg):
                cfg.pop("hydra", None)  # Hydra's own node resolves only inside a running job
            container = OmegaConf.to_container(cfg, resolve=True)
        else:
            container = dict(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from e
    assert isinstance(container, dict)
    container.pop("hydra", None)
    _coerce_fractions(container, TrainConfig)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), container)
        obj = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key(e)) from e
    except ValidationError as e:
        raise ConfigError(_one_line(e)) from e
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from e
    assert isinstance(obj, TrainConfig)
    validate(obj)
    return obj


def validate(cfg: TrainConfig) -> None:
    """Range and name checks that types alone cannot express."""
    from robustai.attacks import attack_names
    from robustai.data import data_names
    from robustai.models import model_names

    d, t, a, e = cfg.data, cfg.trainer, cfg.attack, cfg.evaluator
    _choice("data.name", d.name, data_names())
    _choice("model.name", cfg.model.name, model_names())
    _choice("attack.name", a.name, [ATTACK_NONE, *attack_names()])
    _at_least("data.batch_size", d.batch_size, 1)
    _at_least("data.eval_batch_size", d.eval_batch_size, 1)
    _open_unit("data.holdout", d.holdout)
    if d.train_size is not None:
        _at_least("data.train_size", d.train_size, 1)
    if d.eval_size is not None:
        _at_least("data.eval_size", d.eval_size, 1)
    _unit("data.eps", d.eps)
    if d.name == "synthetic":
        _at_least("data.num_samples", d.num_samples, 2)
        _at_least("data.num_classes", d.num_classes, 2)
        if len(d.input_shape) != 3 or min(d.input_shape) < 1:
            raise ConfigError(
                f"data.input_shape={d.input_shape}: must be [channels, height, width], all >= 1"
            )
    _check_attack("attack", a, need_eps=a.name != ATTACK_NONE)
    _choice("trainer.objective", t.objective, OBJECTIVES)
    _at_least("trainer.epochs", t.epochs, 1)
    _choice("trainer.optimizer", t.optimizer, OPTIMIZERS)
    _choice("trainer.schedule", t.schedule, SCHEDULES)
    _positive("trainer.lr", t.lr)
    _non_negative("trainer.momentum", t.momentum)
    _non_negative("trainer.weight_decay", t.weight_decay)
    _open_unit("trainer.warmup_fraction", t.warmup_fraction)
    _non_negative("trainer.eps_warmup_epochs", t.eps_warmup_epochs)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", t.device):
        raise ConfigError(f"trainer.device={t.device}: must be auto, cpu, cuda, cuda:N or mps")
    _at_least("trainer.watchdog.samples", t.watchdog.samples, 1)
    _at_least("trainer.watchdog.steps", t.watchdog.steps, 1)
    _unit("trainer.watchdog.max_drop", t.watchdog.max_drop)
    if not e.eps:
        raise ConfigError("evaluator.eps is empty: give at least one eps, e.g. evaluator.eps=[0.1]")
    for i, eps in enumerate(e.eps):
        _unit(f"evaluator.eps[{i}]", eps)
    for i, ac in enumerate(e.attacks):
        _choice(f"evaluator.attacks[{i}].name", ac.name, attack_names())
        _check_attack(f"evaluator.attacks[{i}]", ac, need_eps=False)
    if e.samples is not None:
        _at_least("evaluator.samples", e.samples, 1)
    _non_negative("logger.image_grid", cfg.logger.image_grid)


def _check_attack(prefix: str, a: AttackConfig, need_eps: bool) -> None:
    if need_eps and a.eps is None:
        raise ConfigError(
            f"{prefix}.eps is not set: give the attack's eps in [0, 1], e.g. 0.1 or 8/255"
        )
    if a.eps is not None:
        _unit(f"{prefix}.eps", a.eps)
    if a.alpha is not None:
        _positive(f"{prefix}.alpha", a.alpha)
        if a.alpha > 1:
            raise ConfigError(f"{prefix}.alpha={a.alpha}: must be in (0, 1] (pixel units)")
    if a.steps is not None:
        _at_least(f"{prefix}.steps", a.steps, 1)
    if a.restarts is not None:
        _at_least(f"{prefix}.restarts", a.restarts, 1)
    _choice(f"{prefix}.norm", a.norm, NORMS)
    _choice(f"{prefix}.model_mode", a.model_mode, MODEL_MODES)


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


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{key}={value}: must be >= 0")


def _unit(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{key}={value}: must be in [0, 1] (inputs are in [0, 1]; e.g. 0.1 or 8/255)"
        )


def _open_unit(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{key}={value}: must be strictly between 0 and 1")


def _one_line(e: OmegaConfBaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    key = getattr(e, "full_key", None)
    return f"{key}: {msg}" if key and key not in msg else msg


def _unknown_key(e: ConfigKeyError) -> str:
    full_key = str(getattr(e, "full_key", "") or "")
    parent, _, leaf = full_key.rpartition(".")
    valid = _keys_at(parent)
    hint = difflib.get_close_matches(leaf, valid, n=1)
    maybe = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    where = f" of {parent}" if parent else ""
    return f"{full_key}: no such key{maybe}; valid keys{where}: {', '.join(valid)}"


def _keys_at(path: str) -> list[str]:
    cls: Any = TrainConfig
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


def _coerce_fractions(node: Any, cls: Any) -> None:
    """Replace 'a/b' strings by floats wherever the schema expects a float."""
    if not (isinstance(node, dict) and dataclasses.is_dataclass(cls)):
        return
    hints = typing.get_type_hints(cls)
    for key, value in node.items():
        tp = hints.get(key)
        if tp is None:
            continue
        if isinstance(value, str) and _float_field(tp):
            node[key] = parse_fraction(value)
        elif isinstance(value, list):
            sub = _dataclass_in(tp)
            for i, item in enumerate(value):
                if sub is not None:
                    _coerce_fractions(item, sub)
                elif _float_field(tp):
                    value[i] = parse_fraction(item)
        else:
            _coerce_fractions(value, _dataclass_in(tp))
