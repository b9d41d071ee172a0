"""TensorBoard, in-process, behind the login layer.

TensorBoard's WSGI application is built from its own parts: flags parsed by
``tensorboard.program.TensorBoard``, the local event-file ingester, and an allowlist of plugins
that read data only through the data provider, which :class:`GrantFilteredProvider` wraps.
Plugins that read the log folder directly (custom scalars, debugger, projector) and third-party
plugins are left out, since they would bypass the per-user filter.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from robustai.dashboard.auth import ACCESS_LOGGER, AuthLayer
from robustai.dashboard.filtering import (
    CorePluginLoader,
    GrantFilteredProvider,
    IdentityAuthProvider,
    confine_event_files,
)
from robustai.errors import UserError
from robustai.security.store import AccessStore
from robustai.security.throttle import LoginThrottle

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6006


def allowed_plugins() -> list[Any]:
    """TensorBoard plugins whose data access goes through the (filtered) data provider."""
    from tensorboard.plugins.audio import audio_plugin
    from tensorboard.plugins.distribution import distributions_plugin
    from tensorboard.plugins.graph import graphs_plugin
    from tensorboard.plugins.histogram import histograms_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from tensorboard.plugins.image import images_plugin
    from tensorboard.plugins.mesh import mesh_plugin
    from tensorboard.plugins.metrics import metrics_plugin
    from tensorboard.plugins.pr_curve import pr_curves_plugin
    from tensorboard.plugins.scalar import scalars_plugin
    from tensorboard.plugins.text import text_plugin

    return [
        CorePluginLoader(),  # /data/logdir and /data/environment name the folder to admins
        metrics_plugin.MetricsPlugin,
        scalars_plugin.ScalarsPlugin,
        images_plugin.ImagesPlugin,
        audio_plugin.AudioPlugin,
        graphs_plugin.GraphsPlugin,
        distributions_plugin.DistributionsPlugin,
        histograms_plugin.HistogramsPlugin,
        text_plugin.TextPlugin,
        pr_curves_plugin.PrCurvesPlugin,
        hparams_plugin.HParamsPlugin,
        mesh_plugin.MeshPlugin,
    ]


def build_tensorboard_app(logdir: Path, reload_interval: float = 5.0) -> tuple[Any, Any]:
    """(TensorBoard WSGI app that filters runs per caller, its data ingester).

    ``reload_interval=0`` reads the log folder once, before returning (tests, static folders).
    """
    from tensorboard import assets, program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester

    tb = program.TensorBoard(
        plugins=allowed_plugins(), assets_zip_provider=assets.get_default_assets_zip_provider()
    )
    tb.configure(
        logdir=str(logdir),
        reload_interval=reload_interval,
        reload_task="blocking" if reload_interval == 0 else "thread",
        load_fast="false",  # the Python ingester: its blob keys name their run (checked per call)
    )
    confine_event_files(logdir)  # before the first read
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        tb.flags,
        tb.plugin_loaders,
        data_provider=GrantFilteredProvider(ingester.data_provider, logdir),
        assets_zip_provider=tb.assets_zip_provider,
        deprecated_multiplexer=None,  # plugins must go through the filtered provider
        auth_providers={IdentityAuthProvider: IdentityAuthProvider()},
    )
    return app, ingester


class _OneLineErrors:
    """TensorBoard's plugins raise on some malformed requests (the HParams download without its
    ``request`` field: a TypeError), which werkzeug answered 500 with a 30-line traceback in the
    dashboard's log: one line instead, and 400 where the request's content was at fault."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self.app(environ, start_response)
        except Exception as e:
            bad_request = isinstance(e, TypeError | ValueError | KeyError)
            status = "400 Bad Request" if bad_request else "500 Internal Server Error"
            why = str(e).strip().splitlines()[0] if str(e).strip() else ""
            log.warning(
                "%s %s: %s (%s: %s)", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                status[4:].lower(), type(e).__name__, why[:200],
            )  # fmt: skip
            log.debug("the error's traceback", exc_info=True)
            body = f"{status[4:]}\n".encode()
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            start_response(status, [*headers, ("Content-Length", str(len(body)))], sys.exc_info())
            return [body]


class _Handler(WSGIRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Requests go to the access log (with the user), not to werkzeug's log."""


def open_access_log(path: str | Path) -> logging.Handler:
    """Append the access log to ``path`` (created 0600), one line per event, UTC timestamps."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.FileHandler(p, encoding="utf-8")
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardServer:
    """A threaded HTTP server: :meth:`serve_forever` blocks, :meth:`start` runs it in a thread."""

    def __init__(
        self,
        logdir: str | Path,
        store: AccessStore,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        reload_interval: float = 5.0,
        session_seconds: float = 8 * 3600,
        secure_cookie: bool = False,
        throttle: LoginThrottle | None = None,
        access_log: logging.Logger | None = None,
    ) -> None:
        self.logdir = Path(logdir).expanduser()
        if not self.logdir.is_dir():
            raise UserError(f"--logdir {logdir}: no such folder (point it at your experiments/)")
        self.tensorboard, self._ingester = build_tensorboard_app(self.logdir, reload_interval)
        self.app = AuthLayer(
            _OneLineErrors(self.tensorboard),
            store,
            session_seconds=session_seconds,
            secure_cookie=secure_cookie,
            throttle=throttle,
            access_log=access_log,
        )
        said = io.StringIO()
        try:
            # werkzeug prints why it cannot bind (e.g. the port is taken) and calls sys.exit(1)
            socket.getaddrinfo(host, port)  # a host that does not resolve: gaierror, said so
            with contextlib.redirect_stderr(said):
                self._server = make_server(
                    host, port, self.app, threaded=True, request_handler=_Handler
                )
        except (OSError, SystemExit) as e:
            reason = said.getvalue().strip().splitlines() or [str(getattr(e, "strerror", e))]
            # A name that does not resolve, or an address this machine does not have (werkzeug
            # prints that one's strerror and exits): the host is wrong, not the port.
            bad_host = isinstance(e, socket.gaierror) or reason[0] == os.strerror(
                errno.EADDRNOTAVAIL
            )
            fix = (
                "give --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
                if bad_host
                else "stop what uses it or pick another --port"
            )
            raise UserError(f"cannot listen on {host}:{port}: {reason[0]}; {fix}") from None
        self.host = host
        self.port = int(self._server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(target=self.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
