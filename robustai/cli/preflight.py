"""Compose and validate a Hydra config before Hydra runs, to report bad input in one line.

Hydra prints multi-line errors and exits 1 for composition problems; robustai promises one line
and exit status 2 for any bad input, before any work starts.
"""

from __future__ import annotations

import difflib
import itertools
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from robustai.config.validate import check_targets
from robustai.errors import ConfigError

# Hydra's own flags; with these the user wants Hydra's output, not a run.
_INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
    "-sc",
}
_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
#: Grid members composed and checked in full (the first ones; each takes a compose).
MAX_COMBINATIONS = 64


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags, overrides) of a command line."""
    flags, overrides = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in _FLAGS_WITH_VALUE and "=" not in arg:
                nxt = next(it, None)
                if nxt is not None and not (arg in ("--cfg", "-c", "--info", "-i") and "=" in nxt):
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return flags, overrides


def preflight(
    config_dir: Path, config_name: str, argv: Sequence[str], check: Callable[[Any], object]
) -> None:
    """Raise :class:`ConfigError` unless every run the command line asks for composes and passes
    ``check`` (which receives the composed DictConfig)."""
    flags, overrides = split_args(argv)
    _check_flags(flags)
    names = [f.split("=")[0] for f in flags]
    if _INFO_FLAGS.intersection(names):
        if {"-m", "--multirun"}.intersection(names) and not {"--help", "-h"}.intersection(names):
            shown = sorted(_INFO_FLAGS.intersection(names))[0]
            raise ConfigError(f"{shown} prints one run's config: drop -m (Hydra allows only one)")
        if {"--shell-completion", "-sc"}.intersection(names) and not any(
            o.split("=", 1)[0] in ("install", "uninstall", "query") for o in overrides
        ):
            raise ConfigError(
                "--shell-completion needs install=SHELL, uninstall=SHELL or query=SHELL, e.g. "
                "-sc install=bash"
            )
        if {"--cfg", "-c", "--info", "-i"}.intersection(names):  # the config must compose
            config_dir, config_name = _primary_config(flags, config_dir, config_name)
            package = _flag_value(flags, ("--package", "-p"))
            for combo in _expand(overrides, multirun=False):
                cfg = _compose_and_check(config_dir, config_name, combo, check, compose_only=True)
                # _global_: Hydra's name for the whole config
                if package and package != "_global_" and _select(cfg, package) is None:
                    raise ConfigError(
                        f"--package {package}: no such part of the config; e.g. -p evaluator"
                    )
        return
    config_dir, config_name = _primary_config(flags, config_dir, config_name)
    multirun = "-m" in names or "--multirun" in names
    if not multirun:
        multirun = _multirun_by_config(config_dir, config_name, overrides)
    combos = _expand(overrides, multirun)
    first = None
    for combo in combos:
        cfg = _compose_and_check(config_dir, config_name, combo, check, multirun)
        first = cfg if first is None else first
    # Search spaces (interval(...) and the sweeper's own params, e.g. from hparams_search=...)
    # are not enumerable: check each value or end point at least once.
    for combo in _search_space_runs(overrides, combos[0], first):
        try:
            _compose_and_check(config_dir, config_name, combo, check, multirun)
        except ConfigError as e:
            raise ConfigError(f"search space: {e}") from e
    if multirun and first is not None:
        _check_study_space(first, overrides)


@dataclass
class SweepPlan:
    """A sweep as the command line asks for it, before Hydra runs it."""

    cfg: Any  # composed without the swept values: the sweep's folder, sweeper and settings
    jobs: list[list[str]] | None  # each job's overrides by hydra.job.num; None: chosen as it goes
    config_dir: Path
    config_name: str
    swept: list[str] = field(default_factory=list)  # the keys the sweep lists values of

    def compose(self, num: int) -> Any:
        """Job ``num``'s composed config (with its ``hydra`` node)."""
        assert self.jobs is not None
        return _compose_and_check(
            self.config_dir, self.config_name, self.jobs[num], lambda _: None, multirun=True
        )


