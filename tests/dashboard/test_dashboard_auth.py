"""The dashboard over real HTTP on loopback: login, sessions, tokens, per-user runs, throttling."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dashboard_helpers import (
    CIFAR_RUN,
    MNIST_RUN,
    PASSWORDS,
    Client,
    access_logger,
    cookie,
    make_store,
    write_runs,
)

from robustai.dashboard import DashboardServer
from robustai.dashboard.auth import safe_next
from robustai.dashboard.server import open_access_log
from robustai.security import AccessStore, LoginThrottle

SCALARS = "/data/plugin/scalars/scalars"


def scalars_path(run: str, tag: str = "train/loss") -> str:
    return f"{SCALARS}?{urllib.parse.urlencode({'run': run, 'tag': tag})}"


@pytest.mark.parametrize(
    "path",
    ["/data/runs", "/data/logdir", "/data/environment", "/index.html", scalars_path(MNIST_RUN)],
)
def test_everything_is_refused_without_login(client: Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status == 401
    assert b"mnist" not in reply.body and b"train/loss" not in reply.body


def test_a_browser_is_sent_to_the_login_page(client: Client) -> None:
    reply = client.get("/?x=1", headers={"Accept": "text/html"})
    assert reply.status == 303
    assert reply.header("Location") == "/login?next=%2F%3Fx%3D1"
    page = client.get(reply.header("Location") or "")
    assert page.status == 200 and b'name="password"' in page.body
    assert "frame-ancestors 'none'" in (page.header("Content-Security-Policy") or "")


def test_login_sets_a_signed_httponly_samesite_session(client: Client) -> None:
    reply = client.login("alice")
    assert reply.status == 303 and reply.header("Location") == "/"
    session = next(c for c in reply.set_cookies() if c.startswith(cookie(client) + "="))
    attrs = {a.strip().split("=")[0].lower() for a in session.split(";")[1:]}
    assert {"httponly", "samesite", "max-age", "path"} <= attrs
    assert "SameSite=Strict" in session and "Max-Age=28800" in session
    assert "secure" not in attrs  # plain HTTP on loopback; --secure-cookie behind HTTPS
    assert PASSWORDS["alice"] not in session
    assert client.get("/data/runs").status == 200


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong password 123"), ("mallory", "x" * 20)]
)
def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: Client, user: str, password: str
) -> None:
    reply = client.login(user, password)
    assert reply.status == 401 and b"Wrong user name or password." in reply.body
    assert not reply.set_cookies() and client.get("/data/runs").status == 401


def test_tampered_or_foreign_cookies_are_refused(
    client: Client, server: DashboardServer, logdir: Path, tmp_path: Path
) -> None:
    assert client.login("alice").status == 303
    name = cookie(client)
    good = client.cookies[name]
    body, mac = good.split(".")
    client.cookies[name] = body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert client.get("/data/runs").status == 401
    # a payload for bob signed by nobody
    client.cookies[name] = body.replace(body[2:6], "Ym9i", 1) + "." + mac
    assert client.get("/data/runs").status == 401
    # a valid cookie of another dashboard (another key)
    other = DashboardServer(logdir, server.app.store, port=0, reload_interval=0).start()
    try:
        c2 = Client(other.url)
        assert c2.login("alice").status == 303
        client.cookies[name] = c2.cookies[cookie(c2)]
        assert client.get("/data/runs").status == 401
    finally:
        other.close()


@pytest.mark.parametrize("value", ["\xe9t\xe9.x", "abc.d\xe9f", "\xff"])
def test_non_ascii_cookies_are_refused_not_a_server_error(
    server: DashboardServer, value: str
) -> None:
    """A cookie value a browser would never get from us is an unknown cookie: 401, no 500."""
    client = Client(server.url)
    client.cookies = {cookie(client): value, cookie(client, "device"): value}
    assert client.get("/data/runs").status == 401
    assert client.login("alice", "not the password").status == 401
    time.sleep(0.1)  # the throttle's delay after one failure
    assert client.login("alice").status == 303


def test_each_user_sees_only_the_runs_their_grants_cover(server: DashboardServer) -> None:
    seen = {}
    for user in ("alice", "bob", "nobody"):
        c = Client(server.url)
        assert c.login(user).status == 303
        seen[user] = c.get("/data/runs").json()
        tags = c.get("/data/plugin/scalars/tags").json()
        assert set(tags) == set(seen[user])
        for run, visible in (
            (MNIST_RUN, MNIST_RUN in seen[user]),
            (CIFAR_RUN, CIFAR_RUN in seen[user]),
        ):
            reply = c.get(scalars_path(run))
            if visible:
                assert reply.status == 200 and len(reply.json()) == 5
            else:
                assert reply.status != 200 and b"1.0" not in reply.body
    assert seen == {"alice": [MNIST_RUN], "bob": [CIFAR_RUN], "nobody": []}


def test_dashboards_light_up_only_for_data_in_the_users_runs(server: DashboardServer) -> None:
    """Only bob's run has a histogram: alice must not learn that such data exists."""
    enabled = {}
    for user in ("alice", "bob", "nobody"):
        c = Client(server.url)
        c.login(user)
        listing = c.get("/data/plugins_listing").json()
        enabled[user] = {name for name, plugin in listing.items() if plugin["enabled"]}
    assert {"scalars", "images", "histograms"} <= enabled["bob"]
    assert {"scalars", "images"} <= enabled["alice"]
    assert "histograms" not in enabled["alice"] and "distributions" not in enabled["alice"]
    assert not {"scalars", "images", "histograms"} & enabled["nobody"]


