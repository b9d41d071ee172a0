"""Keep secrets out of what robustai writes: redact secret-looking keys, scrub known secret values.

Configs refer to secrets by environment-variable name only. As a second line of defence, anything
written to a run folder passes through these helpers: a value under a key that looks like a secret
(``password``, ``token``, ``secret``, ``api_key``, ``AWS_SECRET_ACCESS_KEY``, ...) becomes
``<redacted>``, and the values of secret-looking environment variables (``ROBUSTAI_SIGNING_KEY``
among them) and the passwords of URLs (a database URL's ``user:password@``) are cut out of any
text. Ordinary keys such as ``data.eps`` or ``max_tokens`` stay.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
MIN_SCRUB_LENGTH = 6  # shorter "secrets" would scrub ordinary words and numbers

# Words that make a key secret wherever they appear in its name...
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "privatekey",
        "webhook",  # a webhook URL carries its own secret (Slack, Discord)
        "creds",
        "jwt",
        "authorization",  # an HTTP Authorization header's value is the credential
    }
)
# ...and "key" when it ends the name (api_key, signing_key, ACCESS_KEY; not key_size, keys).
_TRAILING_WORDS = frozenset({"key"})
# Stems that make a key secret inside a longer word too: variables such as PGPASSWORD (libpq's)
# or DBPASSWORD are written without a separator, and a "secrets" mapping holds secrets.
_SECRET_STEMS = ("password", "passwd", "passphrase", "secret")
# Abbreviations that name a secret only after another word: MYSQL_PWD, DB_PASS, GITHUB_PAT
# (a personal access token), SENTRY_DSN (its key sits in the URL), BASIC_AUTH, DB_PW; not PWD,
# auth.
_QUALIFIED_WORDS = frozenset({"pwd", "pw", "pass", "pat", "dsn", "auth"})
_JOINED_SECRETS = (
    "apikey", "privatekey", "accesskey", "secretkey",
    "authtoken", "accesstoken", "apitoken", "refreshtoken", "bearertoken",
)  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# An env reference without a default is only a name, so it may stay visible.
_ENV_REFERENCE = re.compile(r"^\$\{oc\.env:[A-Za-z_][A-Za-z0-9_]*\}$")
_OVERRIDE_KEY = re.compile(r"^[+~]*[A-Za-z_][\w.\-/@]*$")
# key=value or key: value in free text (log lines, override strings, connection strings, URL
# query strings). The value is a look-ahead, so a pair inside another pair's value is found too
# (the password=... in jdbc:postgresql://host/db?user=u&password=...). A value is quoted (spaces
# and all), braced as ODBC writes it (Pwd={a;b}, "}}" for a brace), or runs to a space, quote,
# comma, semicolon or closing bracket.
_KEY_VALUE = re.compile(
    r"""(?<![\w.\-])(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>\s*[=:]\s*)"""
    r"""(?=(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|\{(?P<br>(?:[^}]|\}\})*)\}"""
    r"""|(?P<bare>[^\s'",;}\]]+)))"""
)


# What lies between an unquoted value's first space and the ";" that ends a connection string's
# pair (ADO.NET and ODBC allow spaces there: Password=correct horse battery staple;).
_TO_SEMICOLON = re.compile(r"[^\S\n]+[^;=\n'\"]*(?=;)")
# ...only inside a connection string: the pair follows a ";", or the ";" ends the text or starts
# another pair ("token=abc at step 5; retrying" in a log line keeps its words).
_PAIR_AFTER = re.compile(r";\s*(?:$|[A-Za-z_][\w .\-]*=)")
# An HTTP Authorization header's scheme (Authorization: Bearer <token>): the credential is the
# scheme and the word after it.
_AUTH_SCHEMES = frozenset({"bearer", "basic", "digest", "token", "negotiate", "ntlm"})
_NEXT_WORD = re.compile(r"[^\S\n]+[^\s'\",;}\]]+")


def _bare_value_end(text: str, key_start: int, value: str, end: int, words: list[str]) -> int:
    """Where an unquoted value ends: at a space, unless a ";" ends its pair later on the line
    (a connection string), or the value is an Authorization header's scheme (the token follows).
    """
    tail = _TO_SEMICOLON.match(text, end)
    after_pair = text[max(0, key_start - 64) : key_start].rstrip().endswith(";")
    if tail and (after_pair or _PAIR_AFTER.match(text, tail.end())):
        return tail.end()
    if value.lower() in _AUTH_SCHEMES and ("authorization" in words or "auth" in words):
        word = _NEXT_WORD.match(text, end)
        if word:
            return word.end()
    return end


def _pair_spans(text: str, *, bare_key: bool, colon: bool = True) -> list[tuple[int, int]]:
    """Where the values of secret-looking ``key=value`` pairs sit in ``text`` (merged where they
    overlap). ``bare_key``: whether a key named just ``key`` counts (in free text it is usually
    a placeholder, as in Hydra's ``KEY=VALUE``); ``colon``: whether ``key: value`` counts, or
    only ``key=value``. Names (``${oc.env:X}``) are not secrets."""
    spans: list[tuple[int, int]] = []
    for m in _KEY_VALUE.finditer(text):
        if not colon and "=" not in m.group("sep"):
            continue
        key = m.group("key")
        words = key_words(key)
        secret = is_secret_key(key) or words == ["pwd"]  # ODBC's Pwd= (the shell's PWD is free)
        if not secret or (not bare_key and words == ["key"]):
            continue
        group = next(g for g in ("sq", "dq", "br", "bare") if m.group(g) is not None)
        if m.group(group).startswith("${") or not m.group(group):
            continue
        start, end = m.span(group)
        if group == "bare":
            end = _bare_value_end(text, m.start("key"), m.group(group), end, words)
        if not colon and group == "bare" and text[start:end].endswith(":"):
            end -= 1  # a message's "key=value: what is wrong" keeps its colon
        spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _scrub_pairs(text: str, *, bare_key: bool, colon: bool = True) -> str:
    """``text`` with the values of its secret-looking pairs replaced by ``<redacted>``, whatever
    their length (the key says they are secret; a short password is a password too)."""
    for start, end in reversed(_pair_spans(text, bare_key=bare_key, colon=colon)):
        text = f"{text[:start]}{REDACTED}{text[end:]}"
    return text


# The password of a URL's user info (postgresql://user:PASSWORD@host/db), e.g. an Optuna storage.
# As for SQLAlchemy, it runs to the first "@" and may hold "/" (base64-made passwords do).
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s@]+)(?P<at>@)"
)


