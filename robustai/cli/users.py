"""``robustai users``: manage the access store (users, grants, tokens) behind the dashboard.

Passwords are read from a prompt (getpass) or, with ``--password-stdin``, from one line of
standard input; never from the command line, where other users could read them in the process
list and where they would end up in shell history. Whoever can write the store file administers
it: the file is private to its owner (mode 0600).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from robustai.cli.common import fail, unechoed
from robustai.errors import UserError
from robustai.security import ENV_DB, ROLES, AccessStore, default_store_path
from robustai.security.errors import AccessError

COMMAND = "users"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (a UserError) instead of usage + exit, and
    never echoes what was typed (a password given by mistake on the command line, say as
    ``--password-stdin=...``, must not reach the terminal's scrollback or a CI log again).
    Options are matched in full: an abbreviation such as ``--passw=...`` is no option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog.removeprefix('robustai ')}: {unechoed(message)}")


def parse_expiry(text: str, now: float) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO date/time (UTC if no zone)."""
    m = _DURATION.match(text)
    if m:
        if len(m.group(1).lstrip("0")) > 9:  # past any date a timestamp can hold
            raise AccessError(f"--expires {text.strip()}: too far in the future")
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
        if seconds <= 0:
            raise AccessError(f"--expires {text}: must be in the future")
        return now + seconds
    stamp = text.strip()
    if stamp[-1:] in ("Z", "z"):  # UTC as ISO 8601 writes it, which Python 3.10 does not read
        stamp = stamp[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        raise AccessError(
            f"--expires {text}: give a duration such as 30d, 12h, 2w or a date such as 2030-01-31"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def build_parser() -> argparse.ArgumentParser:
    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"the access-store file (default: ${ENV_DB})",
    )
    p = _Parser(
        prog="robustai users",
        parents=[db],
        description="Manage the users, roles and tokens that the dashboard accepts.",
        epilog=(
            f"Roles: {', '.join(ROLES)} (admin manages users, runner launches runs, viewer sees "
            "dashboards), each granted on an experiment-name pattern such as 'mnist_*'. "
            "Passwords are read from a prompt or --password-stdin, never from arguments."
        ),
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    add = sub.add_parser("add", parents=[db], help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="ROLE:PATTERN",
        help="also grant a role, e.g. --grant viewer:'mnist_*' (repeatable)",
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    sub.add_parser("list", parents=[db], help="list users and their grants")

    rm = sub.add_parser("remove", parents=[db], help="remove a user, their grants and tokens")
    rm.add_argument("name")

    pw = sub.add_parser("passwd", parents=[db], help="change a password (ends their sessions)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    for verb, what in (("grant", "give"), ("revoke", "take away")):
        g = sub.add_parser(verb, parents=[db], help=f"{what} a role on an experiment pattern")
        g.add_argument("name")
        g.add_argument("role", help=f"one of {', '.join(ROLES)}")
        g.add_argument("pattern", help="experiment-name glob, e.g. 'mnist_*' or '*'")

    tok = sub.add_parser("token", parents=[db], help="API tokens for scripts (bearer header)")
    tsub = tok.add_subparsers(
        dest="token_command", metavar="TOKEN_COMMAND", required=True, parser_class=_Parser
    )
    create = tsub.add_parser("create", parents=[db], help="create a token; printed only once")
    create.add_argument("name")
    create.add_argument(
        "--scope",
        required=True,
        metavar="PATTERN",
        help="experiments the token may reach (narrows the user's grants), e.g. 'mnist_*'",
    )
    create.add_argument(
        "--expires", default="30d", help="lifetime (30d, 12h, 2w) or a date (default: 30d)"
    )
    tlist = tsub.add_parser("list", parents=[db], help="list tokens (never their values)")
    tlist.add_argument("name", nargs="?")
    trev = tsub.add_parser("revoke", parents=[db], help="revoke a token by its id")
    trev.add_argument("token_id")
    return p


def _has_terminal() -> bool:
    """Whether getpass can prompt without echo; without a terminal it warns, then reads stdin."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return sys.stdin.isatty()
    os.close(fd)
    return True


def _text(password: str, where: str) -> str:
    """Bytes that are not UTF-8 arrive as surrogate escapes, which the hash cannot take."""
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise AccessError(f"{where}: the password is not valid UTF-8 text") from None
    return password


def read_password(name: str, from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise AccessError("--password-stdin: no password on standard input")
        return _text(password, "--password-stdin")
    if not _has_terminal():
        raise AccessError("no terminal to prompt for the password: pipe it with --password-stdin")
    try:
        password = getpass.getpass(f"password for {name}: ")
        if confirm and getpass.getpass("again: ") != password:
            raise AccessError("the two passwords differ; nothing changed")
    except EOFError:
        raise AccessError(
            "no password given (no terminal? pipe it with --password-stdin)"
        ) from None
    except KeyboardInterrupt:  # Ctrl-C at the prompt: the user's choice, as 130 says in a shell
        sys.stderr.write("\n")  # the prompt's line has no newline yet
        fail(COMMAND, "interrupted at the password prompt; nothing changed", 128 + signal.SIGINT)
    return _text(password, "the password prompt")


def _store_path(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if getattr(args, "db", None) else default_store_path()


def _store(args: argparse.Namespace, create: bool = False) -> AccessStore:
    return AccessStore(_store_path(args), create=create)


def _split_grant(text: str) -> tuple[str, str]:
    role, sep, pattern = text.partition(":")
    if not sep:
        raise AccessError(f"--grant {text}: write ROLE:PATTERN, e.g. viewer:'mnist_*'")
    return role, pattern


def run(args: argparse.Namespace) -> None:
    out = sys.stdout.write
    if args.command == "add":
        from robustai.security.passwords import check_password_policy
        from robustai.security.roles import check_pattern, check_role
        from robustai.security.store import check_user_name

        check_user_name(args.name)
        grants = [_split_grant(g) for g in args.grant]
        for role, pattern in grants:  # check before asking for a password
            check_role(role)
            check_pattern(pattern)
        if _store_path(args).exists():  # say a taken name before the prompt, not after
            _store(args, create=True).check_name_free(args.name)  # (an empty file: made one)
        password = read_password(args.name, args.password_stdin)
        check_password_policy(password, args.name)  # a refused password creates no store
        store = _store(args, create=True)
        store.add_user(args.name, password)
        for role, pattern in grants:
            store.grant(args.name, role, pattern)
        out(f"added user {args.name}" + (f" ({', '.join(args.grant)})" if grants else "") + "\n")
    elif args.command == "list":
        store = _store(args)
        active: dict[str, int] = {}
        now = store.clock()
        for t in store.tokens():
            if t.status(now) == "active":
                active[t.user] = active.get(t.user, 0) + 1
        rows = [("NAME", "GRANTS", "CREATED", "ACTIVE TOKENS")]
        for u in store.users():
            grants = ",".join(str(g) for g in u.grants) or "-"
            rows.append((u.name, grants, _when(u.created), str(active.get(u.name, 0))))
        _table(rows)
    elif args.command == "remove":
        _store(args).remove_user(args.name)
        out(f"removed user {args.name} with their grants and tokens\n")
    elif args.command == "passwd":
        store = _store(args)
        store.user(args.name)  # fail on an unknown name before prompting
        store.set_password(args.name, read_password(args.name, args.password_stdin))
        out(f"changed the password of {args.name}; their sessions have ended\n")
        now = store.clock()
        live = [t.token_id for t in store.tokens(args.name) if t.status(now) == "active"]
        if live:  # tokens are credentials of their own; a password change leaves them valid
            out(
                f"their API tokens stay valid: {', '.join(live)}; if the password was exposed, "
                "revoke them too (robustai users token revoke <id>)\n"
            )
    elif args.command == "grant":
        added = _store(args).grant(args.name, args.role, args.pattern)
        out(
            f"{args.name}: {args.role}:{args.pattern}" + ("" if added else " (already held)") + "\n"
        )
    elif args.command == "revoke":
        _store(args).revoke(args.name, args.role, args.pattern)
        out(f"{args.name}: revoked {args.role}:{args.pattern}\n")
    elif args.command == "token":
        _token(args)


def _token(args: argparse.Namespace) -> None:
    store = _store(args)
    if args.token_command == "create":
        expires = parse_expiry(args.expires, store.clock())
        token, info = store.create_token(args.name, args.scope, expires)
        sys.stderr.write(
            f"token {info.token_id} for {info.user}, scope {info.scope}, expires "
            f"{_when(info.expires)}. It is shown only this once: store it now. Use it as the "
            "header 'Authorization: Bearer <token>'.\n"
        )
        sys.stdout.write(token + "\n")
    elif args.token_command == "list":
        now = store.clock()
        rows = [("ID", "USER", "SCOPE", "STATUS", "CREATED", "EXPIRES", "LAST USED")]
        for t in store.tokens(args.name):
            rows.append(
                (
                    t.token_id,
                    t.user,
                    t.scope,
                    t.status(now),
                    _when(t.created),
                    _when(t.expires),
                    _when(t.last_used),
                )
            )
        _table(rows)
    elif args.token_command == "revoke":
        info = store.revoke_token(args.token_id)
        sys.stdout.write(f"token {info.token_id} of {info.user}: revoked\n")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


def main(argv: Sequence[str]) -> int:
    args_list = list(argv)
    if any(a == "--password" or a.startswith("--password=") for a in args_list):
        fail(
            COMMAND,
            "passwords are never taken from the command line; you will be prompted, or pipe one "
            "line into --password-stdin",
        )
    try:
        args = build_parser().parse_args(args_list)
        run(args)
    except UserError as e:
        message = str(e)
        fail(COMMAND, message.removeprefix("users: "))
    return 0