def sweep_plan(config_dir: Path, config_name: str, argv: Sequence[str]) -> SweepPlan | None:
    """For a sweep: its :class:`SweepPlan`, with every job's overrides numbered as Hydra's basic
    sweeper numbers them (``hydra.job.num``), or no jobs where another sweeper (Optuna) chooses
    them as it goes. None for a single run. Call after :func:`preflight`, which has reported any
    bad input."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    flags, overrides = split_args(argv)
    names = {f.split("=")[0] for f in flags}
    if _INFO_FLAGS.intersection(names):
        return None
    config_dir, config_name = _primary_config(flags, config_dir, config_name)
    multirun = bool({"-m", "--multirun"}.intersection(names))
    if not (multirun or _multirun_by_config(config_dir, config_name, overrides)):
        return None
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = _compose_and_check(config_dir, config_name, fixed, lambda _: None, multirun=True)
    plan = SweepPlan(cfg, None, config_dir, config_name)
    if not str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith(
        "BasicSweeper"
    ):
        return plan
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += [o.input_line for o in parsed if not o.is_hydra_override()]
    try:
        parsed_lines = parser.parse_overrides(lines)
        (jobs,) = BasicSweeper.split_arguments(parsed_lines, None)
    except Exception:  # glob() and other sweeps that need Hydra's config loader
        return plan
    plan.swept = [o.key_or_group for o in parsed_lines if o.is_sweep_override()]
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    plan.jobs = [[*hydra_overrides, *job] for job in jobs]
    return plan


def _flag_value(flags: list[str], names: tuple[str, ...]) -> str | None:
    """The value of a flag given as ``--name=value`` or ``--name value``."""
    for i, flag in enumerate(flags):
        name, eq, value = flag.partition("=")
        if name in names:
            return value if eq else (flags[i + 1] if i + 1 < len(flags) else None)
    return None


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _check_flags(flags: list[str]) -> None:
    """Only Hydra's own flags: anything else would end in Hydra's multi-line usage text."""
    from hydra._internal.utils import get_args_parser

    known = [o for a in get_args_parser()._actions for o in a.option_strings]
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name == "--version":  # Hydra's own would print Hydra's version
            raise ConfigError("--version: `robustai --version` prints robustai's version")
        if name == "--experimental-rerun":  # Hydra unpickles the file it is given
            raise ConfigError(
                "--experimental-rerun: robustai never unpickles a file; to run a config again,"
                " give the overrides in the run's .hydra/overrides.yaml"
            )
        if name.startswith("-") and name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            maybe = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(
                f"{name}: unknown option{maybe}; give overrides as key=value (see --help)"
            )
    if {"-h", "--help", "--hydra-help"}.isdisjoint(f.split("=", 1)[0] for f in flags):
        # a known flag with a bad or missing value (--cfg bogus, -p alone, --multirun=3):
        # Hydra's parser says what is wrong, and then prints its whole usage text
        parser = get_args_parser()

        def one_line(message: str) -> NoReturn:
            raise ConfigError(f"{message} (see --help)")

        parser.error = one_line  # type: ignore[method-assign]
        parser.parse_args(flags)


def _multirun_by_config(config_dir: Path, config_name: str, overrides: list[str]) -> bool:
    """Whether a config (such as hparams_search=...) sets hydra.mode=MULTIRUN, as -m does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # _expand reports a bad override
        return False
    if not any(o.is_sweep_override() or o.key_or_group == "hparams_search" for o in parsed):
        return False
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        cfg = _compose_and_check(config_dir, config_name, fixed, lambda _: None)
    except ConfigError:
        if any(o.key_or_group == "hparams_search" for o in parsed):
            raise  # the search needs no -m: "add -m" would hide this error
        return False  # reported with the full check
    return str(cfg.hydra.mode) in ("MULTIRUN", "RunMode.MULTIRUN")


def _search_space_runs(overrides: list[str], base: list[str], cfg: Any) -> list[list[str]]:
    """Runs that together take every search-space value once: interval(...) overrides and
    ``hydra.sweeper.params`` (command-line keys win, as in the Optuna sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    specs: list[tuple[str, str]] = []  # (where it came from, override)
    command_keys = set()
    for o in parser.parse_overrides(overrides):
        command_keys.add(o.key_or_group)
        if o.is_sweep_override() and not o.is_hydra_override() and _endpoints(o) is not None:
            specs.append(("", o.input_line))
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) if cfg else None
    for key, value in (params or {}).items():
        where, spec = f"hydra.sweeper.params.{key}: ", f"{key}={value}"
        if str(key) not in command_keys:
            specs.append((where, spec))
            continue
        try:  # the command line's value is searched, but the sweeper parses this one as well
            parser.parse_overrides([spec])
        except Exception as e:
            raise ConfigError(f"{where}bad search space '{spec}': {_first_line(e)}") from e
    values: list[list[str]] = []
    for where, spec in specs:
        try:
            (o,) = parser.parse_overrides([spec])
        except Exception as e:
            raise ConfigError(f"{where}bad search space '{spec}': {_first_line(e)}") from e
        key = o.get_key_element()
        if not o.is_sweep_override():
            values.append([spec])
            continue
        ends = _endpoints(o)
        if ends is not None:
            _check_interval(where, spec, o.value(), cfg)
        if ends is None:
            try:
                ends = list(o.sweep_string_iterator())
            except Exception:  # glob() needs Hydra's config loader: the sweeper checks it
                continue
        values.append([f"{key}={v}" for v in ends])
    if not values:
        return []
    keys = {v[0].split("=", 1)[0].lstrip("+~") for v in values}
    rest = [o for o in base if o.split("=", 1)[0].lstrip("+~") not in keys]
    return [rest + [v[i % len(v)] for v in values] for i in range(max(len(v) for v in values))]


def _check_interval(where: str, spec: str, interval: Any, cfg: Any) -> None:
    """What the Optuna sweeper would refuse with a traceback once the sweep started: an
    ``interval()`` under Hydra's grid sweeper, a reversed one, a log scale that reaches 0."""
    from omegaconf import OmegaConf

    target = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    shown = _shown(spec)
    if target.endswith("BasicSweeper"):
        key = shown.split("=", 1)[0]
        raise ConfigError(
            f"{where}'{shown}': interval() is a search space, which Hydra's grid sweeper cannot"
            f" run; add hydra/sweeper=optuna (or an hparams_search=...), or list values:"
            f" {key}={interval.start:g},{interval.end:g}"
        )
    low, high = interval.start, interval.end
    if low > high:
        raise ConfigError(
            f"{where}'{shown}': the low end {low:g} is above the high end {high:g};"
            f" write interval({high:g}, {low:g})"
        )
    if "log" in interval.tags and low <= 0:
        raise ConfigError(
            f"{where}'{shown}': a log scale needs a low end above 0, got {low:g};"
            " start it above 0 or drop tag(log, ...)"
        )


