"""Failed-login throttling: growing delays, then a lockout that ends."""

from __future__ import annotations

from robustai.security import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_then_lockout_then_release() -> None:
    clock = Clock()
    t = LoginThrottle(base_delay=1, max_delay=8, max_failures=5, lockout_seconds=600, clock=clock)
    key = ("alice", "ip:10.0.0.1")
    waits = []
    for _ in range(4):
        assert t.check(key).allowed
        v = t.failure(key)
        waits.append(v.retry_after)
        assert not t.check(key).allowed  # an immediate retry is refused
        clock.now += v.retry_after
    assert waits == [1, 2, 4, 8]
    assert t.check(key).allowed
    v = t.failure(key)  # fifth failure in a row
    assert v.locked and v.retry_after == 600
    clock.now += 599
    verdict = t.check(key)
    assert not verdict.allowed and verdict.locked and 0 < verdict.retry_after <= 1
    clock.now += 1
    assert t.check(key).allowed and t.failures(key) == 0


def test_success_resets_and_keys_are_independent() -> None:
    clock = Clock()
    t = LoginThrottle(base_delay=1, max_failures=3, clock=clock)
    a, b = ("alice", "ip:1"), ("alice", "device:abc")
    t.failure(a)
    t.failure(a)
    assert t.failures(a) == 2 and t.check(b).allowed
    clock.now += 10
    t.success(a)
    assert t.failures(a) == 0 and t.check(a).allowed


def test_memory_is_bounded() -> None:
    t = LoginThrottle(max_keys=50, clock=Clock())
    for i in range(500):
        t.failure((f"user{i}", "ip:1"))
    assert len(t._entries) <= 51


def test_begin_admits_one_attempt_per_key_at_a_time() -> None:
    """Parallel requests must not all pass before the first failure is counted."""
    clock = Clock()
    t = LoginThrottle(base_delay=1, max_failures=3, clock=clock)
    key, other = ("alice", "ip:10.0.0.1"), ("alice", "device:abc")
    assert t.begin(key).allowed
    second = t.begin(key)  # the first attempt is still being checked
    assert not second.allowed and second.retry_after >= 1
    assert t.begin(other).allowed  # another client of the same user is not held up
    t.failure(key)
    clock.now += 1
    assert t.begin(key).allowed
    t.release(key)  # not checked (server busy): neither a failure nor a success
    assert t.failures(key) == 1 and t.begin(key).allowed
    t.success(key)
    assert t.failures(key) == 0 and t.begin(key).allowed
