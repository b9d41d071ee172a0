"""Failed-login throttling: each failure doubles the wait before the next try, and a run of
failures locks the key out for a while.

Keys are chosen by the caller. The dashboard uses (user name, client), where the client is a
device cookie that this user earned by logging in before, or else the client's address. So an
attacker guessing a user's password locks out only their own attempts: the user's browser, their
sessions and their tokens keep working (OWASP's "device cookie" defence against lockout abuse).

A caller that checks a password uses :meth:`LoginThrottle.begin`, not :meth:`check`: it admits one
attempt per key at a time, so parallel requests cannot all pass the check before the first
failure is counted (which would let an attacker try any number of passwords at once).

Memory is bounded (``max_keys``), but a running lockout is never dropped to make room: failed
logins under many other names would otherwise push a locked key out and unlock it. Expired keys
go first, then the least recently used keys that are neither locked nor being checked; when
only those are left, :meth:`LoginThrottle.begin` admits no new key (``Verdict.full``) until the
first lockout ends. Keys already known (a user's own browser) keep their place.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Entry:
    failures: int = 0
    next_allowed: float = 0.0
    locked_until: float = 0.0
    last_seen: float = 0.0
    in_flight: bool = False  # an attempt admitted by begin() is being checked


@dataclass(frozen=True)
class Verdict:
    """``allowed``: the attempt may be checked; else wait ``retry_after`` seconds."""

    allowed: bool
    retry_after: float = 0.0
    locked: bool = False
    full: bool = False  # no room for a new key: every one held is locked or being checked


class LoginThrottle:
    """Thread-safe, in memory, bounded in size (the least recently used keys are dropped, but
    never one that is locked out or being checked)."""

    def __init__(
        self,
        *,
        base_delay: float = 0.25,
        max_delay: float = 8.0,
        max_failures: int = 5,
        lockout_seconds: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or base_delay < 0 or lockout_seconds < 0:
            raise ValueError("max_failures >= 1, base_delay >= 0 and lockout_seconds >= 0")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: Hashable) -> Verdict:
        """May an attempt for ``key`` be checked now?"""
        now = self.clock()
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return Verdict(True)
            if e.locked_until > now:
                return Verdict(False, e.locked_until - now, locked=True)
            if e.locked_until and e.locked_until <= now:  # lockout served: start afresh
                del self._entries[key]
                return Verdict(True)
            if e.next_allowed > now:
                return Verdict(False, e.next_allowed - now)
            return Verdict(True)

    def begin(self, key: Hashable) -> Verdict:
        """Admit one attempt for ``key`` if :meth:`check` allows it and no other attempt for
        ``key`` is still being checked; end it with :meth:`failure`, :meth:`success` or
        :meth:`release`. Without this reservation, requests sent in parallel would all pass the
        check before the first failure is recorded."""
        verdict = self.check(key)
        if not verdict.allowed:
            return verdict
        now = self.clock()
        with self._lock:
            e = self._entries.get(key)
            if e is not None and e.in_flight:
                return Verdict(False, max(self.base_delay, 1.0))
            if e is None:
                if not self._prune(now, self.max_keys - 1):  # no room: refuse, drop no lockout
                    return Verdict(False, self._until_room(now), full=True)
                e = self._entries[key] = _Entry()
            e.in_flight = True
            e.last_seen = now
            self._entries.move_to_end(key)
            return Verdict(True)

    def release(self, key: Hashable) -> None:
        """End an attempt admitted by :meth:`begin` that was not checked (e.g. the server was
        busy), without counting it either way."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return
            e.in_flight = False
            if not e.failures:
                del self._entries[key]

    def failure(self, key: Hashable) -> Verdict:
        """Record a failed attempt; returns what the next attempt will meet."""
        now = self.clock()
        with self._lock:
            e = self._entries.pop(key, None) or _Entry()
            e.in_flight = False
            e.failures += 1
            e.last_seen = now
            if e.failures >= self.max_failures:
                e.locked_until = now + self.lockout_seconds
                verdict = Verdict(False, self.lockout_seconds, locked=True)
            else:
                delay = min(self.base_delay * 2 ** (e.failures - 1), self.max_delay)
                e.next_allowed = now + delay
                verdict = Verdict(False, delay)
            self._entries[key] = e
            self._prune(now, self.max_keys)  # a failure is always counted, even over the bound
            return verdict

    def success(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def failures(self, key: Hashable) -> int:
        with self._lock:
            e = self._entries.get(key)
            return e.failures if e else 0

    def _prune(self, now: float, keep: int) -> bool:
        """Drop expired keys, then, while more than ``keep`` are held, the least recently used
        ones that are neither locked out nor being checked; whether at most ``keep`` are left.

        Keys are kept in the order of their last use, so the expired ones come first."""
        horizon = self.lockout_seconds + self.max_delay  # past it, any lockout has ended
        while self._entries:
            key, e = next(iter(self._entries.items()))
            if now - e.last_seen <= horizon:
                break
            del self._entries[key]
        excess = len(self._entries) - keep
        victims: list[Hashable] = []
        for key, e in self._entries.items():  # stops at the first ``excess`` found
            if len(victims) >= excess:
                break
            if not self._protected(e, now):
                victims.append(key)
        for key in victims:
            del self._entries[key]
        return len(self._entries) <= keep

    @staticmethod
    def _protected(e: _Entry, now: float) -> bool:
        """Dropping a lockout would unlock its key; dropping an attempt being checked would
        admit a parallel one."""
        return e.locked_until > now or e.in_flight

    def _until_room(self, now: float) -> float:
        """Seconds until the first lockout ends (or an attempt being checked is done)."""
        ends = [e.locked_until - now for e in self._entries.values() if e.locked_until > now]
        return max(min(ends, default=0.0), self.base_delay, 1.0)