def test_time_series_dashboard_is_filtered(server: DashboardServer) -> None:
    c = Client(server.url)
    c.login("alice")
    tags = c.get("/experiment/defaultExperimentId/data/plugin/timeseries/tags").json()
    assert "train/loss" in tags["scalars"]["runTagInfo"][MNIST_RUN]
    assert CIFAR_RUN not in str(tags)
    reply = c.request(
        "POST",
        "/experiment/defaultExperimentId/data/plugin/timeseries/timeSeries",
        form={"requests": '[{"plugin":"scalars","tag":"train/loss"}]'},
    )
    assert reply.status == 200
    assert MNIST_RUN in reply.body.decode() and CIFAR_RUN not in reply.body.decode()


def test_a_blob_of_another_users_run_is_refused(server: DashboardServer) -> None:
    bob, alice = Client(server.url), Client(server.url)
    bob.login("bob")
    alice.login("alice")
    tag = "eval/adversarial/pgd20@0.1"
    images = bob.get(
        f"/data/plugin/images/images?{urllib.parse.urlencode({'run': CIFAR_RUN, 'tag': tag})}"
    ).json()
    url = f"/data/plugin/images/individualImage?{images[0]['query']}"
    assert bob.get(url).status == 200 and bob.get(url).body.startswith(b"\x89PNG")
    refused = alice.get(url)
    assert refused.status == 404 and not refused.body.startswith(b"\x89PNG")