# A token as a URL's whole user info (https://ghp_xxx@github.com/org/repo.git), as Git hosts
# accept it; it counts only if it looks like a token, so git@ or alice@ stay.
_URL_TOKEN = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<password>[^\s:/@]+)(?P<at>@)")
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "hf_", "xox")


def _looks_like_token(user: str) -> bool:
    """A known token prefix, or 20+ characters mixing letters and digits (no plain name)."""
    if user.lower().startswith(_TOKEN_PREFIXES):
        return True
    return len(user) >= 20 and any(c.isdigit() for c in user) and any(c.isalpha() for c in user)


def _literal_password(m: re.Match[str]) -> bool:
    """A URL password written out, not an interpolation such as ``${oc.env:DB_PW}`` (a name)."""
    return not m.group("password").startswith("${")


def _url_secrets(text: str) -> Iterable[re.Match[str]]:
    """The passwords, and the tokens standing alone as user info, of the URLs in ``text``."""
    yield from (m for m in _URL_PASSWORD.finditer(text) if _literal_password(m))
    yield from (m for m in _URL_TOKEN.finditer(text) if _looks_like_token(m.group("password")))


def url_passwords(text: str) -> set[str]:
    """Passwords (and tokens) written into URLs in ``text`` (interpolations are names)."""
    return {m.group("password") for m in _url_secrets(text)}


