"""API tokens: random, shown once, stored only as a hash.

A token reads ``rai_<id>_<secret>``. The id is public (it names the token in listings and
revocations); the secret has 256 bits from :mod:`secrets`. Because it is that random, a single
SHA-256 is the right stored form (as for GitHub or PyPI tokens): a slow password hash would add
nothing against guessing and would make every API request cost tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "rai"
_TOKEN = re.compile(r"^rai_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class NewToken:
    token_id: str
    token: str  # the only time the full token exists outside the client


def generate_token() -> NewToken:
    token_id = "".join(secrets.choice(_ALNUM) for _ in range(12))
    secret = secrets.token_urlsafe(32)  # 32 bytes -> 43 characters
    return NewToken(token_id, f"{PREFIX}_{token_id}_{secret}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_token(token: str) -> str | None:
    """The token's id, or None when ``token`` is not shaped like one of ours."""
    m = _TOKEN.match(token.strip())
    return m.group(1) if m else None


def hashes_match(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token.strip()), stored_hash)