def _endpoints(o: Any) -> list[str] | None:
    from hydra.core.override_parser.types import IntervalSweep

    value = o.value()
    return [str(value.start), str(value.end)] if isinstance(value, IntervalSweep) else None


def config_dir_as_searchpath(argv: Sequence[str], main_dir: Path) -> list[str]:
    """The command line with its overrides first, then its flags (as Hydra's parser wants
    them), and ``--config-dir
    X`` as ``hydra.searchpath=[file://<X>]``: Hydra's flag adds a folder
    searched after robustai's own configs (for one's own ``experiment/*.yaml``), which the
    override does too; so the pre-flight check composes what Hydra will run. ``main_dir``:
    robustai's own config folder, where the primary config is looked for first."""
    args, extra = [], None
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in ("--config-dir", "-cd"):
            value = value if eq else next(it, "")
            if not value:
                raise ConfigError(f"{name} needs a folder, e.g. {name} my_configs")
            folder = Path(value).expanduser().resolve()
            if not folder.is_dir():
                raise ConfigError(f"{name} {value}: no such folder")
            if "'" in str(folder) or "\\" in str(folder):
                raise ConfigError(f"{name} {value}: give a folder whose path has no ' or \\")
            extra = folder
            continue
        args.append(arg)
    # Hydra's parser takes the overrides in one run: one after a flag (`a=1 -m b=2,3`) ended in
    # "unrecognized arguments" and its whole usage text. Overrides go first, then the flags
    # (after a flag whose value is optional, --info, an override would be taken for it).
    flags, overrides = split_args(args)
    if "--hydra-help" in (f.split("=", 1)[0] for f in flags):
        # Hydra's help composes its own config alone, which takes none of the app's keys (an
        # evaluate's checkpoint=... ended in a traceback): they change nothing it prints
        overrides = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    args = [*overrides, *flags]
    if extra is None:
        return args
    if any(a.split("=", 1)[0].lstrip("+") == "hydra.searchpath" for a in args):
        raise ConfigError(
            "--config-dir and hydra.searchpath both add config folders; list them all in"
            " hydra.searchpath=[file://...,file://...]"
        )
    name = _flag_value(flags, ("--config-name", "-cn"))
    if name and (extra / f"{name}.yaml").is_file() and not (main_dir / f"{name}.yaml").is_file():
        raise ConfigError(
            f"--config-name {name}: {name}.yaml is in the --config-dir folder, which adds options"
            " to robustai's config groups (e.g. experiment/*.yaml) and holds no primary config;"
            " use --config-path for a folder of complete configs"
        )
    searchpath = f"hydra.searchpath=['file://{extra}']"  # quoted: a comma is no list separator
    return [*overrides, searchpath, *flags]


def _primary_config(flags: list[str], config_dir: Path, config_name: str) -> tuple[Path, str]:
    """Honour --config-path and --config-name, as Hydra will (--config-dir is an override by
    now: see :func:`config_dir_as_searchpath`)."""
    short = {"--config-path": "cp", "--config-name": "cn", "--config-dir": "cd"}
    values: dict[str, str] = {}
    i = 0
    while i < len(flags):
        name, _, value = flags[i].partition("=")
        if name in short or name in ("-cp", "-cn", "-cd"):
            if not value and i + 1 < len(flags):
                value, i = flags[i + 1], i + 1
            values[short.get(name, name[1:])] = value
        i += 1
    directory = values.get("cd") or values.get("cp")
    if directory:
        config_dir = Path(directory).expanduser().resolve()
        if not config_dir.is_dir():
            raise ConfigError(f"config folder {directory} does not exist")
    return config_dir, values.get("cn", config_name)


