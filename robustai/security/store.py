"""The access store: users, grants and tokens in one SQLite file that only its owner can read.

The file is created with mode 0600 (and SQLite gives its journal files the same mode); an existing
file that other users can read or write is refused, as ssh refuses a readable private key. Passwords
are kept as argon2id hashes (:mod:`robustai.security.passwords`), tokens as SHA-256 hashes
(:mod:`robustai.security.tokens`); neither is ever stored or logged in clear.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from robustai.security.errors import AccessError
from robustai.security.passwords import (
    check_password_policy,
    dummy_verify,
    hash_password,
    is_known_hash,
    verify_password,
)
from robustai.security.roles import Grant, check_pattern, check_role
from robustai.security.tokens import generate_token, hashes_match, parse_token, token_hash

log = logging.getLogger(__name__)

ENV_DB = "ROBUSTAI_ACCESS_DB"
SCHEMA_VERSION = 1
MAX_TOKEN_SECONDS = 366 * 24 * 3600
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # fullmatch: "$" lets "\n" end a name
_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database
_LAST_USED_RESOLUTION = 60.0  # seconds; avoids a database write on every API request

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL,
    password_changed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    user TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'runner', 'viewer')),
    pattern TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (user, role, pattern)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    scope TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    revoked REAL,
    last_used REAL
);
"""


@dataclass(frozen=True)
class User:
    name: str
    created: float
    password_changed: float
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token without the token itself."""

    token_id: str
    user: str
    scope: str
    created: float
    expires: float
    revoked: float | None
    last_used: float | None

    def status(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if now >= self.expires else "active"


def default_store_path() -> Path:
    """``$ROBUSTAI_ACCESS_DB``; there is deliberately no implicit default location."""
    env = os.environ.get(ENV_DB, "").strip()
    if not env:
        raise AccessError(f"no access store given: pass --db PATH or set {ENV_DB}=PATH")
    return Path(env).expanduser()


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise AccessError(
            f"invalid user name {name!r}: 1 to 64 letters, digits or '_.@-', starting with a "
            "letter or digit"
        )
    return name


# SQLite's result codes (Python >= 3.11 gives them as ``sqlite_errorcode``)
_READONLY = 8
_CORRUPT = 11
_NOTADB = 26
_READONLY_CANTINIT = _READONLY | (5 << 8)  # cannot create the -shm of a WAL database
_READONLY_DIRECTORY = _READONLY | (6 << 8)  # the -shm's folder is read-only


def _errorcode(e: sqlite3.Error) -> int | None:
    return getattr(e, "sqlite_errorcode", None)


def _is_read_only(e: sqlite3.Error) -> bool:
    code = _errorcode(e)
    if code is not None:
        return code & 0xFF == _READONLY
    return "readonly database" in str(e)  # Python 3.10: the message only


def _is_corrupt(e: sqlite3.Error) -> bool:
    """A damaged file: a page that does not parse, or a header that does not (after the first
    16 bytes, which :meth:`AccessStore._check_file` reads itself)."""
    code = _errorcode(e)
    if code is not None:
        return code & 0xFF in (_CORRUPT, _NOTADB)
    return "malformed" in str(e) or "not a database" in str(e)


def _taken(name: str) -> AccessError:
    return AccessError(f"user '{name}' already exists (use passwd to change it)")


def _removed(name: str) -> AccessError:
    """A user removed (by another process) between a command's check and its change."""
    return AccessError(
        f"user '{name}' was removed while this ran; nothing changed (see `robustai users list`)"
    )


def _check_str(what: str, value: object) -> None:
    """A string, or a one-line TypeError naming ``what`` (None from a missing form field or
    header, bytes from a raw request): the parsers would fail with an unrelated message."""
    if not isinstance(value, str):
        hint = f" (decode it: {what}.decode())" if isinstance(value, bytes) else ""
        raise TypeError(f"{what} must be a string; got {type(value).__name__}{hint}")