def _scrub_url_passwords(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if not _literal_password(m):
            return m.group(0)
        return f"{m.group('head')}{REDACTED}{m.group('at')}"

    def sub_token(m: re.Match[str]) -> str:
        if not _looks_like_token(m.group("password")):
            return m.group(0)
        return f"{m.group('head')}{REDACTED}{m.group('at')}"

    return _URL_TOKEN.sub(sub_token, _URL_PASSWORD.sub(sub, text))


def key_words(key: str) -> list[str]:
    """``'hydra.job.env_set.TRACKER_API_KEY'`` -> ``['tracker', 'api', 'key']`` (last part)."""
    last = str(key).rsplit(".", 1)[-1].lstrip("+~")
    last = _CAMEL.sub("_", last)
    return [w for w in re.split(r"[^A-Za-z0-9]+", last.lower()) if w]


def is_secret_key(key: Any) -> bool:
    """Whether a config key or variable name names a secret."""
    words = key_words(str(key))
    if not words:
        return False
    if _SECRET_WORDS.intersection(words) or words[-1] in _TRAILING_WORDS:
        return True
    if any(stem in w for w in words for stem in _SECRET_STEMS):
        return True
    if len(words) > 1 and words[-1] in _QUALIFIED_WORDS:
        return True
    joined = "".join(words)
    # written as one word (NGROK_AUTHTOKEN); "token" alone inside a word is not (max_tokens)
    return any(w in joined for w in _JOINED_SECRETS)


def is_env_reference(value: Any) -> bool:
    """``${oc.env:NAME}``: names a variable instead of holding its value."""
    return isinstance(value, str) and bool(_ENV_REFERENCE.match(value))


def secret_env_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of environment variables whose names look secret (long enough to scrub)."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if is_secret_key(k) and len(v) >= MIN_SCRUB_LENGTH}


def pair_secrets(text: str) -> set[str]:
    """Values of secret-looking ``key=value`` pairs inside a value, such as the ``Password=`` or
    ``AccountKey=`` of a connection string kept under a key that does not look secret. A bare
    ``key`` is left alone there: in text it is a placeholder (Hydra's help says ``KEY=VALUE``)."""
    found = set()
    for start, end in _pair_spans(text, bare_key=False):
        value = text[start:end]
        found.add(value)
        # a query string's value runs on over "&x=1": the secret itself is scrubbed elsewhere too
        found.add(value.split("&", 1)[0])
        scheme, _, credential = value.partition(" ")
        if scheme.lower() in _AUTH_SCHEMES and credential:  # the token may appear alone too
            found.add(credential)
    return found


def collect_secret_values(tree: Any) -> set[str]:
    """Values found under secret-looking keys of a nested dict/list (and in override strings)."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, secret or is_secret_key(k))
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, secret)
        elif isinstance(node, str):
            found.update(url_passwords(node))
            found.update(pair_secrets(node))
            if secret and not is_env_reference(node):
                found.add(node)
            else:
                key, sep, value = node.partition("=")
                if sep and _OVERRIDE_KEY.match(key.strip()) and is_secret_key(key.strip()):
                    found.add(value.strip().strip("'\""))
        elif secret and node is not None and not isinstance(node, bool):
            found.add(str(node))

    walk(tree, False)
    return {v for v in found if v and v != REDACTED}


def scrub_values(text: str, values: Iterable[str] = ()) -> str:
    """Cut ``values`` and the passwords of URLs out of text, leaving ``key: value`` pairs alone
    (for messages that name a key and then say what is wrong with it)."""
    forms = {f for v in values for f in _forms(v) if len(f) >= MIN_SCRUB_LENGTH}
    for v in sorted(forms, key=len, reverse=True):
        text = text.replace(v, REDACTED)
    return _scrub_url_passwords(text)


def scrub_message(text: str, values: Iterable[str] = ()) -> str:
    """:func:`scrub_values`, and the values of secret-looking ``key=value`` pairs inside the
    text (``...?password=...`` in a path or URL a message repeats); ``key: message`` stays as
    it is, as error messages name a key and then say what is wrong with it."""
    return _scrub_pairs(scrub_values(text, values), bare_key=False, colon=False)


def _forms(value: str) -> set[str]:
    """``value`` and the forms a message may show of it: stripped of the newline an env-file or
    a mounted secret ends with, each line of a multi-line one (a one-line message cuts at the
    first), and with the newlines escaped as ``repr`` shows them."""
    forms = {value, value.strip()}
    forms.update(line.strip() for line in value.splitlines())
    forms.add(repr(value)[1:-1])
    return forms


def scrub_text(text: str, values: Iterable[str] = (), *, pairs: bool = True) -> str:
    """Cut ``values``, the passwords of URLs (``scheme://user:<redacted>@host``) and the values
    of secret-looking ``key=value`` / ``key: value`` pairs out of text. ``pairs``: free text
    (log lines), where a key named just ``key`` counts too; without it (config values, Hydra's
    help with its ``KEY=VALUE``) only keys that name a secret more closely do."""
    text = scrub_values(text, values)
    if not pairs:
        return _scrub_pairs(text, bare_key=False)
    return _scrub_pairs(text, bare_key=True)


def redact_override(override: str, values: Iterable[str] = ()) -> str:
    """``+logger.api_key=abc`` -> ``+logger.api_key=<redacted>``; other overrides are scrubbed."""
    key, sep, value = override.partition("=")
    if (
        sep
        and _OVERRIDE_KEY.match(key.strip())
        and is_secret_key(key.strip())
        and not is_env_reference(value.strip())
    ):
        return f"{key}={REDACTED}"
    return scrub_text(override, values, pairs=False)


def redact_tree(tree: Any, values: Iterable[str] = (), *, overrides: bool = False) -> Any:
    """A copy of a nested dict/list with secret-looking keys' values replaced by ``<redacted>``
    and every string scrubbed of ``values``. ``overrides``: strings are ``key=value`` overrides.
    An env reference such as ``${oc.env:TRACKER_TOKEN}`` names a secret without holding it, and
    is kept. Secrets the tree itself holds (see :func:`collect_secret_values`) are cut out of
    its other strings as well."""
    known = set(values) | collect_secret_values(tree)

    def walk(node: Any, secret: bool, key: str) -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v, secret or is_secret_key(k), str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            under_overrides = overrides or key in ("task", "hydra", "overrides")
            return [walk_item(v, secret, key, under_overrides) for v in node]
        return leaf(node, secret)

    def walk_item(node: Any, secret: bool, key: str, as_override: bool) -> Any:
        if isinstance(node, str) and as_override and not secret:
            return redact_override(node, known)
        return walk(node, secret, key)

    def leaf(node: Any, secret: bool) -> Any:
        if secret and node is not None and not is_env_reference(node):
            return REDACTED
        if isinstance(node, str):
            return scrub_text(node, known, pairs=False)
        return node

    return walk(tree, False, "")


class SecretFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record before a handler writes it: the
    given values, the values of secret-looking environment variables, and secret-looking
    ``key=value`` pairs. A ``set`` passed as ``values`` is shared, so it may grow later."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self.values = values if isinstance(values, set) else set(values)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        clean = scrub_text(message, self.values | secret_env_values())
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_text(
                logging.Formatter().formatException(record.exc_info),
                self.values | secret_env_values(),
            )
        return True


_SCRUBBED_VALUES: set[str] = set()


def install_log_scrubber(values: Iterable[str] = ()) -> None:
    """Scrub every log record of this process when it is created (whatever handlers logging is
    configured with later): ``values`` (added to those of earlier calls), secret-looking
    environment variables and ``key=value`` pairs. Installing twice wraps the factory once."""
    _SCRUBBED_VALUES.update(values)
    current = logging.getLogRecordFactory()
    if getattr(current, "_robustai_scrubber", False):
        return
    scrubber = SecretFilter(_SCRUBBED_VALUES)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        scrubber.filter(record)
        return record

    factory._robustai_scrubber = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
