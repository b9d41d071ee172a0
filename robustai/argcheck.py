"""Kinds and bounds of plain arguments, shared by the library's argument checks.

One place for "a whole number" and "a real number", so that every part accepts the same
values: numpy's scalars (``np.int64`` from ``np.arange``, ``np.float32``) count, bools do not
(``True`` is an ``int`` to Python, but never a sensible count, seed or step size).
"""

from __future__ import annotations

import numbers

#: The largest L2 eps taken (by the attacks and the config checks alike): an L2 ball of radius
#: sqrt(d) covers all of [0, 1]^d (8 for 8x8 images, 388 for 3x224x224), so no image of up to
#: 10^8 values needs more. Far larger radii overflow float32 inside the attacks (squares past
#: 3.4e38): PGD then returned x unchanged and Square NaN, without a word.
MAX_L2_EPS = 1e4

#: Seeds are taken in [0, 2**62), as the config check of ``trainer.seed`` and
#: ``privacy.noise_seed`` takes them: torch's generators take a 64-bit integer, and seeds derived
#: from a run's (offsets per DDP rank) must stay in range too.
SEED_LIMIT = 2**62


def is_integer(value: object) -> bool:
    """A whole number (Python's or numpy's, e.g. from ``np.arange``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (Python's or numpy's, e.g. ``np.float32``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool (NumPy's too), or a one-line TypeError: ``bool("False")`` is
    True, so a flag given as text would silently mean the opposite of what it says."""
    import numpy as np  # here: the config checks import this module before numpy and torch

    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_seed(name: str, value: object) -> int | None:
    """``value`` as an int if it is a whole number in [0, 2**62), or None (a seed from the
    operating system's entropy); else a one-line TypeError or ValueError now, not torch's
    "invalid literal for int()" or "Overflow" at the first draw (and 1.5 silently truncated)."""
    if value is None:
        return None
    if not is_integer(value):
        raise TypeError(f"{name} must be a whole number or None (OS entropy); got {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name}={value}: must be a whole number in [0, 2**62), e.g. 0")
    return int(value)
