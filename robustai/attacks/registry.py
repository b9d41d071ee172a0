"""Name -> attack class registry and its factory.

Tests iterate over :data:`ATTACKS`, so an attack is covered by the invariant tests as soon as it
is registered here. The "none" (no attack) choice is the caller's business, not the registry's.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from robustai.attacks.apgd import APGD, APGDT
from robustai.attacks.base import Attack
from robustai.attacks.fgsm import FGSM
from robustai.attacks.pgd import PGD
from robustai.attacks.square import Square

logger = logging.getLogger(__name__)

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "apgd": APGD,
    "apgd_t": APGDT,
    "square": Square,
}


class AttackArgumentError(ValueError, TypeError):
    """An argument the attack class does not accept (a ValueError, and a TypeError as Python
    itself would raise for an unexpected keyword)."""


def attack_names() -> list[str]:
    """Registered attack names, in registration order."""
    return list(ATTACKS)


def accepted_kwargs(cls: type[Attack]) -> list[str]:
    """Keyword arguments accepted by ``cls.__init__``."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def build_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` with ``kwargs``.

    Strict on purpose: an unknown name or an argument the class does not accept fails with a
    message that lists what is valid, rather than being silently dropped.
    """
    try:
        cls = ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(attack_names())}") from None
    accepted = accepted_kwargs(cls)
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise AttackArgumentError(
            f"attack {name!r} got unexpected argument(s) {', '.join(unexpected)};"
            f" accepted: {', '.join(accepted)}"
        )
    return cls(**kwargs)
