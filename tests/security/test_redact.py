"""Redaction: secret-looking keys and known secret values never reach written text."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from robustai.security import REDACTED, SecretFilter, is_secret_key, redact_tree, scrub_text
from robustai.security.redact import collect_secret_values, redact_override, secret_env_values

SECRET_KEYS = [
    "password",
    "db_password",
    "logger.api_key",
    "apiKey",
    "TRACKER_API_KEY",
    "ROBUSTAI_SIGNING_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "hydra.job.env_set.GITHUB_TOKEN",
    "client_secret",
    "+secrets.api_token",
    "private_key",
    "key",
    "passphrase",
    "PGPASSWORD",
    "hydra.job.env_set.PGPASSWORD",
    "dbpassword",
    "client_secrets",
    "MYSQL_PWD",
    "DB_PASS",
    "GITHUB_PAT",
    "hydra.job.env_set.SENTRY_DSN",
    "BASIC_AUTH",
    "SLACK_WEBHOOK_URL",
    "logger.webhook",
    "DB_PW",
    "hydra.job.env_set.DB_PW",
    "JWT",
    "NGROK_AUTHTOKEN",
    "GITLAB_ACCESSTOKEN",
    "Authorization",
    "CREDS",
    "gcp_creds",
]
ORDINARY_KEYS = [
    "data.eps",
    "attack.eps",
    "max_tokens",
    "key_size",
    "keys",
    "monkey",
    "tokenizer",
    "trainer.lr",
    "kv_sep",
    "exclude_keys",
    "ROBUSTAI_ACCESS_DB",
    "name",
    "PWD",
    "OLDPWD",
    "bypass",
    "passes",
    "path",
    "data.path",
    "pattern",
    "auth",
    "author",
    "dsn",
    "pw",
    "lr_pw_ratio",
    "num_tokens",
    "tokens_per_step",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_tree_hides_secret_keys_keeps_the_rest() -> None:
    tree = {
        "data": {"eps": 0.1, "name": "mnist"},
        "logger": {"api_key": "sk-live-123456", "token_env": "TRACKER_TOKEN", "n": 3},
        "tracker": {"password": "${oc.env:TRACKER_PASSWORD}", "secret": 12345678},
        "hydra": {"overrides": {"task": ["+logger.api_key=sk-live-123456", "data.eps=0.1"]}},
        "note": "uses sk-live-123456 inside",
    }
    out = redact_tree(tree, ["sk-live-123456"])
    assert out["data"] == {"eps": 0.1, "name": "mnist"}
    assert out["logger"]["api_key"] == REDACTED
    assert out["logger"]["token_env"] == REDACTED  # looks secret: hidden although only a name
    assert out["logger"]["n"] == 3
    assert out["tracker"]["password"] == "${oc.env:TRACKER_PASSWORD}"  # a name, not a secret
    assert out["tracker"]["secret"] == REDACTED
    assert out["hydra"]["overrides"]["task"] == [f"+logger.api_key={REDACTED}", "data.eps=0.1"]
    assert "sk-live" not in str(out)
    assert tree["logger"]["api_key"] == "sk-live-123456"  # the input is not modified


def test_env_reference_with_a_default_is_redacted() -> None:
    out = redact_tree({"api_token": "${oc.env:TOKEN,fallback-secret}"})
    assert out == {"api_token": REDACTED}


def test_override_strings() -> None:
    assert redact_override("+logger.api_key=abc") == f"+logger.api_key={REDACTED}"
    assert redact_override("hydra.job.env_set.MY_TOKEN=xyz") == (
        f"hydra.job.env_set.MY_TOKEN={REDACTED}"
    )
    assert redact_override("attack.eps=8/255") == "attack.eps=8/255"
    assert redact_override("x.token=${oc.env:T}") == "x.token=${oc.env:T}"


def test_collect_secret_values_from_config_and_overrides() -> None:
    cfg = {"a": {"api_key": "value-one-1"}, "o": ["+b.token=value-two-2", "c=3"], "d": 4}
    assert collect_secret_values(cfg) == {"value-one-1", "value-two-2"}


def test_secret_pairs_inside_values_are_collected_and_redacted() -> None:
    """A connection string carries its password as a pair inside a value whose key does not look
    secret (``DB_CONN``, ``AZURE_STORAGE_CONNECTION_STRING``): it is cut out all the same."""
    conn = "Server=db.example;User Id=app;Password=pw-4c9d2e1f;Encrypt=true"
    azure = "AccountName=acct;AccountKey=az-7Hq2LmNp==;EndpointSuffix=core.windows.net"
    tree = {
        "job": {"env_set": {"DB_CONN": conn, "AZURE_STORAGE_CONNECTION_STRING": azure}},
        "overrides": {"task": [f"+hydra.job.env_set.DB_CONN={conn}", "attack.eps=0.1"]},
    }
    assert collect_secret_values(tree) == {"pw-4c9d2e1f", "az-7Hq2LmNp=="}
    out = redact_tree(tree)
    text = repr(out)
    assert "pw-4c9d2e1f" not in text and "az-7Hq2LmNp" not in text
    assert out["job"]["env_set"]["DB_CONN"] == (
        f"Server=db.example;User Id=app;Password={REDACTED};Encrypt=true"
    )
    assert out["overrides"]["task"][1] == "attack.eps=0.1"
    named = {"DB_CONN": "Server=db.example;Password=${oc.env:DB_PASSWORD}"}  # a name only
    assert collect_secret_values(named) == set() and redact_tree(named) == named


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("Server=x;Password='my s3cret';", f"Server=x;Password='{REDACTED}';"),
        ('Server=x;Password="p4ss w0rd!!";Encrypt=1', f'Server=x;Password="{REDACTED}";Encrypt=1'),
        ("Driver=x;Pwd={hunter2;xy}}z};Uid=u", f"Driver=x;Pwd={{{REDACTED}}};Uid=u"),
        ("Server=x;Password=ab12;", f"Server=x;Password={REDACTED};"),  # short, but a password
        (
            "https://api.example/v1?api_key=q-s3cret-1&x=1",
            f"https://api.example/v1?api_key={REDACTED}",
        ),
        ("https://h/x?access_token=t-s3cret-2", f"https://h/x?access_token={REDACTED}"),
        (
            "jdbc:postgresql://h/db?user=u&password=j-s3cret-3",
            f"jdbc:postgresql://h/db?user=u&password={REDACTED}",
        ),
        ("Hydra's usage: [KEY=VALUE ...]", "Hydra's usage: [KEY=VALUE ...]"),  # a placeholder
        ("DRIVER={ODBC 18};UID=u;PWD=odbc-s3cret", f"DRIVER={{ODBC 18}};UID=u;PWD={REDACTED}"),
        # unquoted with spaces: ADO.NET and ODBC run the value to the ";"
        ("Server=x;Password=correct horse battery;Uid=u", f"Server=x;Password={REDACTED};Uid=u"),
        ("jdbc:x;password=s3cr3t pass;", f"jdbc:x;password={REDACTED};"),
        # an HTTP header: the credential is the scheme and the token after it
        ("Authorization: Bearer tok-0a1b2c3d4e", f"Authorization: {REDACTED}"),
    ],
)
def test_pairs_quoted_braced_short_or_in_a_query_are_redacted_in_values(
    text: str, clean: str
) -> None:
    """Values the pair pattern missed (a quoted password with a space, ODBC's braces, a password
    under 6 characters, an api_key in a URL's query: a URL's scheme swallowed the pair) were
    written to .hydra/hydra.yaml in clear."""
    tree = {"job": {"env_set": {"DB_CONN": text}}, "overrides": {"task": [f"+x.DB_CONN={text}"]}}
    out = redact_tree(tree)
    assert out["job"]["env_set"]["DB_CONN"] == clean
    assert out["overrides"]["task"][0] == f"+x.DB_CONN={clean}"


def test_scrub_text_free_text_pairs_and_values() -> None:
    line = "connecting with api_key=abc123xyz token: 'qwerty987' eps=0.1 to host"
    out = scrub_text(line, ["hunter2-long"])
    assert "abc123xyz" not in out and "qwerty987" not in out and "eps=0.1" in out
    assert scrub_text("the password is hunter2-long", ["hunter2-long"]) == (
        f"the password is {REDACTED}"
    )
    assert scrub_text("short 1234", ["1234"]) == "short 1234"  # too short to scrub safely


def test_a_spaced_connection_string_password_and_a_bearer_token_are_collected_whole() -> None:
    """Only the first word was taken for the secret: the rest stayed in clear in hydra.yaml, and
    the first word (``correct``, ``Bearer``) was scrubbed out of every file of the run folder."""
    tree = {
        "DB_CONN": "Server=x;Password=correct horse battery staple;Uid=u",
        "headers": ["Authorization: Bearer tok-0a1b2c3d4e"],
    }
    assert collect_secret_values(tree) == {
        "correct horse battery staple", "Bearer tok-0a1b2c3d4e", "tok-0a1b2c3d4e",
    }  # fmt: skip
    assert scrub_text("sent Authorization: Bearer tok-0a1b2c3d4e to h") == (
        f"sent Authorization: {REDACTED} to h"
    )
    assert scrub_text("password=abc then more words") == f"password={REDACTED} then more words"
    # a ";" later in a log line ends no connection-string pair: the words before it stay
    assert scrub_text("login failed for token=abc123 at step 5; retrying") == (
        f"login failed for token={REDACTED} at step 5; retrying"
    )
    script = "setup: DB_PASSWORD=s3cretpw python prep.py; echo ok"
    assert collect_secret_values({"notes": script}) == {"s3cretpw"}


def test_url_passwords_are_scrubbed_and_collected() -> None:
    """A database URL (an Optuna storage, say) carries its password under no secret-looking key."""
    url = "postgresql://alice:pw-9f8e7d@db.example:5432/studies"
    line = f"[HYDRA] Storage: {url}"
    assert (
        scrub_text(line)
        == f"[HYDRA] Storage: postgresql://alice:{REDACTED}@db.example:5432/studies"
    )
    assert scrub_text(url, pairs=False) == f"postgresql://alice:{REDACTED}@db.example:5432/studies"
    tree = {"hydra": {"sweeper": {"storage": url}}}
    assert collect_secret_values(tree) == {"pw-9f8e7d"}
    assert redact_tree(tree)["hydra"]["sweeper"]["storage"] == (
        f"postgresql://alice:{REDACTED}@db.example:5432/studies"
    )
    # SQLAlchemy reads a "/" in the password as part of it (base64-made passwords have them)
    slash = "postgresql://alice:Zm9v/YmFy+cQ@db.example/studies"
    assert scrub_text(slash) == f"postgresql://alice:{REDACTED}@db.example/studies"
    assert collect_secret_values({"storage": slash}) == {"Zm9v/YmFy+cQ"}
    # An env reference names the password without holding it; URLs without one are left alone.
    ref = "postgresql://alice:${oc.env:DB_PASSWORD}@db.example/studies"
    for kept in (ref, "sqlite:///study.db", "https://host:8443/path", "user@example.com"):
        assert scrub_text(kept) == kept
        assert collect_secret_values({"storage": kept}) == set()


def test_tokens_standing_as_a_urls_user_are_scrubbed_and_collected() -> None:
    """Git hosts take a token as the whole user info (https://<token>@github.com/...); plain
    user names (git@, alice@) are not secrets and stay."""
    gh = "ghp_" + "a1B2c3D4e5" * 3
    opaque = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    for token in (gh, opaque):
        url = f"https://{token}@github.com/org/repo.git"
        assert scrub_text(f"clone {url}") == f"clone https://{REDACTED}@github.com/org/repo.git"
        assert collect_secret_values({"data": {"url": url}}) == {token}
    for kept in ("ssh://git@github.com/org/repo.git", "https://alice@example.com/x"):
        assert scrub_text(kept) == kept
        assert collect_secret_values({"url": kept}) == set()


def test_secret_env_values_picks_secret_names_only() -> None:
    env = {"MY_API_TOKEN": "tok-abcdef", "HOME": "/home/someone", "PIN_KEY": "123"}
    assert secret_env_values(env) == {"tok-abcdef"}


def test_log_filter_scrubs_messages(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("ROBUSTAI_SIGNING_KEY", "signing-key-0123456789abcdef")
    logger = logging.getLogger("robustai.test_redact")
    f = SecretFilter(["configured-secret-value"])
    caplog.handler.addFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info(
                "value %s and key %s", "configured-secret-value", "signing-key-0123456789abcdef"
            )
            logger.info("password=plaintext99 ok")
    finally:
        caplog.handler.removeFilter(f)
    text = caplog.text
    assert "configured-secret-value" not in text
    assert "signing-key-0123456789abcdef" not in text
    assert "plaintext99" not in text
    assert text.count(REDACTED) == 3


_SECRET_CHARS = string.ascii_letters + string.digits + "-_.+/!@#%^&*()[]{}<>?,;:'\"\\ |~`$"


def _redacted_yaml(key: str, secret: str) -> str:
    cfg = {
        "group": {key: secret, "eps": 0.1},
        "hydra": {"overrides": {"task": [f"+g.{key}={secret}", "data.eps=0.1"]}},
    }
    return OmegaConf.to_yaml(OmegaConf.create(redact_tree(cfg, collect_secret_values(cfg))))


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(alphabet=_SECRET_CHARS, min_size=6, max_size=40),
    key=st.sampled_from(SECRET_KEYS).map(lambda k: k.rsplit(".", 1)[-1].lstrip("+")),
)
def test_property_written_config_does_not_depend_on_the_secret(secret: str, key: str) -> None:
    """Whatever the secret, the written YAML is the same as for any other: it carries no trace."""
    baseline = _redacted_yaml(key, "another-value-entirely")
    # A "secret" that is also ordinary text (e.g. "passwo", "data.e") would be cut out there too.
    assume(secret not in baseline and secret not in "data.eps=0.1")
    text = _redacted_yaml(key, secret)
    assert text == baseline
    assert secret not in text
    assert "eps: 0.1" in text


def test_the_run_folder_check_scrubs_json_string_values_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret that is also a key or a number of a JSON file (a short password that is a common
    word, a PIN among a timing's digits) was replaced there too, and a checkpoint so rewritten
    no longer loaded. Only string values are scrubbed; the rest is reported, left as it is."""
    from robustai.cli.redaction import scrub_folder

    state = {"partial": {"correct": 3, "seen": 7}, "train_seconds": 12.5, "note": "x correct y"}
    path = tmp_path / "epoch-0001.json"
    path.write_text(json.dumps(state, indent=2))
    with caplog.at_level(logging.WARNING):
        assert scrub_folder(tmp_path, {"correct"}) == [path]
    out = json.loads(path.read_text())
    assert out == {**state, "note": f"x {REDACTED} y"}
    assert "in a key or number, left as it is" in caplog.text
    (tmp_path / "metrics.json").write_text('{"train_seconds": 1234567.5}')
    scrub_folder(tmp_path, {"1234567"})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"train_seconds": 1234567.5}
