"""Adversarial attacks under an L-inf / L2 threat model, in [0,1] pixel units.

>>> from robustai.attacks import PGD
>>> x_adv = PGD(eps=8 / 255, steps=10)(model, x, y)  # doctest: +SKIP
"""

from robustai.attacks.base import Attack
from robustai.attacks.fgsm import FGSM
from robustai.attacks.pgd import PGD
from robustai.attacks.registry import ATTACKS, AttackArgumentError, attack_names, build_attack

__all__ = [
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackArgumentError",
    "attack_names",
    "build_attack",
]
