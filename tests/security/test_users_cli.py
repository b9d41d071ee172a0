"""`robustai users`: passwords from a prompt or stdin only; bad input is one line and exit 2."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from robustai.cli.main import main
from robustai.cli.users import parse_expiry
from robustai.security import AccessStore
from robustai.security.errors import AccessError

PW = "correct horse battery staple"


def users(
    *args: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(["users", *args])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store" / "access.db"
    monkeypatch.setenv("ROBUSTAI_ACCESS_DB", str(path))
    return path


def test_add_with_stdin_password_creates_a_private_store(db, capsys, monkeypatch) -> None:
    code, out, _ = users(
        "add", "alice", "--grant", "viewer:mnist_*", "--password-stdin",
        capsys=capsys, monkeypatch=monkeypatch, stdin=PW + "\n",
    )  # fmt: skip
    assert code == 0 and "added user alice" in out
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    store = AccessStore(db)
    assert store.authenticate("alice", PW) is not None
    assert [str(g) for g in store.user("alice").grants] == ["viewer:mnist_*"]
    code, out, _ = users("list", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and "alice" in out and "viewer:mnist_*" in out and PW not in out


def test_prompted_password_is_asked_twice(db, capsys, monkeypatch) -> None:
    monkeypatch.setattr("robustai.cli.users._has_terminal", lambda: True)
    answers = iter([PW, PW])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, _, _ = users("add", "bob", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and AccessStore(db).authenticate("bob", PW) is not None
    answers2 = iter(["new passphrase one", "new passphrase two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers2))
    code, _, err = users("passwd", "bob", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "differ" in err
    assert AccessStore(db).authenticate("bob", PW) is not None  # unchanged


def test_ctrl_c_at_the_prompt_is_an_interruption_not_a_missing_terminal(
    db, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("robustai.cli.users._has_terminal", lambda: True)

    def interrupted(prompt: str = "") -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("getpass.getpass", interrupted)
    code, _, err = users("add", "gina", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 130
    assert err.strip().splitlines() == [
        "robustai users: error: interrupted at the password prompt; nothing changed"
    ]
    assert not db.exists()
    code, out, err = users("hunter2-secret", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "invalid choice" in err and "hunter2-secret" not in out + err


def test_password_on_the_command_line_is_refused_and_not_echoed(db, capsys, monkeypatch) -> None:
    for args in (
        ["--password", "hunter2-secret"],
        ["--password=hunter2-secret"],
        ["hunter2-secret"],
        ["--passw=hunter2-secret"],  # an abbreviation is no option (argparse's default is)
        ["--password-stdin=hunter2-secret"],  # a flag given a value: argparse echoed it
    ):
        code, out, err = users("add", "carol", *args, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 2
        assert "hunter2-secret" not in out + err
        assert len(err.strip().splitlines()) == 1
    assert not db.exists()


def test_no_terminal_to_prompt_on_is_one_line(tmp_path: Path) -> None:
    """A script without a terminal gets one line (not getpass' echo warning) and no user."""
    db = tmp_path / "access.db"
    env = {**os.environ, "ROBUSTAI_ACCESS_DB": str(db)}
    proc = subprocess.run(
        [sys.executable, "-m", "robustai.cli.main", "users", "add", "alice"],
        input=f"{PW}\n{PW}\n", capture_output=True, text=True, env=env, timeout=120,
        start_new_session=True,  # no controlling terminal, as under cron or CI
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustai users: error:"), proc.stderr
    assert "--password-stdin" in lines[0]
    assert PW not in proc.stdout + proc.stderr
    assert not db.exists()  # nothing made


def test_token_lifecycle(db, capsys, monkeypatch) -> None:
    users("add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW)
    code, out, err = users(
        "token", "create", "alice", "--scope", "mnist_*", "--expires", "2h",
        capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    token = out.strip()
    assert code == 0 and token.startswith("rai_") and "shown only this once" in err
    store = AccessStore(db)
    found = store.verify_token(token)
    assert found is not None and found[1].scope == "mnist_*"
    code, out, _ = users("token", "list", capsys=capsys, monkeypatch=monkeypatch)
    token_id = found[1].token_id
    assert code == 0 and token_id in out and "active" in out and token not in out
    code, out, _ = users("token", "revoke", token_id, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and store.verify_token(token) is None
    code, out, _ = users("token", "list", "alice", capsys=capsys, monkeypatch=monkeypatch)
    assert "revoked" in out


def test_passwd_names_the_tokens_that_stay_valid(db, capsys, monkeypatch) -> None:
    """A password change ends sessions, not API tokens: the command says which tokens live on,
    so a user changing an exposed password knows what else to revoke."""
    users("add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW)
    store = AccessStore(db)
    _, live = store.create_token("alice", "*", store.clock() + 3600)
    _, gone = store.create_token("alice", "*", store.clock() + 3600)
    store.revoke_token(gone.token_id)
    code, out, _ = users(
        "passwd", "alice", "--password-stdin",
        capsys=capsys, monkeypatch=monkeypatch, stdin="another long passphrase\n",
    )  # fmt: skip
    assert code == 0 and "sessions have ended" in out
    assert live.token_id in out and gone.token_id not in out
    assert "token revoke" in out
    assert store.token_info(live.token_id).status(store.clock()) == "active"  # not revoked
    users("token", "revoke", live.token_id, capsys=capsys, monkeypatch=monkeypatch)
    code, out, _ = users(
        "passwd", "alice", "--password-stdin",
        capsys=capsys, monkeypatch=monkeypatch, stdin="a third long passphrase\n",
    )  # fmt: skip
    assert code == 0 and "token" not in out  # nothing left to mention


def test_grant_revoke_remove(db, capsys, monkeypatch) -> None:
    users("add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW)
    assert users("grant", "alice", "admin", "*", capsys=capsys, monkeypatch=monkeypatch)[0] == 0
    assert [str(g) for g in AccessStore(db).user("alice").grants] == ["admin:*"]
    assert users("revoke", "alice", "admin", "*", capsys=capsys, monkeypatch=monkeypatch)[0] == 0
    assert AccessStore(db).user("alice").grants == ()
    assert users("remove", "alice", capsys=capsys, monkeypatch=monkeypatch)[0] == 0
    assert AccessStore(db).users() == []


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "alice", "--password-stdin"], "short", "at least 12"),
        (["add", "alice", "--password-stdin"], "alice", "at least 12"),
        (["add", "alice", "--password-stdin"], "", "no password"),
        (["add", "a b", "--password-stdin"], PW, "invalid user name"),
        (["add", "alice", "--grant", "viewer", "--password-stdin"], PW, "ROLE:PATTERN"),
        (["add", "alice", "--grant", "boss:*", "--password-stdin"], PW, "unknown role"),
        (["frobnicate"], "", "invalid choice"),
        (["token", "create", "alice"], "", "--scope"),
        (["list", "--db"], "", "expected one argument"),
        # bytes that are not UTF-8 (a Latin-1 terminal, say) arrive as surrogate escapes
        (["add", "alice", "--password-stdin"], "p\udce4ssword-long-enough", "not valid UTF-8"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db, capsys, monkeypatch, args, stdin, message) -> None:
    code, _, err = users(*args, capsys=capsys, monkeypatch=monkeypatch, stdin=stdin)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustai users: error:")
    assert message in lines[0]
    assert not db.parent.exists()  # a refused command makes no store, nor its folder


def test_add_says_the_user_exists_before_asking_for_a_password(db, capsys, monkeypatch) -> None:
    users("add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW)
    monkeypatch.setattr("robustai.cli.users._has_terminal", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or PW)
    code, _, err = users("add", "Alice", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "user 'Alice' already exists" in err and asked == []


def test_unknown_user_and_missing_store(db, capsys, monkeypatch) -> None:
    code, _, err = users("grant", "ghost", "viewer", "*", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "no access store" in err
    users("add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW)
    code, _, err = users("grant", "alise", "viewer", "*", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "did you mean alice" in err
    monkeypatch.delenv("ROBUSTAI_ACCESS_DB")
    code, _, err = users("list", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "--db PATH or set ROBUSTAI_ACCESS_DB" in err


def test_an_empty_file_is_made_a_store_by_add_only(db, capsys, monkeypatch) -> None:
    """`touch access.db; chmod 600 access.db` is no store for list; add makes it one."""
    db.parent.mkdir(mode=0o700)
    db.touch(mode=0o600)
    code, _, err = users("list", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "is empty, not an access store" in err and db.stat().st_size == 0
    code, out, err = users(
        "add", "alice", "--password-stdin", capsys=capsys, monkeypatch=monkeypatch, stdin=PW
    )
    assert code == 0 and "added user alice" in out, err
    code, out, _ = users("list", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and "alice" in out


def test_parse_expiry() -> None:
    assert parse_expiry("30d", 0) == 30 * 86400
    assert parse_expiry("12h", 100) == 100 + 12 * 3600
    assert parse_expiry("2w", 0) == 14 * 86400
    assert parse_expiry("2030-01-31", 0) == 1896048000
    # UTC written as ISO 8601 does ("Z"), which Python 3.10's fromisoformat refused
    assert parse_expiry("2030-01-31T12:00Z", 0) == 1896048000 + 12 * 3600
    for bad in ("soon", "-3d", "0d"):
        with pytest.raises(AccessError):
            parse_expiry(bad, 0)
    for huge in ("9" * 400 + "d", "9" * 5000 + "s"):  # float overflow, int digit limit
        with pytest.raises(AccessError, match="too far in the future"):
            parse_expiry(huge, 0)


def test_a_store_folder_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "a-file" / "store" / "access.db"
    code, _, err = users(
        "add", "alice", "--password-stdin", "--db", str(db),
        capsys=capsys, monkeypatch=monkeypatch, stdin=PW,
    )  # fmt: skip
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustai users: error:")
    assert f"cannot create the access store {db}" in lines[0]
