"""The access store: a private SQLite file of users, grants and hashed secrets."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from passlib.hash import pbkdf2_sha256

from robustai.security import AccessStore, Grant, allows
from robustai.security.errors import AccessError, PasswordPolicyError
from robustai.security.store import User

PW = "correct horse battery staple"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))


NOBODY = 65534


def as_another_user(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a child process that cannot write what this one can (as root, it runs as
    nobody: root writes any file whatever its mode); an exception comes back as its message."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            out = {"value": fn()}
        except BaseException as e:  # reported to the parent
            out = {"error": f"{type(e).__name__}: {e}"}
        os.write(write, json.dumps(out, default=str).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A folder of the user :func:`as_another_user` runs as, in a folder it can reach (pytest's
    own tmp_path is private to this user)."""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        folder = Path(top) / "store"
        folder.mkdir(mode=0o700)
        yield folder


@pytest.fixture
def store(tmp_path: Path) -> AccessStore:
    s = AccessStore(tmp_path / "access.db", create=True)
    s.add_user("alice", PW)
    return s


def test_store_file_and_its_journals_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not loosen the file
    try:
        path = tmp_path / "new" / "access.db"
        s = AccessStore(path, create=True)
        s.add_user("alice", PW)
        s.grant("alice", "viewer", "*")
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    for sidecar in path.parent.iterdir():  # -wal / -shm, when SQLite keeps them
        assert mode(sidecar) == 0o600, sidecar.name