def _expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """One override list per run: sweeps (a=1,2) are expanded so that every value is checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except OverrideParseException as e:
        home = next((o for o in overrides if o.partition("=")[2].startswith("~")), None)
        if home is not None:  # a quoted or zsh-kept ~: Hydra's grammar has no bare ~ in values
            key, _, value = home.partition("=")
            raise ConfigError(
                f"bad override '{home}': Hydra reads no value that starts with ~; give"
                f" {key}=$HOME{value[1:]} (the shell expands it) or quote it for Hydra:"
                f" '{key}=\"{value}\"'"
            ) from e
        raise ConfigError(f"bad override: {_first_line(e)}") from e
    choices: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override() and o.is_hydra_override():
            raise ConfigError(_hydra_sweep(o))
        if o.is_sweep_override():
            if not multirun:
                raise ConfigError(
                    f"'{_shown(o.input_line)}' lists several values: add -m to sweep over them"
                )
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # interval() and other search spaces are checked by the sweeper
                continue
            if not values:  # range(1,0): Hydra would launch nothing and call it done
                raise ConfigError(
                    f"'{_shown(o.input_line)}' gives no values: the sweep would run nothing"
                )
            prefix = o.get_key_element()
            choices.append([f"{prefix}={v}" for v in values])
        else:
            choices.append([o.input_line])
    combos = [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]
    return combos or [[]]


def _shown(override: str) -> str:
    """An override as an error message may repeat it: a secret-looking key's value left out
    (the terminal and CI logs keep what they show)."""
    from robustai.security.redact import redact_override

    return redact_override(override)


def _hydra_sweep(o: Any) -> str:
    """Hydra refuses to sweep its own settings (in several lines); a search-space entry written
    under ``hydra.sweeper.params.`` is the usual way to get there."""
    line = _shown(o.input_line)
    key, _, value = line.partition("=")
    prefix = "hydra.sweeper.params."
    if key.lstrip("+~").startswith(prefix):
        fix = f"write {key.lstrip('+~')[len(prefix) :]}={value} to search it"
    else:
        shown = "..." if value == "<redacted>" else value  # a secret's: not repeated
        fix = f"give one value, or quote it to keep it as written: {key}='{shown}'"
    return f"{line}: Hydra's own settings take one value, not a sweep; {fix}"


def _compose_and_check(
    config_dir: Path,
    config_name: str,
    overrides: list[str],
    check: Callable[[Any], object],
    multirun: bool = False,
    compose_only: bool = False,
) -> Any:
    """The composed config (with its ``hydra`` node), once every check passed (with
    ``compose_only``: once it composes, as ``--cfg`` needs to print it)."""
    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            try:
                cfg = compose(
                    config_name=config_name, overrides=overrides, return_hydra_config=True
                )
            except MissingConfigException as e:
                raise ConfigError(_missing_option(e, overrides)) from e
            except yaml.YAMLError as e:  # a config file of one's own (--config-dir) that is
                # no YAML: the parser's words, with the file, line and column
                where = getattr(e, "problem_mark", None)
                at = f" ({where.name}, line {where.line + 1}, column {where.column + 1})"
                problem = getattr(e, "problem", None) or _first_line(e)
                raise ConfigError(
                    f"a config file is not valid YAML: {problem}{at if where else ''}"
                ) from e
            except ConfigCompositionException as e:
                raise ConfigError(_composition_error(e, config_name, overrides)) from e
            except OmegaConfBaseException as e:
                raise ConfigError(_first_line(e)) from e
            except ValueError as e:  # Hydra's words for group=null
                raise ConfigError(_null_group(config_name, overrides) or _first_line(e)) from e
            if compose_only:
                return cfg
            from hydra.core.hydra_config import HydraConfig
            from omegaconf import open_dict, read_write

            if multirun:  # as Hydra sets it for -m: the checks tell a sweep from a single run
                with read_write(cfg), open_dict(cfg):
                    cfg.hydra.mode = "MULTIRUN"

            HydraConfig.instance().set_config(cfg)
            check_targets(cfg, resolve=False)  # names only: nothing imported yet
            _check_env_set(cfg)
            if not multirun:
                _check_sweep_only_values(cfg)
            _check_output_dir(cfg, multirun)
            if multirun:
                _check_search_size(cfg)
            _check_study_storage(cfg)
            check(cfg)
            check_targets(cfg)  # resolved as Hydra will, now that importing is worth it
            if multirun:  # after the config's own checks: a config error is the one to fix
                _check_launcher(cfg)
            return cfg
    finally:
        GlobalHydra.instance().clear()


_SWEEP_ONLY = re.compile(r"\$\{\s*hydra[.:]job\.(num|id)\s*\}")


def _check_sweep_only_values(cfg: Any) -> None:
    """A single run's folder or log file named with ``${hydra.job.num}`` / ``${hydra.job.id}``,
    which Hydra sets for sweep members only: the run failed at its start with a traceback."""
    from omegaconf import DictConfig, OmegaConf

    keys = ["hydra.run.dir"]
    handlers = OmegaConf.select(cfg, "hydra.job_logging.handlers", default=None)
    if isinstance(handlers, DictConfig):
        keys += [f"hydra.job_logging.handlers.{h}.filename" for h in handlers]
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None)
        if not isinstance(node, DictConfig) or leaf not in node:
            continue
        raw = node._get_node(leaf)._value()  # as written, interpolations unresolved
        found = _SWEEP_ONLY.search(raw) if isinstance(raw, str) else None
        if found:
            raise ConfigError(
                f"{key}={raw}: hydra.job.{found.group(1)} is set for sweep members only (-m);"
                " in a single run use e.g. ${hydra.job.name} or ${now:%H-%M-%S}"
            )


def _check_env_set(cfg: Any) -> None:
    """``hydra.job.env_set`` values resolve (e.g. ``${oc.env:NAME}`` of a variable that is
    set); Hydra resolves them only when a job starts, and fails there with a traceback."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    env_set = OmegaConf.select(cfg, "hydra.job.env_set", default=None)
    if not env_set:
        return
    for name in env_set:
        try:
            env_set[name]  # resolves the value's interpolation
        except OmegaConfBaseException as e:
            unset = re.search(r"Environment variable '([^']+)' not found", str(e))
            why = f"environment variable {unset[1]} is not set" if unset else _first_line(e)
            raise ConfigError(
                f"hydra.job.env_set.{name}: {why}; export it before the run"
            ) from e


