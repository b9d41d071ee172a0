"""Kinds of plain arguments, shared by the library's argument checks.

One place for "a whole number" and "a real number", so that every part accepts the same
values: numpy's scalars (``np.int64`` from ``np.arange``, ``np.float32``) count, bools do not
(``True`` is an ``int`` to Python, but never a sensible count, seed or step size).
"""

from __future__ import annotations

import numbers


def is_integer(value: object) -> bool:
    """A whole number (Python's or numpy's, e.g. from ``np.arange``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (Python's or numpy's, e.g. ``np.float32``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
