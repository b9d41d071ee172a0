"""HMAC-SHA256 signatures for model artifacts.

``meta.json`` already holds the sha256 of the weights file, so a signature over the canonical JSON
of ``meta.json`` (without the signature itself) covers both the weights and their metadata. The key
comes from ``ROBUSTAI_SIGNING_KEY`` and is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustai.errors import CheckpointError
from robustai.security.errors import SigningKeyError

log = logging.getLogger(__name__)

ENV_SIGNING_KEY = "ROBUSTAI_SIGNING_KEY"
ALGORITHM = "hmac-sha256"
SIGNATURE_FIELD = "signature"
MIN_KEY_BYTES = 16


def signing_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The signing key, or None when ``ROBUSTAI_SIGNING_KEY`` is unset or empty; a key too short
    to resist guessing is refused (:class:`SigningKeyError`)."""
    value = (os.environ if environ is None else environ).get(ENV_SIGNING_KEY, "")
    if not value:
        return None
    try:
        key = value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as surrogate escapes
        raise SigningKeyError(
            f"{ENV_SIGNING_KEY} holds bytes that are not text (UTF-8), e.g. raw random bytes:"
            ' use a text key, e.g. python -c "import secrets; print(secrets.token_hex(32))"'
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"{ENV_SIGNING_KEY} is too short ({len(key)} bytes): use at least {MIN_KEY_BYTES} "
            'random bytes, e.g. python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode("utf-8")


def _digest(meta: Mapping[str, Any], key: bytes) -> str:
    body = {k: v for k, v in meta.items() if k != SIGNATURE_FIELD}
    return hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()


def sign_meta(meta: Mapping[str, Any], key: bytes) -> dict[str, str]:
    """The ``signature`` entry for ``meta`` (which must already hold ``weights_sha256``)."""
    if "weights_sha256" not in meta:
        raise ValueError("meta lacks weights_sha256; sign it after hashing the weights")
    return sign_payload(meta, key)


def sign_payload(payload: Mapping[str, Any], key: bytes) -> dict[str, str]:
    """The ``signature`` entry for any JSON record that names its files by sha256 (meta.json,
    a training checkpoint's JSON), so that the signature covers them too."""
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"a signing key needs at least {MIN_KEY_BYTES} bytes")
    return {"algorithm": ALGORITHM, "value": _digest(payload, key)}


def verify_meta(meta: Mapping[str, Any], key: bytes) -> bool:
    """Whether ``meta`` (or any record signed by :func:`sign_payload`) carries a valid
    signature under ``key`` (constant-time compare)."""
    sig = meta.get(SIGNATURE_FIELD)
    if not isinstance(sig, Mapping) or sig.get("algorithm") != ALGORITHM:
        return False
    value = sig.get("value")
    # compare_digest takes ASCII strings only (an edited "é..." raised TypeError); a digest is hex
    return (
        isinstance(value, str)
        and value.isascii()
        and hmac.compare_digest(value, _digest(meta, key))
    )


def check_signed(
    path: Path, record: Mapping[str, Any], *, what: str, verb: str, modified: str
) -> None:
    """With ``ROBUSTAI_SIGNING_KEY`` set, only a ``record`` (read from ``path``) signed with that
    key is accepted: a one-line :class:`CheckpointError` otherwise, ``what`` naming the record
    ("artifact"), ``verb`` its use ("load") and ``modified`` what a failed check means. Without
    the key, a signed record is accepted with a warning that nothing was checked."""
    key = signing_key_from_env()
    if key is None:
        if SIGNATURE_FIELD in record:
            log.warning(
                "%s is signed but %s is unset: signature not checked", path, ENV_SIGNING_KEY
            )
        return
    if SIGNATURE_FIELD not in record:
        raise CheckpointError(
            f"{path} is not signed, but {ENV_SIGNING_KEY} is set: refusing an unsigned {what}"
            f" (unset {ENV_SIGNING_KEY} to {verb} it without a signature check)"
        )
    if not verify_meta(record, key):
        raise CheckpointError(
            f"{path}: signature check failed: {modified}, or {ENV_SIGNING_KEY} is not the key"
            " that signed it"
        )