def test_missing_store_is_not_created_implicitly(tmp_path: Path) -> None:
    with pytest.raises(AccessError, match="no access store"):
        AccessStore(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_store_readable_by_others_is_refused(store: AccessStore) -> None:
    os.chmod(store.path, 0o644)
    with pytest.raises(AccessError, match="chmod 600"):
        AccessStore(store.path)


@pytest.mark.parametrize("folder_mode", [0o1777, 0o777, 0o770], ids=["sticky", "world", "group"])
def test_store_in_a_folder_others_can_write_is_refused(tmp_path: Path, folder_mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, folder_mode)  # /tmp-like (sticky), world- or group-writable
    path = shared / "access.db"
    # What another user of that folder can do: plant the journal SQLite will write to.
    planted = shared / "access.db-wal"
    planted.touch()
    os.chmod(planted, 0o666)
    with open(planted, "rb") as spy:
        with pytest.raises(AccessError, match="can be written by other users") as info:
            AccessStore(path, create=True).add_user("alice", PW)
        assert f"chmod go-w {shared}" in str(info.value)  # the fix, named
        assert b"$argon2" not in spy.read()  # the planted journal received no hash
    assert not path.exists()


def test_store_in_a_folder_another_user_owns_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder made by someone else (say /tmp/robustai, mode 0755) is theirs to write,
    whatever its mode says."""
    planted = tmp_path / "robustai"
    planted.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(planted, 12345, 12345)
    else:  # this test's user plays the other one
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    with pytest.raises(AccessError, match="belongs to another user"):
        AccessStore(planted / "access.db", create=True)
    assert list(planted.iterdir()) == []


def test_existing_store_in_a_folder_opened_to_others_is_refused(store: AccessStore) -> None:
    os.chmod(store.path.parent, 0o777)
    try:
        with pytest.raises(AccessError, match="can be written by other users"):
            AccessStore(store.path)
    finally:
        os.chmod(store.path.parent, 0o700)


def test_no_password_in_clear_on_disk(store: AccessStore) -> None:
    store.set_password("alice", "another long passphrase")
    data = b"".join(p.read_bytes() for p in store.path.parent.iterdir())
    assert PW.encode() not in data and b"another long passphrase" not in data
    assert store.password_hash("alice").startswith("$argon2id$")


def test_right_password_wrong_password_unknown_user(store: AccessStore) -> None:
    user = store.authenticate("alice", PW)
    assert user is not None and user.name == "alice"
    assert store.authenticate("ALICE", PW) is not None  # names are case-insensitive
    assert store.authenticate("alice", PW.upper()) is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("mallory", PW) is None
    assert store.authenticate("bad name with spaces", PW) is None


def test_login_rehashes_pbkdf2_to_argon2id(store: AccessStore) -> None:
    legacy = pbkdf2_sha256.using(rounds=600_000).hash(PW)
    store.import_password_hash("alice", legacy)
    assert store.password_hash("alice") == legacy
    assert store.authenticate("alice", "wrong password 123") is None
    assert store.password_hash("alice") == legacy  # a failed login changes nothing
    assert store.authenticate("alice", PW) is not None
    upgraded = store.password_hash("alice")
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert store.authenticate("alice", PW) is not None
    assert store.password_hash("alice") == upgraded  # no rehash of a current hash


def test_import_refuses_unknown_hash_formats(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="not a password hash"):
        store.import_password_hash("alice", "5f4dcc3b5aa765d61d8327deb882cf99")  # md5


def test_users_are_unique_and_checked(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="already exists"):
        store.add_user("Alice", "some other passphrase")
    with pytest.raises(AccessError, match="invalid user name"):
        store.add_user("bob smith", PW)
    for forged in ("alice\n", "bob\n"):  # a second "alice" line in listings and logs
        with pytest.raises(AccessError, match="invalid user name"):
            store.add_user(forged, PW)
    with pytest.raises(PasswordPolicyError):
        store.add_user("bob", "bob")
    with pytest.raises(AccessError, match="no user 'alicia' \\(did you mean alice\\?\\)"):
        store.set_password("alicia", PW)


def test_another_sqlite_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """``--db`` pointed at another application's database must not add tables to it."""
    for name, schema in [
        ("notes.db", "CREATE TABLE notes (id, body)"),
        ("app.db", "CREATE TABLE users (id, email)"),
        ("meta.db", "CREATE TABLE meta (key, value); INSERT INTO meta VALUES ('v', '1.0')"),
    ]:
        path = tmp_path / name
        with sqlite3.connect(path) as db:
            db.executescript(schema)
        path.chmod(0o600)
        before = tables(path)
        with pytest.raises(AccessError, match="not a robustai access store"):
            AccessStore(path, create=True)
        assert tables(path) == before
    path = tmp_path / "version.db"  # a store of a version written as text this one cannot read
    AccessStore(path, create=True)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '1.0' WHERE key = 'schema_version'")
    with pytest.raises(AccessError, match=r"schema 1\.0, this robustai reads schema"):
        AccessStore(path)


def test_grants_scope_roles_to_experiment_patterns(store: AccessStore) -> None:
    assert store.grant("alice", "viewer", "mnist_*")
    assert not store.grant("alice", "viewer", "mnist_*")  # already held
    store.grant("alice", "runner", "cifar10_pgd")
    grants = store.user("alice").grants
    assert set(grants) == {Grant("viewer", "mnist_*"), Grant("runner", "cifar10_pgd")}
    assert allows(grants, "view", "mnist_small_cnn_pgd")
    assert not allows(grants, "run", "mnist_small_cnn_pgd")
    assert allows(grants, "run", "cifar10_pgd") and allows(grants, "view", "cifar10_pgd")
    assert not allows(grants, "manage", "cifar10_pgd")
    assert not allows(grants, "view", "fashion_mnist_mlp")
    store.revoke("alice", "viewer", "mnist_*")
    assert not allows(store.user("alice").grants, "view", "mnist_small_cnn_pgd")
    with pytest.raises(AccessError, match="has no grant"):
        store.revoke("alice", "viewer", "mnist_*")
    with pytest.raises(AccessError, match="unknown role 'viewr' \\(did you mean viewer\\?\\)"):
        store.grant("alice", "viewr", "*")
    with pytest.raises(AccessError, match="slashes"):
        store.grant("alice", "viewer", "../etc")


def test_admin_role_covers_everything_on_its_pattern() -> None:
    grants = [Grant("admin", "*")]
    assert all(allows(grants, a, "anything") for a in ("view", "run", "manage"))


def test_grants_as_text_as_users_list_shows_them() -> None:
    """``allows(["viewer:*"], ...)`` failed with "'str' object has no attribute 'role'"."""
    assert allows(["viewer:mnist_*"], "view", "mnist_a")
    assert not allows(["viewer:mnist_*"], "run", "mnist_a")
    with pytest.raises(TypeError, match=r"a list of grants, e\.g\. \['viewer:\*'\]"):
        allows("viewer:*", "view", "x")  # type: ignore[arg-type]
    with pytest.raises(AccessError, match="unknown role 'viewr'"):
        allows(["viewr:*"], "view", "x")
    with pytest.raises(AccessError, match="expected ROLE:PATTERN"):
        allows(["viewer"], "view", "x")


def test_arguments_of_the_wrong_type_are_one_line(store: AccessStore) -> None:
    """None as a name failed inside difflib ("'NoneType' object is not iterable"), a password
    that is no text inside unicodedata."""
    for call in (
        lambda: store.user(None),
        lambda: store.remove_user(None),
        lambda: store.tokens(123),
    ):
        with pytest.raises(TypeError, match=r"^a user name is text \(str\); got"):
            call()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^password must be text \(str\); got NoneType$"):
        store.add_user("xavier", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^password must be text \(str\); got bytes$"):
        store.set_password("alice", b"correct horse battery")  # type: ignore[arg-type]


def test_remove_user_removes_grants_and_tokens(store: AccessStore) -> None:
    store.grant("alice", "viewer", "*")
    token, _ = store.create_token("alice", "*", store.clock() + 3600)
    store.remove_user("alice")
    assert store.find_user("alice") is None
    assert store.tokens() == []
    assert store.verify_token(token) is None
    store.add_user("alice", PW)  # a new alice inherits nothing
    assert store.user("alice").grants == ()


def test_password_change_is_recorded(tmp_path: Path) -> None:
    clock = Clock()
    s = AccessStore(tmp_path / "a.db", create=True, clock=clock)
    s.add_user("alice", PW)
    before = s.user("alice").password_changed
    clock.now += 10
    s.set_password("alice", "a different passphrase")
    assert s.user("alice").password_changed == before + 10
    assert s.authenticate("alice", PW) is None
    assert s.authenticate("alice", "a different passphrase") is not None


def test_a_link_to_a_missing_store_is_named(tmp_path: Path) -> None:
    link = tmp_path / "access.db"
    link.symlink_to(tmp_path / "gone.db")
    with pytest.raises(AccessError, match=r"is a link to .*gone\.db, which does not exist"):
        AccessStore(link, create=True)
    assert not (tmp_path / "gone.db").exists()


def test_a_store_of_another_schema_version_is_left_unchanged(tmp_path: Path) -> None:
    """The version is read before anything is written: no table is added to a store that this
    robustai does not read."""
    path = tmp_path / "access.db"
    AccessStore(path, create=True)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        db.execute("DROP TABLE tokens")  # say schema 2 keeps tokens elsewhere
    before = tables(path)
    for create in (False, True):
        with pytest.raises(AccessError, match="schema 2, this robustai reads schema 1"):
            AccessStore(path, create=create)
    assert tables(path) == before


def test_an_empty_file_becomes_a_store_only_when_one_is_created(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    path.touch()
    path.chmod(0o600)
    with pytest.raises(AccessError, match="is empty, not an access store; create one with"):
        AccessStore(path)
    assert path.stat().st_size == 0  # left as it was
    AccessStore(path, create=True).add_user("alice", PW)  # what `robustai users add` does
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert AccessStore(path).user("alice").name == "alice"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to run as another user")
def test_a_read_only_store_can_be_read(private_dir: Path) -> None:
    """Listing users, logging in and checking tokens only read the store, so they work on a
    store this user cannot write (chmod 400, immutable); a change says why it cannot be made."""
    path = private_dir / "access.db"
    store = AccessStore(path, create=True)
    store.add_user("alice", PW)
    token, _ = store.create_token("alice", "*", store.clock() + 3600)
    for p in (private_dir, *private_dir.iterdir()):
        if os.geteuid() == 0:
            os.chown(p, NOBODY, NOBODY)
    path.chmod(0o400)

    def read() -> list[Any]:
        s = AccessStore(path)
        found = s.verify_token(token)  # its last use is not recorded: no error either
        return [[u.name for u in s.users()], found is not None, s.authenticate("alice", PW)]

    names, token_ok, user = as_another_user(read)["value"]
    assert names == ["alice"] and token_ok and user
    error = as_another_user(lambda: AccessStore(path).add_user("bob", PW))["error"]
    assert "is read-only for this user" in error and "chmod 600" in error
    assert "\n" not in error
    # no -shm beside a WAL store, and none can be made: the message says so
    for sidecar in private_dir.glob("access.db-*"):  # left by the readers; nothing in them
        sidecar.unlink()
    private_dir.chmod(0o500)
    try:
        error = as_another_user(lambda: AccessStore(path).users())["error"]
    finally:
        private_dir.chmod(0o700)
    assert f"must create {path.name}-shm beside it" in error, error


@pytest.mark.parametrize("damaged", ["meta", "sqlite_autoindex_meta_1", "users"])
def test_a_corrupt_store_is_reported_as_corrupt(tmp_path: Path, damaged: str) -> None:
    """Not as "not a robustai access store", which would send the user to make a new one."""
    path = tmp_path / "access.db"
    AccessStore(path, create=True).add_user("alice", PW)
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (damaged,)
        ).fetchone()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size : (root - 1) * page_size + 12] = b"\xff" * 12  # its page header
    path.write_bytes(bytes(data))
    with pytest.raises(AccessError) as info:
        AccessStore(path).users()
    message = str(info.value)
    assert f"the access store {path} is corrupt" in message and "malformed" in message
    assert "restore it from a backup" in message and ".recover" in message
    assert "not a robustai access store" not in message


def test_a_file_that_is_not_sqlite_is_named_before_its_mode(tmp_path: Path) -> None:
    """``--db /etc/passwd`` (world-readable, not a store) must not advise `chmod 600` on it."""
    for name, content in [("passwd", b"root:x:0:0:root:/root:/bin/bash\n"), ("short", b"SQL")]:
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o644)
        for create in (False, True):
            with pytest.raises(AccessError, match="is not an SQLite database") as info:
                AccessStore(path, create=create)
            assert "chmod" not in str(info.value)
        assert path.read_bytes() == content and mode(path) == 0o644
    if Path("/etc/passwd").is_file():
        with pytest.raises(AccessError, match="/etc/passwd is not an SQLite database"):
            AccessStore("/etc/passwd")


