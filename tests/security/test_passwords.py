"""Password hashing: argon2id with OWASP parameters, deprecated schemes upgraded, the policy."""

from __future__ import annotations

import pytest
from passlib.hash import bcrypt, pbkdf2_sha256

from robustai.security import PASSWORD_CONTEXT, check_password_policy, hash_password
from robustai.security.errors import PasswordPolicyError
from robustai.security.passwords import PBKDF2_ROUNDS, verify_password

PASSWORD = "correct horse battery staple"


def test_new_hashes_are_argon2id_with_owasp_parameters() -> None:
    h = hash_password(PASSWORD)
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in h
    assert hash_password(PASSWORD) != h  # salted


def test_verify_accepts_the_password_and_nothing_else() -> None:
    h = hash_password(PASSWORD)
    assert verify_password(PASSWORD, h) == (True, None)  # current scheme: no rehash
    assert verify_password(PASSWORD + " ", h) == (False, None)
    assert verify_password("", h) == (False, None)
    assert verify_password(PASSWORD, "not a hash") == (False, None)


@pytest.mark.parametrize(
    "legacy",
    [
        pbkdf2_sha256.using(rounds=PBKDF2_ROUNDS).hash(PASSWORD),
        pbkdf2_sha256.using(rounds=29_000).hash(PASSWORD),  # passlib's old default
        bcrypt.using(rounds=4).hash(PASSWORD),
    ],
    ids=["pbkdf2-600k", "pbkdf2-29k", "bcrypt"],
)
def test_deprecated_hashes_verify_and_are_upgraded_to_argon2id(legacy: str) -> None:
    ok, new = verify_password(PASSWORD, legacy)
    assert ok and new is not None and new.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(PASSWORD, new) == (True, None)
    assert verify_password("wrong password!!", legacy) == (False, None)


def test_pbkdf2_is_configured_at_600k_rounds_never_passlib_default() -> None:
    h = PASSWORD_CONTEXT.handler("pbkdf2_sha256").hash(PASSWORD)
    assert h.startswith(f"$pbkdf2-sha256${PBKDF2_ROUNDS}$")
    assert PASSWORD_CONTEXT.needs_update(pbkdf2_sha256.using(rounds=29_000).hash(PASSWORD))


def test_weaker_argon2_parameters_are_upgraded() -> None:
    from passlib.hash import argon2

    weak = argon2.using(type="ID", memory_cost=1024, time_cost=1).hash(PASSWORD)
    ok, new = verify_password(PASSWORD, weak)
    assert ok and new is not None and "m=19456,t=2,p=1" in new


@pytest.mark.parametrize(
    ("password", "user", "rule"),
    [
        ("short pass", "alice", "at least 12"),
        ("x" * 11, "alice", "at least 12"),
        ("alice.example", "alice.example", "user name"),
        ("Alice.Example", "alice.example", "user name"),
        ("y" * 1025, "alice", "too long"),
        (" " * 12, "alice", "at least 12"),  # whitespace only
        ("abc" + " " * 9, "alice", "at least 12"),  # padded with spaces
        ("\t" * 6 + "abcdef", "alice", "at least 12"),
        ("a" + "\u200b" * 11, "alice", "at least 12"),  # zero-width spaces
        ("ab\u00ad" * 4, "alice", "at least 12"),  # soft hyphens
        ("e" + "\u0301" * 11, "alice", "at least 12"),  # combining accents
        ("\u200b" + " " * 11 + "a", "alice", "at least 12"),  # spaces behind an invisible one
        ("a" + " " * 11 + "\u00ad", "alice", "at least 12"),
        ("\u3164" * 11 + "a", "alice", "at least 12"),  # Hangul fillers (letters to Unicode)
        ("a\u115f\u1160\uffa0" * 3, "alice", "at least 12"),
        ("\u2800" * 11 + "a", "alice", "at least 12"),  # the blank Braille pattern
    ],
)
def test_policy_refuses(password: str, user: str, rule: str) -> None:
    with pytest.raises(PasswordPolicyError, match=rule):
        check_password_policy(password, user)


def test_policy_accepts_a_long_passphrase() -> None:
    check_password_policy("x" * 12, "alice")
    check_password_policy(PASSWORD, "alice")
    check_password_policy("  mot de passe très long  ", "alice")  # inner spaces count
    check_password_policy("пароль-пароль", "alice")  # letters of any script count
