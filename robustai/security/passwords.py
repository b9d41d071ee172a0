"""Password hashing and the password policy, behind one passlib ``CryptContext``.

argon2id is the only scheme used for new hashes, with OWASP's minimum parameters (19 MiB memory,
2 iterations, 1 lane). bcrypt and pbkdf2_sha256 hashes (for example imported from another system)
still verify but are marked deprecated, so a successful login replaces them with argon2id
(:func:`verify_password` returns the new hash). pbkdf2_sha256 is pinned at 600,000 rounds; passlib's
own default (29,000) is far below today's guidance and is never used.
"""

from __future__ import annotations

import unicodedata

from passlib.context import CryptContext

from robustai.security.errors import PasswordPolicyError

ARGON2_MEMORY_KIB = 19 * 1024  # OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
PBKDF2_ROUNDS = 600_000  # OWASP minimum for PBKDF2-HMAC-SHA256
BCRYPT_ROUNDS = 12

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing cost must not be steerable by a huge input

PASSWORD_CONTEXT = CryptContext(
    schemes=["argon2", "bcrypt", "pbkdf2_sha256"],
    default="argon2",
    deprecated=["bcrypt", "pbkdf2_sha256"],
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_KIB,
    argon2__time_cost=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
    bcrypt__default_rounds=BCRYPT_ROUNDS,
    pbkdf2_sha256__default_rounds=PBKDF2_ROUNDS,
    pbkdf2_sha256__min_rounds=PBKDF2_ROUNDS,
)


def counted_length(password: str) -> int:
    """The characters the minimum length counts: not the whitespace around the password, not
    invisible ones (zero-width spaces, soft hyphens, controls) and not combining marks, which
    pad a short password to the length without making it harder to guess."""
    # Invisible characters go first: one at an end would otherwise shelter the spaces beside
    # it from strip() ("\u200b" + 11 spaces + "a" counted 12).
    text = unicodedata.normalize("NFC", password)
    visible = "".join(
        c
        for c in text
        if unicodedata.category(c) not in ("Cc", "Cf", "Mn", "Me") and c not in _BLANK_LETTERS
    )
    return len(visible.strip())


#: characters that draw nothing but are letters or symbols to Unicode (Hangul fillers, the
#: blank Braille pattern), so the categories above let them through
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def check_password_policy(password: str, user: str) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` may be set for ``user``."""
    if not isinstance(password, str):  # bytes or None: no policy, and no length, to check
        raise TypeError(f"password must be text (str); got {type(password).__name__}")
    counted = counted_length(password)
    if counted < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters, not counting "
            f"surrounding spaces or invisible characters (got {counted}); a passphrase of "
            "several words is easy to remember"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip().casefold() == user.strip().casefold():
        raise PasswordPolicyError("password must not be the user name")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (policy is checked by the caller, who knows the user)."""
    return PASSWORD_CONTEXT.hash(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """(matches, replacement hash or None): a deprecated or weaker hash is upgraded on success."""
    if len(password) > MAX_PASSWORD_LENGTH:
        PASSWORD_CONTEXT.dummy_verify()
        return False, None
    try:
        return PASSWORD_CONTEXT.verify_and_update(password, stored_hash)
    except ValueError:  # not a hash this context knows: never matches
        PASSWORD_CONTEXT.dummy_verify()
        return False, None


def dummy_verify() -> None:
    """Spend the time of one verification, so an unknown user name answers as slowly as a known."""
    PASSWORD_CONTEXT.dummy_verify()


def is_known_hash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` is a hash of a scheme this context accepts."""
    try:
        return PASSWORD_CONTEXT.identify(stored_hash) is not None
    except ValueError:
        return False
