"""Signed, expiring cookie values (sessions and device cookies).

A value is ``<base64 JSON payload>.<base64 HMAC-SHA256>``; the key is random per server process,
so restarting the dashboard ends every session. The payload carries its own expiry; a session's
id can be revoked (logout) before it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    """Signs and checks small JSON payloads; ``purpose`` keeps session and device values apart."""

    def __init__(
        self,
        purpose: str,
        key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.purpose = purpose.encode("ascii")
        self._key = key or secrets.token_bytes(32)
        self.clock = clock

    def _mac(self, body: str) -> str:
        msg = self.purpose + b"." + body.encode("ascii")
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def dumps(self, payload: dict[str, Any], ttl: float) -> str:
        body = _b64(
            json.dumps({**payload, "exp": self.clock() + ttl}, separators=(",", ":")).encode()
        )
        return f"{body}.{self._mac(body)}"

    def loads(self, value: str | None) -> dict[str, Any] | None:
        """The payload if ``value`` is ours, untampered and unexpired; else None."""
        if not value or len(value) > 4096 or not value.isascii() or value.count(".") != 1:
            return None  # not ours: we only issue ASCII (and the MAC needs ASCII to compare)
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), (int, float)):
            return None
        return payload if payload["exp"] > self.clock() else None


class RevokedSessions:
    """Session ids ended by logout, remembered until they would have expired anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._ids: dict[str, float] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def revoke(self, sid: str, expires: float) -> None:
        with self._lock:
            now = self.clock()
            self._ids = {k: v for k, v in self._ids.items() if v > now}
            self._ids[sid] = expires

    def __contains__(self, sid: object) -> bool:
        with self._lock:
            return sid in self._ids
