"""The login layer in front of TensorBoard (a WSGI middleware).

Every request is authenticated before TensorBoard sees it, by a bearer token
(``Authorization: Bearer rai_...``, for scripts) or by the session cookie that ``/login`` sets
(signed, expiring, HttpOnly, SameSite=Strict). Failed logins are throttled per (user, client) by
:class:`robustai.security.LoginThrottle`; a browser that logged in as a user before carries a
device cookie, so an attacker hammering that user's password does not lock the user out. Each
request and each login attempt is written to the access log: who, when, what, and the answer.
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from robustai.dashboard.filtering import ENVIRON_KEY, Identity
from robustai.dashboard.sessions import CookieSigner, RevokedSessions
from robustai.security.errors import AccessError
from robustai.security.store import AccessStore
from robustai.security.throttle import LoginThrottle

log = logging.getLogger(__name__)

ACCESS_LOGGER = "robustai.dashboard.access"
SESSION_COOKIE = "robustai_session"  # the names' stem: see AuthLayer.cookie_name
DEVICE_COOKIE = "robustai_device"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
WHOAMI_PATH = "/auth/whoami"
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)
# TensorBoard's routes that answer with run data (the rest is its static front end)
_PRIVATE_PREFIXES = ("/data/", "/experiment/", "/auth/")
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Request(Request):
    max_content_length = 64 * 1024  # a login form is tiny
    max_form_memory_size = 64 * 1024


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (other hosts, schemes) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _clean(text: str, limit: int = 200) -> str:
    """One log-safe token: no spaces, quotes or control characters (no log injection)."""
    out = "".join(
        c if 32 < ord(c) < 127 and c not in '"\\' else f"\\x{ord(c) & 0xFF:02x}" for c in text
    )
    return out[:limit] or "-"


def login_page(message: str = "", next_path: str = "/", user: str = "") -> str:
    note = f'<p class="msg" id="message">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="same-origin">
<title>robustai dashboard: log in</title>
<style>
body {{ font-family: sans-serif; background: #f5f5f5; display: flex; justify-content: center; }}
form {{ background: #fff; padding: 2em; margin-top: 10vh; border-radius: 6px; width: 18em;
        box-shadow: 0 1px 4px rgba(0,0,0,.2); }}
label, input, button {{ display: block; width: 100%; box-sizing: border-box; margin-top: .5em; }}
input {{ padding: .4em; }} button {{ margin-top: 1em; padding: .5em; }}
.msg {{ color: #b00020; }}
</style></head>
<body><form method="post" action="{LOGIN_PATH}" autocomplete="on">
<h2>robustai dashboard</h2>{note}
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required value="{html.escape(user)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="login" type="submit">Log in</button>
</form></body></html>
"""