def test_bearer_tokens(server: DashboardServer, store: AccessStore) -> None:
    c = Client(server.url)
    token, info = store.create_token("alice", "*", time.time() + 3600)
    narrow, _ = store.create_token("alice", "fashion_*", time.time() + 3600)
    auth = {"Authorization": f"Bearer {token}"}
    assert c.get("/data/runs", headers=auth).json() == [MNIST_RUN]  # grants still apply
    for path in ("/data/runs", scalars_path(MNIST_RUN), "/auth/whoami"):
        reply = c.get(path, headers=auth)
        assert reply.status == 200 and reply.header("Cache-Control") == "no-store", path
    assert c.get("/data/runs", headers={"Authorization": f"Bearer {narrow}"}).json() == []
    whoami = c.get("/auth/whoami", headers=auth).json()
    assert whoami["user"] == "alice" and whoami["via"] == "token"
    bad = c.get("/data/runs", headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert bad.status == 401 and "invalid_token" in (bad.header("WWW-Authenticate") or "")
    assert c.get("/data/runs", headers={"Authorization": f"Basic {token}"}).status == 401
    store.revoke_token(info.token_id)
    assert c.get("/data/runs", headers=auth).status == 401
    past = AccessStore(store.path, clock=lambda: time.time() - 3600)
    expired, _ = past.create_token("alice", "*", time.time() - 1800)  # expired half an hour ago
    assert c.get("/data/runs", headers={"Authorization": f"Bearer {expired}"}).status == 401


def test_logout_and_password_change_end_sessions(
    server: DashboardServer, store: AccessStore
) -> None:
    store.add_user("dave", "dave correct horse battery")
    store.grant("dave", "viewer", "*")
    c, keep = Client(server.url), Client(server.url)
    c.login("dave", "dave correct horse battery")
    old = dict(c.cookies)
    assert c.request("POST", "/logout").status == 303
    c.cookies.update(old)  # replaying the old cookie after logout
    assert c.get("/data/runs").status == 401
    keep.login("dave", "dave correct horse battery")
    assert len(keep.get("/data/runs").json()) == 2
    time.sleep(0.01)
    store.set_password("dave", "dave another passphrase")
    assert keep.get("/data/runs").status == 401
    store.remove_user("dave")


def test_cross_site_requests_are_refused(client: Client) -> None:
    evil = {"Origin": "http://evil.example"}
    assert client.login("alice", headers=evil).status == 403
    client.login("alice")
    reply = client.request(
        "POST",
        "/experiment/defaultExperimentId/data/plugin/timeseries/timeSeries",
        form={"requests": "[]"},
        headers=evil,
    )
    assert reply.status == 403
    same = {"Origin": client.base}
    ok = client.request(
        "POST",
        "/experiment/defaultExperimentId/data/plugin/timeseries/timeSeries",
        form={"requests": "[]"},
        headers=same,
    )
    assert ok.status == 200


def test_access_log_says_who_when_what(server: DashboardServer, client: Client) -> None:
    """A name that is no user's is not written down: it may be a password typed into the
    wrong field."""
    client.login("bob", "not the password at all")
    client.login(PASSWORDS["bob"].replace(" ", "-"), "bob")  # the password as the name
    client.login("alice")
    client.get("/data/runs")
    lines = Path(server.access_log_path).read_text().splitlines()  # type: ignore[attr-defined]
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ "
    assert any(re.match(stamp + r"login failed user=bob ip=127\.0\.0\.1", ln) for ln in lines)
    assert any(re.match(stamp + r"login failed user=<unknown> ip=", ln) for ln in lines)
    assert not any("correct-horse" in ln for ln in lines)
    assert any(re.match(stamp + r"login ok user=alice", ln) for ln in lines)
    assert any(
        re.match(stamp + r'user=alice via=session ip=127\.0\.0\.1 "GET /data/runs" 200$', ln)
        for ln in lines
    )
    assert not any(PASSWORDS["alice"] in ln or "not the password" in ln for ln in lines)


def test_a_link_within_the_log_folder_needs_a_grant_on_what_it_links_to(
    store: AccessStore, tmp_path: Path
) -> None:
    """``mnist_alias -> cifar10_...`` would show bob's experiment to alice (a viewer of
    mnist_*) under a name her grant covers."""
    logdir = tmp_path / "experiments"
    write_runs(logdir)
    (logdir / "mnist_alias").symlink_to(logdir / CIFAR_RUN.split("/")[0])
    with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:
        alice, bob = Client(srv.url), Client(srv.url)
        assert alice.login("alice").status == 303 and bob.login("bob").status == 303
        assert alice.get("/data/runs").json() == [MNIST_RUN]
        assert bob.get("/data/runs").json() == [CIFAR_RUN]  # a grant on both names is needed
        alias = "mnist_alias/" + CIFAR_RUN.split("/", 1)[1]
        reply = alice.get(scalars_path(alias))
        assert reply.status != 200 and b"1.5" not in reply.body


def test_an_event_file_linked_from_another_experiment_needs_a_grant_on_it(
    store: AccessStore, tmp_path: Path
) -> None:
    """A link to one event file inside the log folder (``mnist_copy/r/events... ->
    cifar10_.../events...``) would serve bob's data under a name alice's grant covers."""
    logdir = tmp_path / "experiments"
    write_runs(logdir)
    run = logdir / "mnist_copy" / "r"
    run.mkdir(parents=True)
    for event in (logdir / CIFAR_RUN).iterdir():
        (run / event.name).symlink_to(event)
    with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:
        alice, bob = Client(srv.url), Client(srv.url)
        assert alice.login("alice").status == 303 and bob.login("bob").status == 303
        assert alice.get("/data/runs").json() == [MNIST_RUN]
        reply = alice.get(scalars_path("mnist_copy/r"))
        assert reply.status != 200 and b"1.5" not in reply.body
        assert bob.get("/data/runs").json() == [CIFAR_RUN]  # a grant on both names is needed


def test_data_read_through_a_folder_link_since_replaced_needs_a_grant_on_its_source(
    store: AccessStore, tmp_path: Path
) -> None:
    """TensorBoard keeps what it read through ``mnist_alias -> cifar10_...``; with the link
    swapped for a real folder of that name, the run's own name no longer says where its data
    came from."""
    logdir = tmp_path / "experiments"
    write_runs(logdir)
    alias = logdir / "mnist_alias"
    alias.symlink_to(logdir / CIFAR_RUN.split("/")[0])
    with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:  # reads once, now
        alias.unlink()
        (logdir / "mnist_alias" / CIFAR_RUN.split("/", 1)[1]).mkdir(parents=True)
        c = Client(srv.url)
        assert c.login("alice").status == 303
        assert c.get("/data/runs").json() == [MNIST_RUN]
        reply = c.get(scalars_path("mnist_alias/" + CIFAR_RUN.split("/", 1)[1]))
        assert reply.status != 200 and b"1.5" not in reply.body


def test_data_read_through_a_link_that_is_gone_is_not_served(
    store: AccessStore, tmp_path: Path
) -> None:
    """TensorBoard keeps what it read: a link to an outside event file, removed after a
    reload, must not leave that file's data served under the run's name. Event files are
    checked as they are opened, so it is never read."""
    logdir, outside = tmp_path / "experiments", tmp_path / "elsewhere"
    write_runs(outside)
    run = logdir / "mnist_race" / "r"
    run.mkdir(parents=True)
    links = [run / event.name for event in (outside / MNIST_RUN).iterdir()]
    for link, event in zip(links, (outside / MNIST_RUN).iterdir(), strict=True):
        link.symlink_to(event)
    with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:  # reads once, now
        for link in links:
            link.unlink()
        c = Client(srv.url)
        assert c.login("alice").status == 303
        tags = c.get("/data/plugin/scalars/tags").json()
        assert tags.get("mnist_race/r", {}) == {}  # the run may be listed, without data
        reply = c.get(scalars_path("mnist_race/r"))
        assert reply.status != 200 and b"0.5" not in reply.body


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc/self/fd")
def test_an_event_file_swapped_for_a_link_after_the_check_is_not_read(tmp_path: Path) -> None:
    """TensorBoard reopens an event file by name at every read; the name it is given always
    opens the file that was checked."""
    from robustai.dashboard.filtering import _open_inside

    root, outside = tmp_path / "logs", tmp_path / "secret"
    root.mkdir()
    outside.write_bytes(b"secret")
    event = root / "events.out.tfevents.1"
    event.write_bytes(b"inside")
    fd, name = _open_inside(str(event), os.path.realpath(root))  # type: ignore[misc]
    try:
        swap = root / "swap"
        swap.symlink_to(outside)
        os.replace(swap, event)
        assert event.read_bytes() == b"secret"  # the name now leads outside
        assert Path(name).read_bytes() == b"inside"
    finally:
        os.close(fd)
    assert _open_inside(str(event), os.path.realpath(root)) is None


def test_a_request_that_fails_inside_tensorboard_is_logged_as_500(
    server: DashboardServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in the wrapped app reached the access log as status "-"."""

    def broken(environ, start_response):  # type: ignore[no-untyped-def]
        raise TypeError("a plugin's bug")

    monkeypatch.setattr(server.app, "app", broken)
    client.login("alice")
    assert client.get("/data/plugin/broken").status == 500
    lines = Path(server.access_log_path).read_text().splitlines()  # type: ignore[attr-defined]
    assert lines[-1].endswith('user=alice via=session ip=127.0.0.1 "GET /data/plugin/broken" 500')


def test_access_log_file_is_private(tmp_path: Path) -> None:
    import logging

    handler = open_access_log(tmp_path / "logs" / "access.log")
    try:
        logging.getLogger("robustai.dashboard.access").info("user=x test line")
        handler.flush()
        path = tmp_path / "logs" / "access.log"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ user=x test line$", path.read_text())
    finally:
        logging.getLogger("robustai.dashboard.access").removeHandler(handler)
        handler.close()


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_slow_down_then_lock_out_but_not_the_real_user(
    logdir: Path, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "access.db")
    clock = ManualClock()  # the throttle's time moves only when the test says so
    throttle = LoginThrottle(
        base_delay=1, max_delay=8, max_failures=4, lockout_seconds=120, clock=clock
    )
    log = access_logger(tmp_path / "access.log")
    with DashboardServer(
        logdir, store, port=0, reload_interval=0, throttle=throttle, access_log=log
    ) as srv:
        browser = Client(srv.url)  # alice's own browser: logged in before
        assert browser.login("alice").status == 303
        attacker = Client(srv.url)
        first = attacker.login("alice", "guess number 1")
        assert first.status == 401
        quick = attacker.login("alice", "guess number 2")  # no waiting: slowed down
        assert quick.status == 429 and quick.header("Retry-After") == "1"
        answers = []
        for i in range(3, 10):
            clock.now += 8  # waits out the longest delay
            reply = attacker.login("alice", f"guess number {i}")
            answers.append(reply.status)
            if reply.status == 429 and b"locked" in reply.body:
                break
        else:
            pytest.fail("no lockout after repeated failures")
        assert answers == [401, 401, 401, 429]  # the 4th failure in a row locks the account
        locked = attacker.login("alice")  # even the right password: not checked any more
        assert locked.status == 429 and int(locked.header("Retry-After") or 0) > 60
        assert b"Too many failed logins" in locked.body
        # alice's browser carries her device cookie: her login is not locked out
        assert browser.login("alice").status == 303
        assert browser.get("/data/runs").json() == [MNIST_RUN]
        # another user from the attacker's address is not affected either
        assert Client(srv.url).login("bob").status == 303
    text = (tmp_path / "access.log").read_text()
    assert "locked" in text and "login throttled user=alice" in text


def test_parallel_guesses_do_not_outrun_the_lockout(logdir: Path, tmp_path: Path) -> None:
    """Many wrong passwords sent at once: only as many are checked as the lockout allows."""
    store = make_store(tmp_path / "access.db")
    throttle = LoginThrottle(base_delay=0.2, max_delay=0.4, max_failures=3, lockout_seconds=120)
    log = access_logger(tmp_path / "access.log")
    with (
        DashboardServer(
            logdir, store, port=0, reload_interval=0, throttle=throttle, access_log=log
        ) as srv,
        ThreadPoolExecutor(24) as pool,
    ):
        replies = list(
            pool.map(lambda i: Client(srv.url).login("alice", f"parallel guess {i}"), range(24))
        )
    statuses = [r.status for r in replies]
    assert statuses.count(401) <= 3, statuses  # at most max_failures passwords were tried
    assert statuses.count(401) + statuses.count(429) == len(statuses)
    assert (tmp_path / "access.log").read_text().count("login failed user=alice") <= 3


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/#timeseries", "/#timeseries"),
        ("/data/runs?x=1", "/data/runs?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        (None, "/"),
        ("/\nSet-Cookie: x=1", "/"),
    ],
)
def test_login_redirects_stay_on_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_binds_loopback_by_default(logdir: Path, store: AccessStore) -> None:
    srv = DashboardServer(logdir, store, port=0, reload_interval=0)
    try:
        assert srv.host == "127.0.0.1"
        assert srv._server.socket.getsockname()[0] == "127.0.0.1"
    finally:
        srv.close()


def test_runs_linked_in_from_outside_the_log_folder_are_not_served(
    store: AccessStore, tmp_path: Path
) -> None:
    """TensorBoard follows symbolic links: a link in the log folder, named to match a grant,
    would otherwise serve files from anywhere the dashboard's owner can read. Links that stay
    inside the log folder are served as before."""
    logdir, outside = tmp_path / "experiments", tmp_path / "elsewhere"
    write_runs(logdir)
    write_runs(outside)
    (logdir / "mnist_link").symlink_to(outside / MNIST_RUN.split("/")[0])
    (logdir / "mnist_small_cnn_pgd" / "r2link").symlink_to(outside / MNIST_RUN)
    inner = logdir / "mnist_small_cnn_pgd" / "latest"
    inner.symlink_to(logdir / MNIST_RUN)
    file_run = logdir / "mnist_files" / "r1"
    file_run.mkdir(parents=True)
    for event in (outside / MNIST_RUN).iterdir():  # a real folder whose event file is a link
        (file_run / event.name).symlink_to(event)
    with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:
        c = Client(srv.url)
        assert c.login("alice").status == 303
        runs = c.get("/data/runs").json()
        assert sorted(runs) == sorted([MNIST_RUN, "mnist_small_cnn_pgd/latest"])
        reply = c.get(scalars_path("mnist_small_cnn_pgd/r2link"))
        assert reply.status != 200 and b"1.0" not in reply.body


def test_a_store_removed_while_serving_is_an_error_not_a_new_file(
    logdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite creates a missing file on connect: the dashboard re-created a removed store as
    an empty file with the umask's mode (which `users add` then refused as open to others)."""
    folder = tmp_path / "store"
    store = make_store(folder / "access.db")
    old = os.umask(0o022)
    try:
        with DashboardServer(logdir, store, port=0, reload_interval=0) as srv:
            c = Client(srv.url)
            assert c.login("alice").status == 303
            for f in folder.iterdir():
                f.unlink()
            caplog.clear()
            for _ in range(3):
                reply = c.get("/data/runs")
                assert reply.status == 500 and b"cannot read its access store" in reply.body
                assert str(folder).encode() not in reply.body  # the path stays in the log
            login = Client(srv.url).login("bob")
            assert login.status == 500 and b"cannot read its access store" in login.body
    finally:
        os.umask(old)
    assert list(folder.iterdir()) == []
    said = [r for r in caplog.records if "access store" in r.getMessage()]
    assert len(said) == 1 and "is gone" in said[0].getMessage()  # once, not per request
    assert not any(r.exc_info for r in caplog.records)  # and no traceback


def test_a_throttle_full_of_lockouts_refuses_new_logins_and_keeps_them(
    logdir: Path, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "access.db")
    throttle = LoginThrottle(base_delay=0, max_delay=0, max_failures=1, max_keys=1)
    with DashboardServer(logdir, store, port=0, reload_interval=0, throttle=throttle) as srv:
        assert Client(srv.url).login("alice", "a wrong password").status == 401  # locked
        reply = Client(srv.url).login("bob")
        assert reply.status == 429 and b"Too many failed logins at this dashboard" in reply.body
        locked = Client(srv.url).login("alice")
        assert locked.status == 429 and b"locked after repeated failures" in locked.body


def test_two_dashboards_on_one_host_keep_their_own_cookies(
    server: DashboardServer, logdir: Path, store: AccessStore
) -> None:
    """Browsers keep cookies per host, not per port: with one cookie name, logging in to the
    second dashboard replaced the first one's session (signed with another key: logged out)."""
    jar: dict[str, str] = {}  # one browser, two tabs
    first, second = Client(server.url, cookies=jar), None
    other = DashboardServer(logdir, store, port=0, reload_interval=0).start()
    try:
        second = Client(other.url, cookies=jar)
        assert first.login("alice").status == 303
        assert second.login("bob").status == 303
        assert first.get("/auth/whoami").json()["user"] == "alice"
        assert second.get("/auth/whoami").json()["user"] == "bob"
        assert {cookie(first), cookie(second), cookie(first, "device")} <= set(jar)
    finally:
        other.close()


def test_secure_cookies_take_the_host_prefix(store: AccessStore) -> None:
    """Behind HTTPS (``--secure-cookie``): ``__Host-`` names, Secure, Path=/, no Domain, so no
    other host under the same domain can set or shadow them."""
    from werkzeug.test import Client as WsgiClient

    from robustai.dashboard.auth import AuthLayer

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"tensorboard"]

    layer = AuthLayer(app, store, secure_cookie=True, throttle=LoginThrottle(base_delay=0))
    browser = WsgiClient(layer)
    base = "https://dash.example:8443"
    reply = browser.post(
        "/login",
        base_url=base,
        data={"username": "alice", "password": PASSWORDS["alice"]},
        headers={"Origin": base},
    )
    assert reply.status_code == 303
    set_cookies = reply.headers.getlist("Set-Cookie")
    for stem in ("session", "device"):
        sent = next(c for c in set_cookies if c.startswith(f"__Host-robustai_{stem}_8443="))
        attrs = [a.strip().lower() for a in sent.split(";")[1:]]
        assert "secure" in attrs and "path=/" in attrs
        assert not any(a.startswith("domain") for a in attrs)
    whoami = browser.get("/auth/whoami", base_url=base)
    assert whoami.status_code == 200 and whoami.json["user"] == "alice"
    default_port = browser.post(
        "/login",
        base_url="https://dash.example",
        data={"username": "alice", "password": PASSWORDS["alice"]},
    )
    assert any(
        c.startswith("__Host-robustai_session=") for c in default_port.headers.getlist("Set-Cookie")
    )


def test_the_log_folders_path_is_shown_to_admins_only(
    server: DashboardServer, store: AccessStore, logdir: Path
) -> None:
    """``/data/logdir`` and ``/data/environment`` answered every logged-in user, grants or
    none, with the server's absolute path to the log folder."""
    store.add_user("root", "root correct horse battery")
    store.grant("root", "admin", "*")
    narrow, _ = store.create_token("root", "mnist_*", time.time() + 3600)
    try:
        seen = {}
        for user in ("nobody", "alice", "root"):
            c = Client(server.url)
            assert c.login(user, PASSWORDS.get(user, "root correct horse battery")).status == 303
            seen[user] = (c.get("/data/logdir").json(), c.get("/data/environment").json())
        by_token = Client(server.url)
        auth = {"Authorization": f"Bearer {narrow}"}
        seen["token"] = tuple(
            by_token.get(p, headers=auth).json() for p in ("/data/logdir", "/data/environment")
        )
        for who in ("nobody", "alice", "token"):
            logdir_reply, environment = seen[who]
            assert logdir_reply == {"logdir": ""} and environment["data_location"] == "", who
            assert str(logdir) not in json.dumps(seen[who])
            assert "window_title" in environment  # the rest of what the front end reads
        assert seen["root"][0] == {"logdir": str(logdir)}
        assert seen["root"][1]["data_location"] == str(logdir)
    finally:
        store.remove_user("root")


def test_a_request_tensorboard_cannot_serve_is_one_line_not_a_traceback(
    server: DashboardServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The HParams download without its ``request`` field: TensorBoard's plugin raised a
    TypeError, and werkzeug answered 500 with a 30-line traceback in the dashboard's log."""
    import logging

    c = Client(server.url)
    assert c.login("alice").status == 303
    with caplog.at_level(logging.DEBUG, logger="werkzeug"):
        reply = c.get("/data/plugin/hparams/download_data?format=csv")
    assert reply.status == 400 and reply.body == b"Bad Request\n"
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.getMessage().startswith(
        "GET /data/plugin/hparams/download_data: bad request (TypeError: "
    )
    assert line.exc_info is None and "Traceback" not in caplog.text
    assert c.get("/data/runs").status == 200  # and the server goes on
