"""A bounded load test on loopback: 200 authenticated requests from 20 concurrent clients, all
answered correctly, while an attacker's failed logins are throttled without blocking the user."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from dashboard_helpers import CIFAR_RUN, MNIST_RUN, Client, access_logger, make_store

from robustai.dashboard import DashboardServer
from robustai.security import LoginThrottle

CLIENTS = 20
REQUESTS = 200  # in all: 10 per client
DEADLINE = 120.0  # seconds; a bound on the whole test, not a speed target


def test_concurrent_authenticated_requests_while_an_attacker_is_throttled(
    logdir: Path, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "access.db")
    throttle = LoginThrottle(base_delay=0.05, max_delay=0.2, max_failures=5, lockout_seconds=300)
    log = access_logger(tmp_path / "access.log")
    alice_token, _ = store.create_token("alice", "*", time.time() + 3600)
    expected = {"alice": [MNIST_RUN], "bob": [CIFAR_RUN]}
    with DashboardServer(
        logdir, store, port=0, reload_interval=0, throttle=throttle, access_log=log
    ) as srv:
        # Half the clients use a session cookie (alice or bob), half alice's bearer token.
        clients: list[tuple[Client, str, dict[str, str]]] = []
        for i in range(CLIENTS):
            c = Client(srv.url, timeout=30)
            if i % 2 == 0:
                user = "alice" if i % 4 == 0 else "bob"
                assert c.login(user).status == 303
                clients.append((c, user, {}))
            else:
                clients.append((c, "alice", {"Authorization": f"Bearer {alice_token}"}))

        attacker_answers: list[int] = []
        locked = threading.Event()

        def attack() -> None:
            """Guess alice's password as fast as answers come, until locked out (bounded)."""
            a = Client(srv.url, timeout=30)
            for n in range(1, 2000):
                reply = a.login("alice", f"wrong guess {n}")
                attacker_answers.append(reply.status)
                if reply.status == 429 and b"locked" in reply.body:
                    locked.set()
                    return

        def work(c: Client, user: str, headers: dict[str, str]) -> list[bool]:
            results = []
            for k in range(REQUESTS // CLIENTS):
                path = "/data/runs" if k % 2 == 0 else "/data/plugin/scalars/tags"
                reply = c.get(path, headers=headers)
                ok = reply.status == 200
                if ok and path == "/data/runs":
                    ok = reply.json() == expected[user]
                elif ok:
                    ok = sorted(reply.json()) == expected[user]
                results.append(ok)
            return results

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            futures = [pool.submit(work, *c) for c in clients]
            done, pending = wait(futures, timeout=DEADLINE)
        elapsed = time.perf_counter() - started
        assert not pending, f"{len(pending)} clients did not finish within {DEADLINE} s"
        results = [ok for f in done for ok in f.result()]
        assert len(results) == REQUESTS and all(results), f"{results.count(False)} wrong answers"

        # The attacker was slowed down and then locked out...
        attacker.join(timeout=60)
        assert locked.is_set(), "the attacker was never locked out"
        assert 401 in attacker_answers and 429 in attacker_answers
        assert attacker_answers.count(401) <= 5  # at most max_failures guesses were checked
        # ...while alice, from her own browser, and bob still log in.
        assert clients[0][0].login("alice").status == 303
        assert clients[0][0].get("/data/runs").json() == [MNIST_RUN]
        assert Client(srv.url).login("bob").status == 303
    print(
        f"\nload: {REQUESTS} requests from {CLIENTS} clients in {elapsed:.2f} s "
        f"({REQUESTS / elapsed:.0f} req/s); attacker: {len(attacker_answers)} attempts, "
        f"{attacker_answers.count(401)} checked"
    )