class AccessStore:
    """Users, their grants and their tokens; every method opens its own short connection, so one
    store may be shared by the threads of a server."""

    def __init__(
        self, path: str | Path, *, create: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path).expanduser()
        self.clock = clock
        self._check_folder()
        if self.path.is_symlink() and not self.path.exists():
            raise AccessError(
                f"{self.path} is a link to {os.readlink(self.path)}, which does not exist; "
                "give --db (or ROBUSTAI_ACCESS_DB) the store's file itself"
            )
        if not self.path.exists():
            if not create:
                raise AccessError(
                    f"no access store at {self.path}; create it with "
                    f"`robustai users add NAME --db {self.path}`"
                )
            self._create_file()
        self._check_file()
        with self._connect() as db:
            empty = not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if empty:
            if not create:
                raise AccessError(
                    f"{self.path} is empty, not an access store; create one with "
                    f"`robustai users add NAME --db {self.path}`, or give --db (or "
                    f"{ENV_DB}) the store's file"
                )
            self._initialize()
        self._check_version()

    def _initialize(self) -> None:
        """Write the schema into a new (empty) store. Only here is the schema written: an
        existing store is read before anything is written to it, so a store of another schema
        version, or a read-only one, is left as it is."""
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers (the dashboard) never block writers
        with self._connect() as db:
            # One immediate transaction: a second process creating the same store at the same
            # time waits, then finds the tables (IF NOT EXISTS, OR IGNORE) and adds nothing.
            db.executescript(
                "BEGIN IMMEDIATE;\n"
                + _SCHEMA
                + "INSERT OR IGNORE INTO meta (key, value) "
                + f"VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
            )
        log.info("created access store %s (mode 0600)", self.path)

    def _check_version(self) -> None:
        """Refuse a file that is not an access store of the schema this code reads; reads only."""
        with self._connect() as db:
            self._check_is_store(db)  # never add tables to someone else's database
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            raise AccessError(
                f"{self.path} has access-store schema {version and version[0]}, this robustai "
                f"reads schema {SCHEMA_VERSION}"
            )

    def _check_is_store(self, db: sqlite3.Connection) -> None:
        """Refuse an SQLite file with tables that is not an access store (``--db`` pointed at
        another application's database): the schema would be added to it."""
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        try:
            marked = (
                has_meta
                and db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone()
            )
        except sqlite3.OperationalError:  # a 'meta' table of another shape (no such column)
            marked = None  # (a damaged file raises DatabaseError: _error says it is corrupt)
        if not marked:
            raise AccessError(
                f"{self.path} is an SQLite database but not a robustai access store; give "
                "--db (or ROBUSTAI_ACCESS_DB) the store's file or a new one"
            )

    # ----------------------------------------------------------------------- file handling
    def _create_file(self) -> None:
        parent = self.path.parent
        try:
            if not parent.exists():
                parent.mkdir(mode=0o700, parents=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return  # another process created it; _check_file judges it
        except OSError as e:
            raise AccessError(
                f"cannot create the access store {self.path}: {e.strerror}; give --db (or "
                "ROBUSTAI_ACCESS_DB) a file in a folder you can write"
            ) from e
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # whatever the umask
        finally:
            os.close(fd)  # empty: __init__ writes the schema into it

    def _check_folder(self) -> None:
        """Refuse a folder that other users can write (a shared or sticky one such as /tmp, or
        one another user owns: its owner can write it whatever its mode says).

        SQLite keeps its journal (``-wal``, ``-shm``) beside the file and reopens an existing
        one as it finds it: whoever can create files there can plant a journal they can read
        (it receives the password and token hashes) or write (it rewrites the store).
        """
        if os.name != "posix":
            return
        folders = {self.path.parent.absolute()}
        if self.path.exists():
            folders.add(self.path.resolve().parent)  # SQLite's journals go beside the target
        for folder in sorted(folders):
            try:
                st = folder.stat()
            except OSError:
                continue  # missing (created below, mode 0700) or unusable (said there)
            mode = stat.S_IMODE(st.st_mode)
            if st.st_uid not in (os.geteuid(), 0):  # e.g. a /tmp/<name> made by someone else
                raise AccessError(
                    f"{folder} belongs to another user (uid {st.st_uid}), who could replace the "
                    f"access store or plant its journal files and read the password hashes; "
                    f"keep {self.path.name} in a folder of your own (e.g. ~/.robustai)"
                )
            if mode & 0o022:
                raise AccessError(
                    f"{folder} can be written by other users (mode {mode:04o}): they could "
                    f"replace the access store or plant its journal files and read the password "
                    f"hashes; keep {self.path.name} in a folder only you can write "
                    f"(chmod go-w {folder}, or e.g. ~/.robustai)"
                )

    def _check_file(self) -> None:
        try:
            st = self.path.stat()
        except OSError as e:
            raise AccessError(f"cannot read the access store {self.path}: {e.strerror}") from e
        if not stat.S_ISREG(st.st_mode):
            raise AccessError(f"{self.path} is not a file; --db names the access-store file")
        # What the file is comes first: `chmod 600` is advice for a store, not for /etc/passwd
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise AccessError(f"cannot read the access store {self.path}: {e.strerror}") from e
        if head and head != _SQLITE_HEADER:  # empty: a new store (create) or refused later
            raise AccessError(
                f"{self.path} is not an SQLite database, so not an access store; give --db "
                f"(or {ENV_DB}) the store's file, or a new path to create one"
            )
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise AccessError(
                f"{self.path} is open to other users (mode {mode:04o}); it holds password "
                f"hashes: run `chmod 600 {self.path}`"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the existing file, never a new one: plain ``sqlite3.connect`` creates
        a missing file (with the umask's mode, and empty), so a store removed while a dashboard
        runs would come back as an empty file that others can read. ``mode=rw`` opens the file
        only if it is there (read-only if the OS says so); ``as_uri`` quotes ``?``, ``#``
        and ``%`` in the path, which SQLite would read as the URI's own."""
        uri = self.path.absolute().as_uri() + "?mode=rw"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=15.0)
        except sqlite3.Error as e:
            raise self._error(e) from e
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")  # removed hashes are overwritten
            with db:  # one transaction: commit on success, roll back on error
                yield db
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        finally:
            db.close()

    def _error(self, e: sqlite3.Error) -> AccessError:
        """One line that says what is wrong with the store, and what to do about it."""
        if not self.path.exists():
            return AccessError(
                f"the access store {self.path} is gone (removed or moved while in use; {e}); "
                "put it back, or give --db (or ROBUSTAI_ACCESS_DB) where it is now"
            )
        if _is_corrupt(e):
            return AccessError(
                f"the access store {self.path} is corrupt ({e}): restore it from a backup, or "
                f"recover what is left with `sqlite3 {self.path} .recover | sqlite3 NEW.db` "
                "and check the result (robustai users list --db NEW.db)"
            )
        if _is_read_only(e):
            if _errorcode(e) in (_READONLY_CANTINIT, _READONLY_DIRECTORY):
                return AccessError(
                    f"cannot read the access store {self.path}: SQLite must create "
                    f"{self.path.name}-shm beside it to read a store in WAL mode, and cannot "
                    f"({e}); make {self.path.parent} writable for this user, or run as the "
                    "store's owner"
                )
            return AccessError(
                f"the access store {self.path} is read-only for this user, and this changes it "
                f"({e}); run as the store's owner, or make the file writable (chmod 600)"
            )
        return AccessError(f"access store {self.path} cannot be used: {e}")

    # ----------------------------------------------------------------------- users
    def add_user(self, name: str, password: str) -> User:
        check_user_name(name)
        check_password_policy(password, name)
        now = self.clock()
        digest = hash_password(password)
        with self._connect() as db:
            if self._user_row(db, name) is not None:
                raise _taken(name)
            try:
                db.execute(
                    "INSERT INTO users (name, password_hash, created, password_changed) "
                    "VALUES (?, ?, ?, ?)",
                    (name, digest, now, now),
                )
            except sqlite3.IntegrityError:  # added by another process since the check above
                raise _taken(name) from None
        log.info("added user %s", name)
        return self.user(name)

    def set_password(self, name: str, password: str) -> None:
        """Change a password; sessions issued before the change stop being accepted."""
        user = self.user(name)
        check_password_policy(password, user.name)
        self._replace_hash(user.name, hash_password(password), changed=True)
        log.info("changed the password of %s", user.name)

    def import_password_hash(self, name: str, password_hash: str) -> None:
        """Take over a bcrypt or pbkdf2_sha256 hash from another system (migration); it is
        replaced by argon2id at the user's next successful login."""
        user = self.user(name)
        if not is_known_hash(password_hash):
            raise AccessError(
                "not a password hash robustai accepts (argon2, bcrypt, pbkdf2_sha256)"
            )
        self._replace_hash(user.name, password_hash, changed=True)

    def _replace_hash(self, name: str, digest: str, *, changed: bool) -> None:
        with self._connect() as db:
            if changed:
                cur = db.execute(
                    "UPDATE users SET password_hash = ?, password_changed = ? WHERE name = ?",
                    (digest, self.clock(), name),
                )
            else:
                cur = db.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?", (digest, name)
                )
            if cur.rowcount == 0:  # removed since the caller looked the user up
                raise _removed(name)

    def remove_user(self, name: str) -> None:
        """Remove a user with their grants and tokens."""
        with self._connect() as db:
            cur = db.execute("DELETE FROM users WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise AccessError(self._no_user(db, name))
        log.info("removed user %s", name)

    def check_name_free(self, name: str) -> None:
        """Raise unless ``name`` is free, so a caller can say so before asking for a password
        (:meth:`add_user` checks again)."""
        if self.find_user(name) is not None:
            raise _taken(name)

    def find_user(self, name: str) -> User | None:
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                return None
            return self._user_from(db, row)

    def user(self, name: str) -> User:
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                raise AccessError(self._no_user(db, name))
            return self._user_from(db, row)

    def users(self) -> list[User]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, password_hash, created, password_changed FROM users ORDER BY name"
            ).fetchall()
            return [self._user_from(db, r) for r in rows]

    def password_hash(self, name: str) -> str:
        """The stored hash (for tests and audits; never shown by the CLI)."""
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                raise AccessError(self._no_user(db, name))
            return str(row[1])

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None; an old or deprecated hash is upgraded.

        An unknown name costs the same hashing time as a known one, so timing does not tell
        which names exist.
        """
        _check_str("name", name)
        _check_str("password", password)
        with self._connect() as db:
            row = self._user_row(db, name) if _USER_NAME.fullmatch(name) else None
        if row is None:
            dummy_verify()
            return None
        ok, new_hash = verify_password(password, row[1])
        if not ok:
            return None
        if new_hash is not None:
            try:
                self._replace_hash(row[0], new_hash, changed=False)
                log.info("upgraded the password hash of %s to argon2id", row[0])
            except AccessError as e:  # e.g. a read-only store: the login stands, the old hash too
                log.warning("the password hash of %s was not upgraded: %s", row[0], e)
        return self.find_user(row[0])

    # ----------------------------------------------------------------------- grants
    def grant(self, name: str, role: str, pattern: str) -> bool:
        """Give ``role`` on experiments matching ``pattern``; False if the grant existed."""
        check_role(role)
        check_pattern(pattern)
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                raise AccessError(self._no_user(db, name))
            try:
                cur = db.execute(
                    "INSERT OR IGNORE INTO grants (user, role, pattern, created) "
                    "VALUES (?, ?, ?, ?)",
                    (row[0], role, pattern, self.clock()),
                )
            except sqlite3.IntegrityError:  # the foreign key: removed since the check above
                raise _removed(row[0]) from None
        return cur.rowcount > 0

    def revoke(self, name: str, role: str, pattern: str) -> None:
        check_role(role)
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                raise AccessError(self._no_user(db, name))
            cur = db.execute(
                "DELETE FROM grants WHERE user = ? AND role = ? AND pattern = ?",
                (row[0], role, pattern),
            )
            if cur.rowcount == 0:
                have = ", ".join(str(g) for g in self._grants(db, row[0])) or "none"
                raise AccessError(f"{row[0]} has no grant {role}:{pattern}; grants: {have}")

    # ----------------------------------------------------------------------- tokens
    def create_token(self, name: str, scope: str, expires: float) -> tuple[str, TokenInfo]:
        """A new token for ``name`` limited to experiments matching ``scope``, valid until the
        epoch time ``expires``. The returned token string is not kept anywhere."""
        check_pattern(scope)
        now = self.clock()
        if not math.isfinite(expires):
            raise AccessError(f"token expiry must be a finite epoch time, not {expires}")
        if expires <= now:
            raise AccessError("token expiry must be in the future")
        if expires - now > MAX_TOKEN_SECONDS:
            raise AccessError("tokens live at most 366 days; give a shorter --expires")
        new = generate_token()
        with self._connect() as db:
            row = self._user_row(db, name)
            if row is None:
                raise AccessError(self._no_user(db, name))
            try:
                db.execute(
                    "INSERT INTO tokens (id, user, hash, scope, created, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (new.token_id, row[0], token_hash(new.token), scope, now, expires),
                )
            except sqlite3.IntegrityError:  # the foreign key: removed since the check above
                raise _removed(row[0]) from None
        log.info("created token %s for %s (scope %s)", new.token_id, row[0], scope)
        return new.token, self.token_info(new.token_id)

    def token_info(self, token_id: str) -> TokenInfo:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, user, scope, created, expires, revoked, last_used FROM tokens "
                "WHERE id = ?",
                (token_id,),
            ).fetchone()
        if row is None:
            raise AccessError(f"no token with id '{token_id}' (see `robustai users token list`)")
        return TokenInfo(*row)

    def tokens(self, name: str | None = None) -> list[TokenInfo]:
        query = "SELECT id, user, scope, created, expires, revoked, last_used FROM tokens"
        with self._connect() as db:
            if name is None:
                rows = db.execute(query + " ORDER BY user, created").fetchall()
            else:
                if self._user_row(db, name) is None:
                    raise AccessError(self._no_user(db, name))
                rows = db.execute(query + " WHERE user = ? ORDER BY created", (name,)).fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke_token(self, token_id: str) -> TokenInfo:
        with self._connect() as db:
            cur = db.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (self.clock(), token_id),
            )
            found = db.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if found is None:
            raise AccessError(f"no token with id '{token_id}' (see `robustai users token list`)")
        if cur.rowcount:
            log.info("revoked token %s", token_id)
        return self.token_info(token_id)

    def verify_token(self, token: str) -> tuple[User, TokenInfo] | None:
        """The owner and the token's record if ``token`` is valid now (known, not expired, not
        revoked); otherwise None. A token that is not a string (None for a missing header,
        bytes) is a TypeError naming it, not an AttributeError from inside the parser."""
        _check_str("token", token)
        token_id = parse_token(token)
        if token_id is None:
            return None
        now = self.clock()
        with self._connect() as db:
            row = db.execute(
                "SELECT id, user, scope, created, expires, revoked, last_used, hash FROM tokens "
                "WHERE id = ?",
                (token_id,),
            ).fetchone()
            if row is None or not hashes_match(token, row[7]):
                return None
            info = TokenInfo(*row[:7])
            if info.status(now) != "active":
                return None
            user_row = self._user_row(db, info.user)
            if user_row is None:
                return None
            if info.last_used is None or now - info.last_used > _LAST_USED_RESOLUTION:
                try:
                    db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token_id))
                except sqlite3.OperationalError as e:
                    if not _is_read_only(e):
                        raise
                    # a read-only store still checks tokens; only their last use goes unrecorded
                    log.debug("token %s used; not recorded in read-only %s", token_id, self.path)
            return self._user_from(db, user_row), info

    # ----------------------------------------------------------------------- helpers
    @staticmethod
    def _user_row(db: sqlite3.Connection, name: str) -> tuple | None:
        return db.execute(
            "SELECT name, password_hash, created, password_changed FROM users WHERE name = ?",
            (name,),
        ).fetchone()

    @staticmethod
    def _grants(db: sqlite3.Connection, name: str) -> tuple[Grant, ...]:
        rows = db.execute(
            "SELECT role, pattern FROM grants WHERE user = ? ORDER BY role, pattern", (name,)
        ).fetchall()
        return tuple(Grant(r, p) for r, p in rows)

    def _user_from(self, db: sqlite3.Connection, row: tuple) -> User:
        return User(row[0], row[2], row[3], self._grants(db, row[0]))

    @staticmethod
    def _no_user(db: sqlite3.Connection, name: str) -> str:
        import difflib

        if not isinstance(name, str):  # None matches no row; difflib's own error said less
            raise TypeError(f"a user name is text (str); got {type(name).__name__}")

        names = [r[0] for r in db.execute("SELECT name FROM users ORDER BY name")]
        hint = difflib.get_close_matches(name, names, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        return f"no user '{name}'{maybe}; see `robustai users list`"