def _logout_page() -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>robustai dashboard: log out</title></head>
<body><form method="post" action="{LOGOUT_PATH}"><button id="logout" type="submit">Log out</button>
</form></body></html>
"""


class AuthLayer:
    """WSGI middleware: login, logout, and authentication of everything else before ``app``."""

    def __init__(
        self,
        app: WSGIApp,
        store: AccessStore,
        *,
        session_seconds: float = 8 * 3600,
        device_seconds: float = 30 * 86400,
        secure_cookie: bool = False,
        throttle: LoginThrottle | None = None,
        access_log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.store = store
        self.session_seconds = session_seconds
        self.device_seconds = device_seconds
        self.secure_cookie = secure_cookie
        self.throttle = throttle or LoginThrottle()
        self.log = access_log or logging.getLogger(ACCESS_LOGGER)
        self.clock = clock
        self.sessions = CookieSigner("session", clock=clock)
        self.devices = CookieSigner("device", clock=clock)
        self.revoked = RevokedSessions(clock=clock)
        # Password hashing is deliberately costly: cap how many run at once, so a flood of
        # login attempts (say, many user names) cannot take every core from the dashboard.
        self._hashing = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) // 2))
        self._store_problem: str | None = None  # what is wrong with the store, said once

    # ------------------------------------------------------------------ WSGI entry
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = _Request(environ)
        seen: dict[str, Any] = {"status": "-"}

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            if request.path.startswith(_PRIVATE_PREFIXES):
                # A user's data: no copy in the browser's or a proxy's cache, where TensorBoard's
                # own "no-cache" (store, then revalidate) would leave one after logout.
                headers = [(k, v) for k, v in headers if k.lower() != "cache-control"]
                headers.append(("Cache-Control", "no-store"))
            present = {k.lower() for k, _ in headers}
            headers = list(headers) + [
                (k, v) for k, v in _SECURITY_HEADERS if k.lower() not in present
            ]
            return start_response(status, headers, exc_info)

        ident: Identity | None = None
        try:
            if request.path == LOGIN_PATH:
                return self._login(request)(environ, respond)
            if request.path == LOGOUT_PATH:
                return self._logout(request)(environ, respond)
            ident, refusal = self._authenticate(request)
            if refusal is not None:
                return refusal(environ, respond)
            assert ident is not None
            unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
            if unsafe and ident.via == "session" and not self._same_origin(request):
                return self._json(403, "cross-site request refused")(environ, respond)
            if request.path == WHOAMI_PATH:
                return self._whoami(ident)(environ, respond)
            environ[ENVIRON_KEY] = ident
            return self.app(environ, respond)
        except HTTPException as e:
            return e.get_response(environ)(environ, respond)
        except AccessError as e:  # the store cannot be read: removed, damaged, ...
            return self._store_failed(request, e)(environ, respond)
        except Exception:
            if seen["status"] == "-":  # the server answers 500 once this layer has raised
                seen["status"] = "500"
            raise
        finally:
            self._log_request(request, ident, seen["status"])

    def _store_failed(self, request: Request, error: AccessError) -> Response:
        """Answer 500 while the access store cannot be read (removed or damaged while the
        dashboard runs): no one is let in, the server's log says why once (not a traceback per
        request), and the client is not told the store's path."""
        if str(error) != self._store_problem:
            self._store_problem = str(error)
            log.error("robustai dashboard: cannot check logins: %s", error)
        message = "The dashboard cannot read its access store; its log says why."
        if request.path == LOGIN_PATH:
            return self._page(login_page(message), 500)
        return self._json(500, message)

    # ------------------------------------------------------------------ authentication
    def _authenticate(self, request: Request) -> tuple[Identity | None, Response | None]:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, self._json(401, "use 'Authorization: Bearer <token>'", bearer=True)
            found = self.store.verify_token(token.strip())
            if found is None:
                self.log.info("token refused ip=%s", _clean(request.remote_addr or "-"))
                return None, self._json(401, "invalid, expired or revoked token", bearer=True)
            user, info = found
            return Identity(user.name, user.grants, "token", info.scope, info.token_id), None
        ident = self._session_identity(request)
        if ident is not None:
            return ident, None
        if request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", ""):
            target = quote(request.full_path.rstrip("?"), safe="")
            return None, self._redirect(f"{LOGIN_PATH}?next={target}")
        return None, self._json(401, "log in at /login or send 'Authorization: Bearer <token>'")

    def _session_identity(self, request: Request) -> Identity | None:
        payload = self.sessions.loads(
            request.cookies.get(self.cookie_name(request, SESSION_COOKIE))
        )
        if payload is None or payload.get("sid") in self.revoked:
            return None
        user = self.store.find_user(str(payload.get("u", "")))
        if user is None or float(payload.get("iat", 0)) < user.password_changed:
            return None  # removed, or the password changed after this session began
        return Identity(user.name, user.grants, "session")

    # ------------------------------------------------------------------ login / logout
    def _logged_name(self, name: str) -> str:
        """``name`` for the access log if it is a user's; a password typed into the name field
        by mistake must not be written down."""
        return _clean(name) if self.store.find_user(name) is not None else "<unknown>"

    def _login(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return self._page(login_page(next_path=safe_next(request.args.get("next"))))
        if request.method != "POST":
            return self._json(405, "use GET or POST")
        if not self._same_origin(request):
            return self._json(403, "cross-site login refused")
        name = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        target = safe_next(request.form.get("next"))
        ip = request.remote_addr or "-"
        if not name or not password:
            return self._page(login_page("Enter a user name and a password.", target, name), 400)
        device = self.devices.loads(request.cookies.get(self.cookie_name(request, DEVICE_COOKIE)))
        trusted = device is not None and str(device.get("u", "")).casefold() == name.casefold()
        client = f"device:{device['d']}" if trusted and device else f"ip:{ip}"
        key = (name.casefold(), client)
        verdict = self.throttle.begin(key)  # one attempt per (user, client) at a time
        if not verdict.allowed:
            wait = max(1, round(verdict.retry_after))
            self.log.info(
                "login throttled user=%s ip=%s retry_after=%ds%s",
                self._logged_name(name),
                _clean(ip),
                wait,
                " full" if verdict.full else "",
            )
            if verdict.full:  # the throttle holds only lockouts: it drops none to admit more
                message = f"Too many failed logins at this dashboard; try again in {wait} s."
            else:
                what = "locked after repeated failures" if verdict.locked else "slowed down"
                message = f"Too many failed logins ({what}); try again in {wait} s."
            resp = self._page(login_page(message, target, name), 429)
            resp.headers["Retry-After"] = str(wait)
            return resp
        if not self._hashing.acquire(timeout=10):
            self.throttle.release(key)
            self.log.info("login busy user=%s ip=%s", self._logged_name(name), _clean(ip))
            resp = self._page(login_page("The server is busy; try again.", target, name), 503)
            resp.headers["Retry-After"] = "5"
            return resp
        try:
            user = self.store.authenticate(name, password)
        except BaseException:
            self.throttle.release(key)
            raise
        finally:
            self._hashing.release()
        if user is None:
            after = self.throttle.failure(key)
            self.log.info(
                "login failed user=%s ip=%s failures=%d%s",
                self._logged_name(name),
                _clean(ip),
                self.throttle.failures(key),
                " locked" if after.locked else "",
            )
            return self._page(login_page("Wrong user name or password.", target, name), 401)
        self.throttle.success(key)
        now = self.clock()
        session = self.sessions.dumps(
            {"u": user.name, "sid": secrets.token_hex(16), "iat": now}, self.session_seconds
        )
        device_id = device["d"] if trusted and device else secrets.token_hex(16)
        resp = self._redirect(target)
        self._set_cookie(
            resp, self.cookie_name(request, SESSION_COOKIE), session, self.session_seconds, "/"
        )
        self._set_cookie(
            resp,
            self.cookie_name(request, DEVICE_COOKIE),
            self.devices.dumps({"u": user.name, "d": device_id}, self.device_seconds),
            self.device_seconds,
            "/" if self.secure_cookie else LOGIN_PATH,  # __Host- cookies must have Path=/
        )
        self.log.info("login ok user=%s ip=%s", _clean(user.name), _clean(ip))
        return resp

    def _logout(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return self._page(_logout_page())
        if request.method != "POST" or not self._same_origin(request):
            return self._json(403, "log out with a POST from the dashboard's own page")
        session_cookie = self.cookie_name(request, SESSION_COOKIE)
        payload = self.sessions.loads(request.cookies.get(session_cookie))
        if payload is not None:
            self.revoked.revoke(str(payload.get("sid")), float(payload["exp"]))
            self.log.info("logout user=%s", _clean(str(payload.get("u", "-"))))
        resp = self._redirect(LOGIN_PATH)
        resp.delete_cookie(
            session_cookie, path="/", secure=self.secure_cookie, httponly=True, samesite="Strict"
        )
        return resp

    # ------------------------------------------------------------------ helpers
    def cookie_name(self, request: Request, stem: str) -> str:
        """The name of cookie ``stem`` for the dashboard this request reached.

        Browsers keep cookies per host name, not per port: two dashboards on one host (ports
        6006 and 6007, or two containers published on two ports) would overwrite each other's
        session and device cookies, logging each other's users out. So the names carry the
        port the browser used (the Host header's, none for the scheme's default port):
        ``robustai_session_6006``. With ``secure_cookie`` they take the ``__Host-`` prefix,
        which browsers accept only with Secure, Path=/ and no Domain: no other host under the
        same domain can set (or shadow) them."""
        _, colon, port = request.host.rpartition(":")
        name = f"{stem}_{port}" if colon and port.isdigit() and len(port) <= 5 else stem
        return f"__Host-{name}" if self.secure_cookie else name

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """A browser's cross-site POST carries a foreign Origin (or Referer): refuse it."""
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if origin is None:
            return True  # not a browser form or fetch: nothing to forge
        if origin == "null":
            return False
        return urlsplit(origin).netloc == request.host

    def _set_cookie(self, resp: Response, name: str, value: str, ttl: float, path: str) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=int(ttl),
            path=path,
            secure=self.secure_cookie,
            httponly=True,
            samesite="Strict",
        )

    @staticmethod
    def _page(body: str, status: int = 200) -> Response:
        resp = Response(body, status=status, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = _PAGE_CSP
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @staticmethod
    def _json(status: int, message: str, bearer: bool = False) -> Response:
        resp = Response(json.dumps({"error": message}), status=status, mimetype="application/json")
        resp.headers["Cache-Control"] = "no-store"
        if status == 401:
            resp.headers["WWW-Authenticate"] = (
                'Bearer error="invalid_token"' if bearer else 'Bearer realm="robustai"'
            )
        return resp

    @staticmethod
    def _redirect(location: str) -> Response:
        resp = Response("", status=303)
        resp.headers["Location"] = location
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @staticmethod
    def _whoami(ident: Identity) -> Response:
        body = {
            "user": ident.user,
            "via": ident.via,
            "scope": ident.scope,
            "grants": [str(g) for g in ident.grants],
        }
        return Response(json.dumps(body), mimetype="application/json")

    def _log_request(self, request: Request, ident: Identity | None, status: str) -> None:
        who = f"user={_clean(ident.user)} via={ident.via}" if ident else "user=- via=-"
        if ident is not None and ident.token_id:
            who += f" token={ident.token_id}"
        self.log.info(
            '%s ip=%s "%s %s" %s',
            who,
            _clean(request.remote_addr or "-"),
            _clean(request.method, 10),
            _clean(request.path),
            status,
        )
