"""Signed artifacts: with ROBUSTAI_SIGNING_KEY set, modified weights or metadata are refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from robustai.errors import CheckpointError, UserError
from robustai.models import build_model, load_model, save_model
from robustai.models.artifact import META, WEIGHTS, sha256_file
from robustai.security import ENV_SIGNING_KEY, sign_meta, verify_meta
from robustai.security.errors import SigningKeyError

KEY = "test-signing-key-0123456789abcdef"


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_SIGNING_KEY, KEY)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 4, mean=(0.5,), std=(0.25,), hidden=[16])
    save_model(
        model,
        tmp_path / "run",
        name="mlp",
        params={"hidden": [16]},
        input_shape=(1, 8, 8),
        num_classes=4,
        mean=(0.5,),
        std=(0.25,),
        extra={"data": "digits"},
    )
    return tmp_path / "run"


def meta_of(run: Path) -> dict:
    return json.loads((run / META).read_text())


def write_meta(run: Path, meta: dict) -> None:
    (run / META).write_text(json.dumps(meta, indent=2))


def test_signed_meta_carries_an_hmac_and_loads(signed: Path) -> None:
    meta = meta_of(signed)
    assert meta["signature"]["algorithm"] == "hmac-sha256"
    assert len(meta["signature"]["value"]) == 64
    assert KEY not in (signed / META).read_text()
    assert verify_meta(meta, KEY.encode())
    _, loaded = load_model(signed)
    assert loaded["weights_sha256"] == sha256_file(signed / WEIGHTS)


def test_tampered_weights_are_refused(signed: Path) -> None:
    data = bytearray((signed / WEIGHTS).read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    (signed / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(signed)


def test_tampered_weights_with_a_matching_sha256_fail_the_signature(signed: Path) -> None:
    data = bytearray((signed / WEIGHTS).read_bytes())
    data[-5] ^= 0x01
    (signed / WEIGHTS).write_bytes(bytes(data))
    meta = meta_of(signed)
    meta["weights_sha256"] = sha256_file(signed / WEIGHTS)  # the attacker fixes the hash too
    write_meta(signed, meta)
    with pytest.raises(CheckpointError, match="signature check failed"):
        load_model(signed)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(num_classes=5),
        lambda m: m["normalization"].update(mean=[0.0]),
        lambda m: m.update(data="mnist"),
        lambda m: m.update(extra_field=True),
    ],
    ids=["num_classes", "normalization", "extra", "added-field"],
)
def test_tampered_metadata_is_refused(signed: Path, edit) -> None:
    meta = meta_of(signed)
    edit(meta)
    write_meta(signed, meta)
    with pytest.raises(CheckpointError, match="signature check failed"):
        load_model(signed)


def test_stripped_signature_is_refused_while_the_key_is_set(signed: Path) -> None:
    meta = meta_of(signed)
    del meta["signature"]
    write_meta(signed, meta)
    with pytest.raises(CheckpointError, match="not signed"):
        load_model(signed)


def test_another_key_is_refused(signed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SIGNING_KEY, "another-key-0123456789abcdefgh")
    with pytest.raises(CheckpointError, match="signature check failed"):
        load_model(signed)


def test_without_the_key_a_signed_file_loads_with_a_warning(
    signed: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV_SIGNING_KEY)
    with caplog.at_level(logging.WARNING):
        load_model(signed)
    assert "signature not checked" in caplog.text


def test_short_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustai.security import signing_key_from_env

    monkeypatch.setenv(ENV_SIGNING_KEY, "short")
    with pytest.raises(SigningKeyError, match="too short") as e:
        signing_key_from_env()
    assert isinstance(e.value, UserError)
    with pytest.raises(SigningKeyError):
        sign_meta({"weights_sha256": "00"}, b"short")


def test_signature_is_independent_of_key_order() -> None:
    key = KEY.encode()
    meta = {"weights_sha256": "ab" * 32, "model": {"name": "mlp", "params": {"b": 1, "a": 2}}}
    sig = sign_meta(meta, key)
    reordered = {"model": {"params": {"a": 2, "b": 1}, "name": "mlp"}, "weights_sha256": "ab" * 32}
    assert verify_meta({**reordered, "signature": sig}, key)


def _save_mlp(run: Path, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("mlp", (1, 8, 8), 4, mean=(0.5,), std=(0.25,), hidden=[16])
    save_model(
        model, run, name="mlp", params={"hidden": [16]}, input_shape=(1, 8, 8), num_classes=4,
        mean=(0.5,), std=(0.25,),
    )  # fmt: skip


def test_an_unusable_key_at_save_leaves_the_saved_model_intact(
    signed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key was read after the new weights were written: the refused save left them beside
    the old meta.json, and the model saved there no longer loaded ("does not match")."""
    before = {p.name: p.read_bytes() for p in signed.iterdir()}
    monkeypatch.setenv(ENV_SIGNING_KEY, "tooshort")
    with pytest.raises(SigningKeyError):
        _save_mlp(signed, seed=1)
    assert {p.name: p.read_bytes() for p in signed.iterdir()} == before
    monkeypatch.setenv(ENV_SIGNING_KEY, KEY)
    load_model(signed)


def test_a_key_of_bytes_that_are_not_text_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`export ROBUSTAI_SIGNING_KEY=$(head -c 32 /dev/urandom)`: Python holds the bytes that are
    not UTF-8 as surrogates, and encoding them raised UnicodeEncodeError (a traceback)."""
    from robustai.security.signing import signing_key_from_env

    with pytest.raises(SigningKeyError, match="holds bytes that are not text"):
        signing_key_from_env({ENV_SIGNING_KEY: "abcdefghijklmnop\udcff\udcfe"})


def test_a_signature_edited_to_other_characters_is_refused_not_a_crash(signed: Path) -> None:
    """hmac.compare_digest raises TypeError for non-ASCII strings."""
    meta = meta_of(signed)
    meta["signature"]["value"] = "é" * 64
    write_meta(signed, meta)
    with pytest.raises(CheckpointError, match="signature check failed"):
        load_model(signed)


def test_the_bytes_checked_are_the_bytes_loaded(
    signed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights were hashed, the signature checked, then the file opened again by name: a
    file swapped in between (another model of the same shapes) loaded unchecked."""
    import robustai.models.artifact as artifact

    _save_mlp(tmp_path / "other", seed=1)
    expected = load_model(signed)[0].state_dict()
    check = artifact.check_signature

    def swap_then_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        (signed / WEIGHTS).write_bytes((tmp_path / "other" / WEIGHTS).read_bytes())
        return check(*args, **kwargs)

    monkeypatch.setattr(artifact, "check_signature", swap_then_check)
    loaded = load_model(signed)[0].state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