def _check_output_dir(cfg: Any, multirun: bool) -> None:
    """The run (or sweep) folder must be creatable and writable before Hydra makes it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        target = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException:
        return  # an unresolvable folder is reported by Hydra itself
    if target is not None and not str(target).strip():  # Hydra would write into the cwd
        what = "sweep folder" if multirun else "run folder"
        raise ConfigError(
            f"{key} is empty: give the {what}, e.g. {key}=experiments/mine (left out, runs "
            "land under experiments/)"
        )
    if not target:
        return
    path = Path(str(target)).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problem: str | None = f"{existing} is a file, not a folder"
    else:
        problem = _not_writable(existing)
    if problem:
        raise ConfigError(
            f"cannot write the run folder {path}: {problem}; set {key}=<writable folder>"
        )
    sign = None if multirun else sweep_sign(path)
    if sign:
        # a sweep's own folder: the run's files would land beside its members' folders, and
        # robustai summarize would list the run as a member "." (and might rank it best)
        raise ConfigError(
            f"{key}={target} is a sweep's folder (it holds {sign}): a run there would mix"
            f" its files with the sweep's members; give another {key}"
        )


def sweep_sign(folder: Path) -> str | None:
    """What marks ``folder`` as a sweep's own folder, or None: a grid sweep's multirun.yaml,
    an Optuna search's optimization_results.yaml (it writes no multirun.yaml), or, before a
    search has finished, a member folder (0/, 1/, ...) with its .hydra/ record."""
    for name in ("multirun.yaml", "optimization_results.yaml"):
        if (folder / name).is_file():
            return name
    try:
        members = sorted(p.name for p in folder.iterdir() if p.name.isdigit() and p.is_dir())
    except OSError:
        return None
    return next((f"{m}/.hydra/" for m in members if (folder / m / ".hydra").is_dir()), None)


def _not_writable(folder: Path) -> str | None:
    """Why no file can be created in an existing ``folder``, or None if one can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"{folder} is not writable ({e.strerror})"
    return None


def _check_launcher(cfg: Any) -> None:
    """A Slurm launcher submits with srun, which exists only on a Slurm cluster's machines;
    submitit would otherwise fail with a traceback after the sweep folder was made."""
    from omegaconf import OmegaConf

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if "submitit" in target:
        _check_no_pickled_secrets(cfg)
    _check_launcher_numbers(cfg, target)
    if target.endswith("SlurmLauncher") and shutil.which("srun") is None:
        name = OmegaConf.select(cfg, "hydra.runtime.choices.hydra/launcher", default=None)
        raise ConfigError(
            f"hydra/launcher={name or 'submitit_slurm'} submits to Slurm, but this machine has no"
            " srun: start the sweep on a machine of the cluster, or use"
            " hydra/launcher=submitit_local here"
        )


# Launcher settings that are counts, and the least each takes (None: may be left unset); out of
# range, joblib and submitit failed with tracebacks after the sweep folder was made.
_SUBMITIT_COUNTS = {
    "tasks_per_node": (1, False),
    "nodes": (1, False),
    "timeout_min": (1, False),
    "cpus_per_task": (1, True),
    "gpus_per_node": (0, True),
    "mem_gb": (1, True),
}


def _check_launcher_numbers(cfg: Any, target: str) -> None:
    """The launcher's counts are in range, before the sweep folder is made."""
    from omegaconf import OmegaConf

    from robustai.argcheck import is_integer

    def value(key: str) -> Any:
        return OmegaConf.select(cfg, f"hydra.launcher.{key}", default=None)

    if target.endswith("JoblibLauncher"):
        n_jobs = value("n_jobs")
        if not is_integer(n_jobs) or n_jobs == 0:
            raise ConfigError(
                f"hydra.launcher.n_jobs={n_jobs}: the number of members run at once, a whole"
                " number other than 0 (-1: one per CPU core), e.g. hydra.launcher.n_jobs=2"
            )
    if "submitit" not in target:
        return
    for key, (least, optional) in _SUBMITIT_COUNTS.items():
        v = value(key)
        if v is None and optional:
            continue
        if not is_integer(v) or v < least:
            raise ConfigError(
                f"hydra.launcher.{key}={v}: must be a whole number >= {least}"
                f"{' (or null: not set)' if optional else ''}"
            )
    if target.endswith("LocalLauncher") and value("nodes") != 1:
        raise ConfigError(
            f"hydra.launcher.nodes={value('nodes')}: submitit_local runs on this machine, one"
            " node; set hydra.launcher.nodes=1, or use a Slurm launcher (hydra/launcher=slurm_ddp)"
        )


