"""``robustai dashboard``: TensorBoard over the experiments folder, behind a login.

Users, roles and tokens come from the access store (``robustai users``); each user sees only the
runs of experiments their grants cover. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from robustai.cli.common import fail, unechoed
from robustai.errors import UserError
from robustai.security import ENV_DB, default_store_path

COMMAND = "dashboard"


class _Parser(argparse.ArgumentParser):
    """One line for bad input, without echoing what was typed (a mistyped ``--token=...``)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(unechoed(message))


def build_parser() -> argparse.ArgumentParser:
    from robustai.dashboard.server import DEFAULT_HOST, DEFAULT_PORT

    p = _Parser(
        prog="robustai dashboard",
        description=(
            "Serve TensorBoard over --logdir behind a login page (session cookie) and bearer "
            "tokens; each user sees the runs their grants cover."
        ),
        epilog="Create users first: robustai users add NAME --grant viewer:'*' --db PATH",
    )
    p.add_argument(
        "--logdir", default="experiments", help="the experiments folder (default: experiments)"
    )
    p.add_argument("--db", metavar="PATH", help=f"the access store (default: ${ENV_DB})")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}: this machine only)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free port)",
    )
    p.add_argument(
        "--access-log",
        metavar="FILE",
        help="append the access log here (default: dashboard-access.log beside the store)",
    )
    p.add_argument("--session-hours", type=float, default=8.0, help="session lifetime (default 8)")
    p.add_argument(
        "--lockout-minutes",
        type=float,
        default=15.0,
        help="lockout after 5 failed logins in a row (default 15)",
    )
    p.add_argument(
        "--reload-seconds",
        type=float,
        default=5.0,
        help="how often new event files are read (0: once at start)",
    )
    p.add_argument(
        "--secure-cookie",
        action="store_true",
        help="mark cookies Secure (when served over HTTPS, e.g. behind a reverse proxy)",
    )
    return p


_YEAR_HOURS = 366 * 24.0


def _in_range(flag: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    """A finite number in range: nan passes every comparison (a lockout that never locks) and
    inf or 1e308 hours overflow the cookie's expiry (every login answered with an error)."""
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = ">" if low_open else ">="
        raise UserError(f"{flag} {value:g}: must be a number {bound} {low:g} and <= {high:g}")


_ACCESS_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def _check_access_log(path: Path) -> None:
    """Lines are appended to an existing file only if it is an access log already: a mistyped
    path (the store itself, a run's metrics.json) would be written into and damaged."""
    try:
        with path.expanduser().open("rb") as f:
            head = f.read(21)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return  # created, or refused with its reason when it is opened
    except OSError:
        return
    if head and not _ACCESS_LINE.match(head):
        raise UserError(
            f"--access-log {path}: the file exists and is not an access log; give a new file,"
            " or an access log this dashboard wrote"
        )


def main(argv: Sequence[str]) -> int:
    from robustai.dashboard.server import DashboardServer, is_loopback, open_access_log
    from robustai.security import AccessStore, LoginThrottle

    try:
        args = build_parser().parse_args(list(argv))
        if not 0 <= args.port <= 65535:
            raise UserError(f"--port {args.port}: must be in 0..65535")
        _in_range("--session-hours", args.session_hours, 0.0, _YEAR_HOURS, low_open=True)
        _in_range("--lockout-minutes", args.lockout_minutes, 0.0, _YEAR_HOURS * 60)
        _in_range("--reload-seconds", args.reload_seconds, 0.0, 86400.0)
        logdir = Path(args.logdir).expanduser()
        if not logdir.is_dir():
            what = "a file, not a folder" if logdir.exists() else "no such folder"
            raise UserError(f"--logdir {args.logdir}: {what} (point it at experiments/)")
        db = Path(args.db).expanduser() if args.db else default_store_path()
        store = AccessStore(db)
        if not store.users():
            raise UserError(f"{db} has no users yet: add one with `robustai users add NAME`")
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        for noisy in ("tensorboard", "werkzeug", "absl"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        access_path = (
            Path(args.access_log) if args.access_log else db.parent / ("dashboard-access.log")
        )
        _check_access_log(access_path)
        try:
            open_access_log(access_path)
        except OSError as e:
            raise UserError(
                f"--access-log {access_path}: cannot write it ({e.strerror}); give a file in a "
                "folder you can write"
            ) from e
        server = DashboardServer(
            args.logdir,
            store,
            host=args.host,
            port=args.port,
            reload_interval=args.reload_seconds,
            session_seconds=args.session_hours * 3600,
            secure_cookie=args.secure_cookie,
            throttle=LoginThrottle(lockout_seconds=args.lockout_minutes * 60),
        )
    except UserError as e:
        fail(COMMAND, str(e))
    if not is_loopback(args.host) and not args.secure_cookie:
        sys.stderr.write(
            f"robustai dashboard: warning: {args.host} is reachable from other machines over "
            "plain HTTP; passwords and cookies could be read on the network. Put it behind an "
            "HTTPS reverse proxy and pass --secure-cookie.\n"
        )
    sys.stderr.write(
        f"robustai dashboard: serving {Path(args.logdir).resolve()} at {server.url} "
        f"(access log: {access_path}); Ctrl-C stops\n"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
