"""Fixtures: a real dashboard on loopback over two small runs, and its users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import Client, access_logger, make_store, write_runs

from robustai.dashboard import DashboardServer
from robustai.security import AccessStore, LoginThrottle


@pytest.fixture(scope="session")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("experiments")
    write_runs(path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> AccessStore:
    return make_store(tmp_path_factory.mktemp("access") / "access.db")


@pytest.fixture(scope="module")
def server(
    logdir: Path, store: AccessStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardServer]:
    log_path = tmp_path_factory.mktemp("log") / "access.log"
    srv = DashboardServer(
        logdir,
        store,
        port=0,
        reload_interval=0,
        # no delay after a failure: the wrong-password tests must not throttle alice for the
        # tests that log her in next (the throttle has tests of its own, with a manual clock)
        throttle=LoginThrottle(base_delay=0, max_delay=0, max_failures=50),
        access_log=access_logger(log_path),
    )
    srv.access_log_path = log_path  # type: ignore[attr-defined]
    with srv:
        yield srv


@pytest.fixture
def client(server: DashboardServer) -> Client:
    return Client(server.url)
