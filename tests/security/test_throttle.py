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


def test_a_lockout_is_never_dropped_to_make_room() -> None:
    """Failed logins under many other names used to push the locked key out of the table
    (least recently used first), which unlocked it."""
    clock = Clock()
    t = LoginThrottle(base_delay=0, max_delay=0, max_failures=3, lockout_seconds=600, max_keys=20)
    t.clock = clock
    victim = ("alice", "ip:10.0.0.1")
    for _ in range(3):
        assert t.begin(victim).allowed
        t.failure(victim)
    assert t.check(victim).locked
    for i in range(200):  # one failure each under other names: these are dropped instead
        key = (f"user{i}", "ip:10.0.0.1")
        assert t.begin(key).allowed
        t.failure(key)
    assert len(t._entries) <= 20
    verdict = t.begin(victim)
    assert not verdict.allowed and verdict.locked  # still locked
    clock.now += 600
    assert t.begin(victim).allowed  # until the lockout ends


def test_a_table_full_of_lockouts_admits_no_new_key() -> None:
    clock = Clock()
    t = LoginThrottle(base_delay=0, max_delay=0, max_failures=1, lockout_seconds=600, max_keys=5)
    t.clock = clock
    for i in range(5):
        key = (f"user{i}", "ip:1")
        assert t.begin(key).allowed
        assert t.failure(key).locked
    clock.now += 100
    known = ("user0", "ip:1")
    full = t.begin(("bob", "ip:2"))
    assert not full.allowed and full.full and 499 <= full.retry_after <= 500
    assert t.begin(known).locked and len(t._entries) == 5  # none was dropped
    clock.now += 500  # the first lockouts end: room again
    assert t.begin(("bob", "ip:2")).allowed
