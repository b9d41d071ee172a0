"""Errors of the access layer; all are bad input, so the CLI reports them in one line."""

from __future__ import annotations

from robustai.errors import UserError


class AccessError(UserError):
    """An access-store request cannot be done: unknown user, bad role or pattern, bad file."""


class PasswordPolicyError(AccessError):
    """A new password does not meet the policy (the message says which rule)."""


class SigningKeyError(UserError):
    """``ROBUSTAI_SIGNING_KEY`` is set but unusable (too short)."""