def _check_no_pickled_secrets(cfg: Any) -> None:
    """submitit pickles each job, command-line overrides included, into the sweep folder's
    ``.submitit/`` (it reads the files back to run and requeue the jobs), where robustai's
    redaction cannot reach: a secret written on the command line would stay there in clear."""
    from omegaconf import OmegaConf

    from robustai.security.redact import is_env_reference, is_secret_key

    overrides = [
        *(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or []),
        *(OmegaConf.select(cfg, "hydra.overrides.hydra", default=None) or []),  # env_set's
    ]
    for override in overrides:
        key, sep, value = str(override).partition("=")
        key = key.strip().lstrip("+~")
        if sep and is_secret_key(key) and not is_env_reference(value.strip()):
            how = (
                "export it before the sweep instead (the jobs inherit the environment)"
                if key.startswith("hydra.job.env_set.")
                else f"export it before the sweep and give {key}='${{oc.env:NAME}}' instead"
            )
            raise ConfigError(
                f"{key}: a secret on the command line would be stored in clear in the sweep"
                f" folder's .submitit/ job files; {how}"
            )


def check_device(cfg: Any, name: str, key: str) -> None:
    """The run's device exists here, before Hydra makes a run folder. Not for a Slurm launcher:
    its jobs run on the cluster's machines, which may have GPUs where the submitting one has
    none; the run checks there again."""
    from omegaconf import OmegaConf

    from robustai.cli.pipeline import resolve_device

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if target.endswith("SlurmLauncher"):
        return
    try:
        resolve_device(name)
    except ConfigError as e:
        raise ConfigError(str(e).replace("trainer.device", key)) from e


def is_optuna_search(cfg: Any) -> bool:
    """Whether a composed config (with its ``hydra`` node) sweeps with the Optuna sweeper."""
    from omegaconf import OmegaConf

    target = OmegaConf.select(cfg, "hydra.sweeper._target_", default=None)
    return "optuna" in str(target or "").lower()


def _check_search_size(cfg: Any) -> None:
    """An Optuna search runs ``n_trials`` trials, ``n_jobs`` at a time: both at least 1."""
    from omegaconf import OmegaConf

    if not is_optuna_search(cfg):
        return
    for key in ("n_trials", "n_jobs"):
        value = OmegaConf.select(cfg, f"hydra.sweeper.{key}", default=None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"hydra.sweeper.{key}={value}: must be a whole number >= 1")


def _check_study_storage(cfg: Any) -> Path | None:
    """An Optuna study's database (``hydra.sweeper.storage``) must be one the sweeper can open:
    a URL SQLAlchemy reads, with its driver installed, and for SQLite a file in an existing,
    writable folder (SQLite creates the file, not its folder)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from robustai.security.redact import scrub_text

    key = "hydra.sweeper.storage"
    try:
        storage = OmegaConf.select(cfg, key, default=None)
    except OmegaConfBaseException:
        return  # an unresolvable value is reported by Hydra itself
    if storage is None or not isinstance(storage, str):
        return  # None: the study lives in memory; objects are the sweeper's to check
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = scrub_text(storage, pairs=False)
    try:
        url = make_url(storage)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise ConfigError(
            f"{key}={shown}: not a database URL SQLAlchemy knows ({_first_line(e)});"
            " e.g. sqlite:///study.db"
        ) from e
    load_driver = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
    try:
        load_driver()
    except ImportError as e:
        raise ConfigError(
            f"{key}={shown}: the {url.get_backend_name()} driver is not installed"
            f" ({_first_line(e)}); install it or use sqlite:///<file>"
        ) from e
    if url.get_backend_name() != "sqlite":
        return
    if url.host or url.port or url.username or url.password:
        raise ConfigError(
            f"{key}={shown}: an SQLite URL has no host or user; write sqlite:///<relative path>"
            " or sqlite:////<absolute path>"
        )
    if url.database in (None, "", ":memory:"):
        return
    path = Path(url.database).absolute()  # as SQLite opens it: no ~ expansion
    if path.is_dir():
        problem: str | None = f"{path} is a folder"
    elif not path.parent.is_dir():
        problem = f"folder {path.parent} does not exist"
    else:
        problem = _not_writable(path.parent)
    if problem:
        raise ConfigError(
            f"{key}={shown}: cannot keep the study in {path.name}: {problem};"
            " point it at a file in a writable folder"
        )
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as f:
            header = f.read(16)
        if header != b"SQLite format 3\x00":
            raise ConfigError(
                f"{key}={shown}: {path} is not an SQLite database; name a new file, or the"
                " study file of an earlier search"
            )
        _check_stored_study(cfg, path, storage, f"{key}={shown}")
        return path
    return None


def _check_study_space(cfg: Any, overrides: list[str]) -> None:
    """A stored study continued with another search space (``choice(0.1,0.12)`` where it
    had ``interval(...)``, or other choices) makes Optuna fail at the first trial it asks for,
    with a traceback, after adding a trial that stays RUNNING in the study for good. The
    search space is assembled as the Optuna sweeper assembles it: ``hydra.sweeper.params``,
    then the command line's."""
    from omegaconf import OmegaConf

    path = _check_study_storage(cfg)
    if path is None:
        return
    storage = str(OmegaConf.select(cfg, "hydra.sweeper.storage"))
    study = _stored_study(cfg, path, storage, "hydra.sweeper.storage")
    if study is None:
        return
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    search = [f"{k}={v}" for k, v in params.items()]
    search += [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    try:
        wanted, _ = create_params_from_overrides(search)
    except Exception:  # the sweeper reports a search space it cannot read
        return
    for trial in study.get_trials(deepcopy=False):
        for param, stored in trial.distributions.items():
            if param not in wanted:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(stored, wanted[param])
            except ValueError as e:
                raise ConfigError(
                    f"hydra.sweeper.study_name={study.study_name}: the study in {path.name}"
                    f" searched {param} over another space ({_first_line(e)}); give another"
                    " study_name, or the search space it had"
                ) from e


def _stored_study(cfg: Any, path: Path, storage: str, shown: str) -> Any:
    """The study a search continues (``hydra.sweeper.study_name`` in an existing SQLite file),
    or None for a new one."""
    import sqlite3

    from omegaconf import OmegaConf

    name = OmegaConf.select(cfg, "hydra.sweeper.study_name", default=None)
    if name is None or not is_optuna_search(cfg):
        return None  # no name: the sweeper makes a new study with a fresh one
    try:  # read-only: the check must not add Optuna's tables to someone's other database
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            has_studies = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='studies'"
            ).fetchone()
    except sqlite3.Error as e:
        raise ConfigError(f"{shown}: cannot read {path.name} ({e})") from e
    if not has_studies:
        return None
    import optuna

    try:
        return optuna.load_study(study_name=str(name), storage=storage)
    except KeyError:
        return None  # a new study in an existing file
    except Exception as e:  # an Optuna schema this version cannot read, a damaged file, ...
        raise ConfigError(f"{shown}: cannot read study {name} ({_first_line(e)})") from e


