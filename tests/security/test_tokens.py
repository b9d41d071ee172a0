"""API tokens: random, shown once, stored as a hash, expiring, revocable."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from robustai.security import AccessStore
from robustai.security.errors import AccessError
from robustai.security.tokens import generate_token, parse_token

PW = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AccessStore:
    s = AccessStore(tmp_path / "access.db", create=True, clock=clock)
    s.add_user("alice", PW)
    s.grant("alice", "viewer", "*")
    return s


def test_tokens_are_random_and_well_formed() -> None:
    tokens = {generate_token().token for _ in range(200)}
    assert len(tokens) == 200
    for t in list(tokens)[:20]:
        assert parse_token(t) is not None and len(t) == len("rai_") + 12 + 1 + 43


def test_only_the_hash_is_stored(store: AccessStore) -> None:
    token, info = store.create_token("alice", "mnist_*", store.clock() + 3600)
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT * FROM tokens").fetchall()
    assert len(rows) == 1
    # the secret is everything after "rai_<id>_"; it may itself hold "_" (URL-safe base64)
    secret = token[len("rai_") + len(info.token_id) + 1 :]
    assert len(secret) == 43
    assert token not in repr(rows) and secret not in repr(rows)
    assert hashlib.sha256(token.encode()).hexdigest() in rows[0]
    raw = b"".join(p.read_bytes() for p in store.path.parent.iterdir())
    assert token.encode() not in raw and secret.encode() not in raw
    assert info.token_id in token


def test_valid_token_identifies_user_and_scope(store: AccessStore) -> None:
    token, info = store.create_token("alice", "mnist_*", store.clock() + 3600)
    found = store.verify_token(token)
    assert found is not None
    user, seen = found
    assert user.name == "alice" and seen.scope == "mnist_*" and seen.token_id == info.token_id
    assert store.token_info(info.token_id).last_used == store.clock()


def test_expired_token_is_refused(store: AccessStore, clock: Clock) -> None:
    token, info = store.create_token("alice", "*", clock.now + 60)
    clock.now += 59
    assert store.verify_token(token) is not None
    clock.now += 1
    assert store.verify_token(token) is None
    assert store.token_info(info.token_id).status(clock.now) == "expired"


@pytest.mark.parametrize("expires", [float("nan"), float("inf")])
def test_an_expiry_that_is_not_a_time_is_refused(store: AccessStore, expires: float) -> None:
    with pytest.raises(AccessError, match="must be a finite epoch time"):
        store.create_token("alice", "*", expires)
    assert store.tokens() == []


def test_revoked_token_is_refused(store: AccessStore) -> None:
    token, info = store.create_token("alice", "*", store.clock() + 3600)
    other, _ = store.create_token("alice", "*", store.clock() + 3600)
    store.revoke_token(info.token_id)
    assert store.verify_token(token) is None
    assert store.verify_token(other) is not None  # only that one
    assert store.token_info(info.token_id).status(store.clock()) == "revoked"
    with pytest.raises(AccessError, match="no token"):
        store.revoke_token("doesnotexist")


def test_forged_and_altered_tokens_are_refused(store: AccessStore) -> None:
    token, info = store.create_token("alice", "*", store.clock() + 3600)
    last = token[-1]
    altered = token[:-1] + ("A" if last != "A" else "B")
    assert store.verify_token(altered) is None
    secret = generate_token().token.split("_", 2)[2]
    forged = f"rai_{info.token_id}_{secret}"  # a known id with a guessed secret
    assert parse_token(forged) == info.token_id
    assert store.verify_token(forged) is None
    assert store.verify_token("") is None
    assert store.verify_token("Bearer " + token) is None


def test_expiry_is_bounded(store: AccessStore) -> None:
    now = store.clock()
    with pytest.raises(AccessError, match="future"):
        store.create_token("alice", "*", now)
    with pytest.raises(AccessError, match="366 days"):
        store.create_token("alice", "*", now + 400 * 86400)
    with pytest.raises(AccessError, match="no user"):
        store.create_token("mallory", "*", now + 60)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # an AttributeError ('NoneType' object has no attribute 'strip') from inside the parser
        (lambda s: s.verify_token(None), "token must be a string; got NoneType"),
        (lambda s: s.verify_token(b"rai_x"), "token must be a string; got bytes \\(decode it"),
        (lambda s: s.authenticate("alice", None), "password must be a string; got NoneType"),
        (lambda s: s.authenticate(None, PW), "name must be a string; got NoneType"),
    ],
)
def test_a_token_or_login_that_is_not_a_string_is_named(
    store: AccessStore, call, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        call(store)