def test_a_store_removed_while_in_use_is_not_created_again(tmp_path: Path) -> None:
    """Each call opens the file it was given and never creates one (SQLite's plain connect
    would, empty and with the umask's mode)."""
    path = tmp_path / "access.db"
    store = AccessStore(path, create=True)
    store.add_user("alice", PW)
    path.unlink()
    for call in (lambda: store.find_user("alice"), lambda: store.add_user("bob", PW)):
        with pytest.raises(AccessError, match=r"access\.db is gone \(removed or moved"):
            call()
    assert not path.exists()


@pytest.mark.parametrize("folder", ["a?b", "a#b", "a%20b", "a b", "mode=ro&x"])
def test_paths_with_uri_characters_open_the_right_file(tmp_path: Path, folder: str) -> None:
    """The store is opened by URI; ``?``, ``#`` and ``%`` in its path are quoted."""
    path = tmp_path / folder / "access.db"
    AccessStore(path, create=True).add_user("alice", PW)
    assert AccessStore(path).user("alice").name == "alice"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # nothing beside it


def test_a_change_racing_another_process_says_what_happened(
    store: AccessStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process adds or removes the user between a method's check and its write: the
    database's constraint decides, and the message says what it means."""
    real = AccessStore._user_row
    monkeypatch.setattr(AccessStore, "_user_row", staticmethod(lambda db, name: None))
    with pytest.raises(AccessError, match=r"^user 'alice' already exists"):
        store.add_user("alice", PW)  # two `users add alice` at once: this one lost
    # the check saw bob; he was removed before the write
    monkeypatch.setattr(
        AccessStore, "_user_row", staticmethod(lambda db, name: ("bob", "", 0.0, 0.0))
    )
    for change in (
        lambda: store.grant("bob", "viewer", "*"),
        lambda: store.create_token("bob", "*", store.clock() + 60),
    ):
        with pytest.raises(AccessError, match=r"^user 'bob' was removed while this ran"):
            change()
    monkeypatch.setattr(AccessStore, "_user_row", real)
    monkeypatch.setattr(
        AccessStore,
        "user",
        lambda self, name: User("bob", 0.0, 0.0, ()),  # found, then gone
    )
    with pytest.raises(AccessError, match=r"^user 'bob' was removed while this ran"):
        store.set_password("bob", "another long passphrase")
    assert store.tokens() == [] and [u.name for u in store.users()] == ["alice"]
