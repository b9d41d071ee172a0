"""Roles and grants: who may do what, scoped to experiment names.

A grant is a role plus a glob pattern over experiment names (the first path component of a run
under the experiments folder, e.g. ``mnist_small_cnn_pgd`` or ``multirun`` for sweeps). Roles
nest: ``admin`` may manage users, run and view; ``runner`` may run and view; ``viewer`` may view.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from robustai.security.errors import AccessError

ACTIONS = ("view", "run", "manage")
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "runner": frozenset({"view", "run"}),
    "admin": frozenset({"view", "run", "manage"}),
}
MAX_PATTERN_LENGTH = 128
_BAD_PATTERN_CHARS = re.compile(r"[/\\\s\x00-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class Grant:
    """``role`` on every experiment whose name matches the glob ``pattern``."""

    role: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.role}:{self.pattern}"


def check_role(role: str) -> str:
    if role not in ROLES:
        hint = difflib.get_close_matches(role, list(ROLES), n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        raise AccessError(f"unknown role '{role}'{maybe}; valid: {', '.join(ROLES)}")
    return role


def check_pattern(pattern: str) -> str:
    """A glob over experiment names (``*``, ``?``, ``[...]``); no slashes, spaces or controls."""
    if not pattern or len(pattern) > MAX_PATTERN_LENGTH:
        raise AccessError(
            f"experiment pattern must have 1 to {MAX_PATTERN_LENGTH} characters, e.g. 'mnist_*'"
        )
    if _BAD_PATTERN_CHARS.search(pattern):
        raise AccessError(
            f"experiment pattern {pattern!r} may not contain slashes, spaces or control "
            "characters; it matches experiment names such as 'mnist_small_cnn_pgd' (e.g. 'mnist_*')"
        )
    return pattern


def experiment_of(run: str) -> str:
    """The experiment a TensorBoard run belongs to: the first component of its path."""
    run = run.replace("\\", "/").lstrip("/")
    return run.split("/", 1)[0] or "."


def as_grant(grant: Grant | str) -> Grant:
    """``grant`` itself, or a Grant from its text ``ROLE:PATTERN`` (as ``users list`` shows it)."""
    if isinstance(grant, Grant):
        return grant
    if not isinstance(grant, str):
        raise TypeError(f"a grant is a Grant or text 'ROLE:PATTERN'; got {type(grant).__name__}")
    role, sep, pattern = grant.partition(":")
    if not sep:
        raise AccessError(f"grant {grant!r}: expected ROLE:PATTERN, e.g. viewer:mnist_*")
    return Grant(check_role(role), check_pattern(pattern))


def allows(
    grants: Iterable[Grant | str], action: str, experiment: str, scope: str | None = None
) -> bool:
    """Whether ``grants`` (Grants, or their text ``ROLE:PATTERN``) permit ``action`` on
    ``experiment``; a token's ``scope`` narrows them."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    if isinstance(grants, str | Grant):  # one grant where a list belongs
        raise TypeError(f"grants must be a list of grants, e.g. [{str(grants)!r}]")
    if not isinstance(experiment, str):
        raise TypeError(f"experiment must be an experiment's name; got {type(experiment).__name__}")
    held = [as_grant(g) for g in grants]
    if scope is not None and not fnmatchcase(experiment, scope):
        return False
    return any(
        action in ROLES.get(g.role, frozenset()) and fnmatchcase(experiment, g.pattern)
        for g in held
    )
