"""Adversarial attacks under an L-inf / L2 threat model, in [0,1] pixel units.

>>> from robustai.attacks import PGD
>>> x_adv = PGD(eps=8 / 255, steps=10)(model, x, y)  # doctest: +SKIP

Registered: FGSM, PGD, APGD (CE / DLR), APGD-T (targeted DLR) and Square (black-box).
"""

from robustai.attacks.apgd import APGD, APGDT
from robustai.attacks.base import Attack
from robustai.attacks.fgsm import FGSM
from robustai.attacks.pgd import PGD
from robustai.attacks.registry import ATTACKS, AttackArgumentError, attack_names, build_attack
from robustai.attacks.square import Square

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackArgumentError",
    "Square",
    "attack_names",
    "build_attack",
]