def _check_stored_study(cfg: Any, path: Path, storage: str, shown: str) -> None:
    """A study the search continues must have the search's objectives: Optuna cannot change a
    stored study's directions."""
    from omegaconf import OmegaConf

    study = _stored_study(cfg, path, storage, shown)
    if study is None:
        return
    name = study.study_name
    raw = OmegaConf.select(cfg, "hydra.sweeper.direction", default="minimize")
    given = [raw] if isinstance(raw, str) or not OmegaConf.is_list(raw) else list(raw)
    wanted = [str(getattr(d, "name", d)).lower() for d in given]
    stored = [d.name.lower() for d in study.directions]
    if wanted != stored:
        raise ConfigError(
            f"hydra.sweeper.study_name={name}: the study in {path.name} has"
            f" direction=[{','.join(stored)}], this search [{','.join(wanted)}]"
            " (Optuna cannot change them); give another study_name"
        )


def _missing_option(e: Exception, overrides: list[str]) -> str:
    options = list(getattr(e, "options", None) or [])
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    group, _, choice = missing.rpartition("/")
    if group and options:
        hint = difflib.get_close_matches(choice, options, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        return f"{group}={choice}: unknown option{maybe}; valid: {', '.join(sorted(options))}"
    if _first_line(e).startswith("Cannot find primary config"):  # --config-name/--config-path
        return (
            f"{_first_line(e).rstrip('.')}: --config-name names robustai's own (train, evaluate)"
            " and --config-path a folder holding it; to add options of your own, leave both"
            " out and give --config-dir <folder>"
        )
    return _first_line(e)


def _null_group(config_name: str, overrides: list[str]) -> str | None:
    """``group=null`` (e.g. ``experiment=null``, as the defaults list writes it) is not an
    option: say which options the group has, and whether ``~group`` leaves it out."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    for o in OverridesParser.create().parse_overrides(overrides):
        group = o.key_or_group
        if o.is_delete() or o.value() is not None:
            continue
        options = loader.get_group_options(group)
        if not options:
            continue
        message = (
            f"{group}=null: {group} is a config group: choose one of its options (valid: "
            f"{', '.join(options)})"
        )
        rest = [x for x in overrides if x != o.input_line]
        try:  # a group that is null by default (experiment, hparams_search) can be left out
            cfg = compose(config_name=config_name, overrides=rest, return_hydra_config=True)
            optional = cfg.hydra.runtime.choices.get(group, "") is None
        except Exception:  # another override is bad too: it is reported once this one is fixed
            optional = False
        return f"{message}, or leave it out with ~{group}" if optional else message
    return None


def _composition_error(e: Exception, config_name: str, overrides: list[str]) -> str:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return _unknown_key(m.group(1), config_name, overrides)
    m = re.search(r"Multiple values for (\S+?)\.? ", text)
    added = m and next((o for o in overrides if o.startswith(f"+{m.group(1)}=")), None)
    if added:  # `+experiment=x` where the defaults list already has the group
        return f"{added}: {m.group(1)} is already in the defaults; drop the +: {added[1:]}"
    cause = e.__cause__
    if cause is not None and str(cause) and _first_line(cause) not in text:
        return f"{_first_line(e)}: {_first_line(cause)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # "ConfigKeyError raised while composing:"
        key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
        return f"{lines[0]} {lines[1]}" + (f" ({key})" if key else "")
    return _first_line(e)


def _unknown_key(key: str, config_name: str, overrides: list[str]) -> str:
    """Name the valid keys at the misspelt key's level, composed without the bad override."""
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    valid: list[str] = []
    root = None
    try:
        root = compose(config_name=config_name, overrides=rest)
        node = OmegaConf.select(root, parent) if parent else root
        if isinstance(node, DictConfig):
            valid = [str(k) for k in node]
    except Exception:  # best effort: the message stays useful without the list
        valid = []
    if parent and not valid and isinstance(root, DictConfig):  # the misspelling is above
        near = _near_path(root, key.split("."))
        if near:
            return f"{key}: no such key (did you mean {near}?)"
    where = f" of {parent}" if parent else ""
    listing = f"; valid keys{where}: {', '.join(valid)}" if valid else ""
    if re.fullmatch(r"(.+\.)?attacks\.\d+", parent) and leaf in _attack_fields():
        # an attack setting the entry's config file does not list: Hydra adds keys with +
        sets = f" (the entry sets {', '.join(valid)})" if valid else ""
        return f"{key}: not set in this attack entry; add it with +{key}=<value>{sets}"
    if parent == "attack" and leaf in _attack_fields() and "name" in valid:
        takes = _attack_taking(node.get("name"), leaf, valid)
        if takes is not None:
            return takes
    groups = [] if parent else _top_groups()
    if config_name == "evaluate" and leaf in groups and leaf not in valid and valid:
        # a group of train's config (attack=pgd; evaluate's attacks are its evaluator's)
        own = [g for g in groups if g in valid]
        return (
            f"{key}: {leaf} is no config group of robustai evaluate (its groups:"
            f" {', '.join(own)}); {leaf}=<option> is for robustai train"
        )
    below = _sections_with(root, leaf) if not parent and leaf not in groups else []
    if below:  # epochs=3: a setting of a section (trainer.epochs)
        listing = f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"{key}: no such key (did you mean {' or '.join(below)}?){listing}"
    hint = difflib.get_close_matches(leaf, [*valid, *groups], n=1)
    maybe = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    if hint and hint[0] in groups and hint[0] not in valid:  # a group chosen by option name
        maybe = f" (did you mean the config group {hint[0]}, e.g. {hint[0]}=<option>?)"
    return f"{key}: no such key{maybe}{listing}"


def _sections_with(root: Any, leaf: str) -> list[str]:
    """``<section>.<leaf>`` for each top-level section of ``root`` that has key ``leaf``."""
    from omegaconf import DictConfig

    if not isinstance(root, DictConfig):
        return []
    found = []
    for section in root:
        try:
            node = root._get_node(section)
        except Exception:
            continue
        if isinstance(node, DictConfig) and leaf in node:
            found.append(f"{section}.{leaf}")
    return found


def _near_path(root: Any, parts: list[str]) -> str | None:
    """``tranier.epochs`` -> ``trainer.epochs``: each part matched among the keys at its level
    (None where one has no close match)."""
    from omegaconf import DictConfig

    node, found = root, []
    for part in parts:
        if not isinstance(node, DictConfig):
            return None
        keys = [str(k) for k in node]
        close = [part] if part in keys else difflib.get_close_matches(part, keys, n=1)
        if not close:
            return None
        match = close[0]
        found.append(match)
        node = node._get_node(match)
    return ".".join(found)


def _top_groups() -> list[str]:
    """The config groups (``experiment``, ``hparams_search``...; empty by default ones are no
    key of the composed config, so a misspelt one would find no close match among the keys)."""
    from hydra.core.global_hydra import GlobalHydra

    try:
        return [g for g in GlobalHydra.instance().config_loader().list_groups("") if g != "hydra"]
    except Exception:  # best effort, as for the keys
        return []


def _attack_taking(name: object, leaf: str, valid: list[str]) -> str | None:
    """For a setting some attack takes that ``attack=<name>``'s config file does not list
    (``attack.steps=5`` under FGSM): whether this attack takes it (then Hydra needs a +) or
    which attacks do; None where the name is not an attack's."""
    from robustai.attacks import ATTACKS
    from robustai.attacks.registry import accepted_kwargs

    if not isinstance(name, str) or name not in ATTACKS:
        return None
    if leaf in accepted_kwargs(ATTACKS[name]):
        return (
            f"attack.{leaf}: not set in attack={name}'s config; add it with +attack.{leaf}=<value>"
        )
    others = [n for n, cls in ATTACKS.items() if leaf in accepted_kwargs(cls)]
    which = f" ({', '.join(others)} take it)" if others else ""
    return (
        f"attack.{leaf}: attack {name!r} does not take {leaf}{which}; valid keys of attack:"
        f" {', '.join(valid)}"
    )


def _attack_fields() -> set[str]:
    import dataclasses

    from robustai.config.schema import AttackConfig

    return {f.name for f in dataclasses.fields(AttackConfig)}


def _first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, with the reason Hydra gives on its second line for an
    override it could not evaluate ("Error parsing override 'x=choice()'" said nothing of
    "empty choice is not legal")."""
    from hydra.errors import OverrideParseException

    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    first = lines[0] if lines else type(e).__name__
    why = e.__cause__
    if isinstance(e, OverrideParseException) and why is not None and str(why):
        return f"{first}: {str(why).splitlines()[0]}"
    return first
