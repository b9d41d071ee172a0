"""`robustai dashboard`: bad input is one line and exit status 2, before anything is served."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from dashboard_helpers import make_store

from robustai.cli.main import main
from robustai.security import AccessStore


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["dashboard", *args])
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def no_stale_log_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop root log handlers left behind by earlier in-process runs on closed streams."""
    root = logging.getLogger()
    live = [h for h in root.handlers if not getattr(getattr(h, "stream", None), "closed", False)]
    monkeypatch.setattr(root, "handlers", live)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    make_store(tmp_path / "access.db")
    return tmp_path / "access.db"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--logdir", "{tmp}/missing"], "no such folder"),
        (["--logdir", "{tmp}/access.db"], "--logdir {tmp}/access.db: a file, not a folder"),
        (["--port", "70000"], "0..65535"),
        (["--port", "many"], "invalid int value"),
        (["--session-hours", "0"], "--session-hours 0: must be a number > 0 and <= 8784"),
        # nan passed every comparison (a lockout that never locks); inf or 1e308 hours overflowed
        # the cookie's expiry (every correct login answered with an error)
        (["--session-hours", "inf"], "--session-hours inf: must be a number > 0 and <= 8784"),
        (["--session-hours", "1e308"], "--session-hours 1e+308: must be a number > 0"),
        (["--lockout-minutes", "nan"], "--lockout-minutes nan: must be a number >= 0"),
        (["--reload-seconds", "-1"], "--reload-seconds -1: must be a number >= 0"),
        (["--colour"], "unrecognized arguments"),
        # a secret typed on the command line by mistake is not echoed back to the scrollback
        (["--password=hunter2hunter2"], "unrecognized arguments (see --help)"),
        (["rai_hunter2hunter2"], "unrecognized arguments (see --help)"),
        (["--access-log", "{tmp}"], "--access-log {tmp}: cannot write it (Is a directory)"),
        (["--access-log", "{tmp}/access.db/x/log"], "--access-log {tmp}/access.db/x/log: cannot"),
        # a mistyped path: lines were appended to the store itself, or to a run's metrics.json
        (["--access-log", "{tmp}/access.db"], "the file exists and is not an access log"),
        (["--access-log", "{tmp}/metrics.json"], "the file exists and is not an access log"),
        (["--host", "999.1.1.1"], "; give --host an address of this machine, e.g. 127.0.0.1"),
    ],
)
def test_bad_input(db: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    (tmp_path / "metrics.json").write_text('{"clean_acc": 0.9}\n')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, err = run(["--db", str(db), "--logdir", str(tmp_path), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustai dashboard: error:")
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "hunter2" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


def test_store_must_exist_and_have_users(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ROBUSTAI_ACCESS_DB", raising=False)
    code, err = run(["--logdir", str(tmp_path)], capsys)
    assert code == 2 and "--db PATH or set ROBUSTAI_ACCESS_DB" in err
    code, err = run(["--db", str(tmp_path / "none.db"), "--logdir", str(tmp_path)], capsys)
    assert code == 2 and "no access store" in err
    AccessStore(tmp_path / "empty.db", create=True)
    code, err = run(["--db", str(tmp_path / "empty.db"), "--logdir", str(tmp_path)], capsys)
    assert code == 2 and "no users yet" in err


def test_a_port_in_use_is_one_line(db: Path, tmp_path: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(["--db", str(db), "--logdir", str(tmp_path), "--port", str(port)], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"robustai dashboard: error: cannot listen on 127.0.0.1:{port}:")
    assert "in use" in line and "--port" in line


def test_help_gives_the_defaults_the_readme_names(capsys) -> None:
    """The README serves on port 6006 from experiments/: `--help` says so too."""
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 6006; 0 picks a free port)" in text
    assert "the experiments folder (default: experiments)" in text
