"""Experiment access: password hashing, the user/grant/token store, redaction and signing.

Everything here takes plain arguments and works without Hydra; the CLI (``robustai users``,
``robustai dashboard``) and the training pipeline call into it.
"""

from robustai.security.errors import AccessError, PasswordPolicyError, SigningKeyError
from robustai.security.passwords import (
    PASSWORD_CONTEXT,
    check_password_policy,
    hash_password,
    verify_password,
)
from robustai.security.redact import (
    REDACTED,
    SecretFilter,
    is_secret_key,
    redact_tree,
    scrub_text,
    secret_env_values,
)
from robustai.security.roles import ACTIONS, ROLES, Grant, allows, experiment_of
from robustai.security.signing import (
    ENV_SIGNING_KEY,
    sign_meta,
    signing_key_from_env,
    verify_meta,
)
from robustai.security.store import ENV_DB, AccessStore, TokenInfo, User, default_store_path
from robustai.security.throttle import LoginThrottle

__all__ = [
    "ACTIONS",
    "ENV_DB",
    "ENV_SIGNING_KEY",
    "PASSWORD_CONTEXT",
    "REDACTED",
    "ROLES",
    "AccessError",
    "AccessStore",
    "Grant",
    "LoginThrottle",
    "PasswordPolicyError",
    "SecretFilter",
    "SigningKeyError",
    "TokenInfo",
    "User",
    "allows",
    "check_password_policy",
    "default_store_path",
    "experiment_of",
    "hash_password",
    "is_secret_key",
    "redact_tree",
    "scrub_text",
    "secret_env_values",
    "sign_meta",
    "signing_key_from_env",
    "verify_meta",
    "verify_password",
]
