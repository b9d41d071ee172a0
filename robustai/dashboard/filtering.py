"""Per-user run filtering inside TensorBoard.

TensorBoard hands a request context (``ctx``) to every data-provider call, and its ``AuthContext``
lets a provider ask who is calling. :class:`GrantFilteredProvider` wraps TensorBoard's own data
provider and answers every call with the runs the caller's grants cover, and nothing else: run
and plugin listings are filtered, reads are restricted to allowed runs before they reach the
data, and a blob key naming another run is refused. A call without an identity sees nothing
(fail closed).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorboard import auth as tb_auth
from tensorboard import errors as tb_errors
from tensorboard.backend import http_util
from tensorboard.data import provider as tb_provider
from tensorboard.plugins.core import core_plugin
from werkzeug import wrappers

from robustai.security.roles import Grant, allows, experiment_of

log = logging.getLogger(__name__)

ENVIRON_KEY = "robustai.identity"


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user's grants, narrowed by a token's scope when the request used one."""

    user: str
    grants: tuple[Grant, ...]
    via: str = "session"  # "session" | "token"
    scope: str | None = None
    token_id: str | None = None

    def can_view(self, run: str) -> bool:
        return allows(self.grants, "view", experiment_of(run), self.scope)

    @property
    def administers_all(self) -> bool:
        """An admin of every experiment (``admin:*``, not narrowed by a token's scope): the one
        who may learn where the log folder lies on the server."""
        return self.scope in (None, "*") and any(
            g.role == "admin" and g.pattern == "*" for g in self.grants
        )


class IdentityAuthProvider(tb_auth.AuthProvider):
    """Reads the identity that the dashboard's login layer put into the WSGI environment."""

    def authenticate(self, environ: dict[str, Any]) -> Identity:
        identity = environ.get(ENVIRON_KEY)
        if not isinstance(identity, Identity):
            raise tb_errors.PermissionDeniedError("not logged in")
        return identity


def identity_of(ctx: Any) -> Identity:
    if ctx is None:
        raise tb_errors.PermissionDeniedError("no request context")
    try:
        return ctx.auth.get(IdentityAuthProvider)
    except KeyError:
        raise tb_errors.PermissionDeniedError("no identity") from None


def _decode_blob_run(blob_key: str) -> str | None:
    """The run named in a blob key of TensorBoard's local data provider, or None."""
    try:
        fields = json.loads(base64.urlsafe_b64decode(blob_key + "==").decode("ascii"))
        run = fields[2]
    except (ValueError, TypeError, IndexError, UnicodeDecodeError):
        return None
    return run if isinstance(run, str) else None


def escapes(logdir: Path, run: str) -> bool:
    """Whether run ``run``'s folder, or a file in it, is a symbolic link to a place outside
    ``logdir``. TensorBoard follows such links; served under the run's name, they would let
    anyone who can write into the log folder publish files only the dashboard's owner can
    read, to whoever a grant on that name covers."""
    root = os.path.realpath(logdir)
    folder = os.path.join(logdir, run)

    def outside(path: str) -> bool:
        real = os.path.realpath(path)
        return real != root and not real.startswith(root + os.sep)

    if outside(folder):
        return True
    try:
        with os.scandir(folder) as entries:
            return any(e.is_symlink() and outside(e.path) for e in entries)
    except OSError:
        return False  # gone since TensorBoard read it: nothing left to serve from there


def real_run(logdir: Path, run: str) -> str:
    """Run ``run``'s name as its folder's real path inside ``logdir`` would give it: a link
    within the log folder (``mnist_alias -> secret_b``) must not serve one experiment's runs
    under another experiment's name, to users whose grants cover only the alias."""
    root = os.path.realpath(logdir)
    return os.path.relpath(os.path.realpath(os.path.join(logdir, run)), root).replace(os.sep, "/")


#: the log folders whose event files TensorBoard may read only from inside them
_CONFINED: dict[str, str] = {}  # the folder as TensorBoard is given it (absolute) -> real path
#: per run folder as TensorBoard names it (absolute), the real folders of the event files read
#: there: TensorBoard keeps what it read, so the grants must cover where the data came from
_READ_FROM: dict[str, set[str]] = {}


def read_from(logdir: Path, run: str) -> tuple[str, ...]:
    """The real folders of the event files TensorBoard has read for run ``run``, as run names
    inside ``logdir``: a link to one event file (``mnist_a/r/events... -> secret_b/r/...``),
    or data read through a folder link since replaced by a real folder, came from there."""
    given = os.path.abspath(os.path.join(logdir, run))
    root = os.path.realpath(logdir)
    return tuple(
        os.path.relpath(real, root).replace(os.sep, "/") for real in set(_READ_FROM.get(given, ()))
    )


def confine_event_files(logdir: Path) -> None:
    """Make TensorBoard's reader skip, under ``logdir``, every event file whose real path leaves
    it, checked as the file is opened. :func:`escapes` hides a run while its link is there, but
    TensorBoard keeps what it read: a link removed after a reload would leave the outside data
    served under the run's name. TensorBoard has no public hook for this, so the function its
    accumulators get their reader from is wrapped (once, for the folders registered here)."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as accumulator

    _CONFINED[os.path.abspath(os.path.expanduser(logdir))] = os.path.realpath(logdir)
    original = accumulator._GeneratorFromPath
    if getattr(original, "confined", False):
        return

    def generator_from_path(path: str, *args: Any, **kwargs: Any) -> Any:
        reader = original(path, *args, **kwargs)
        absolute = os.path.abspath(path)
        root = next(
            (real for top, real in _CONFINED.items() if absolute.startswith(top + os.sep)),
            None,
        )
        if root is not None:
            _confine_reader(reader, path, root)
        return reader

    generator_from_path.confined = True  # type: ignore[attr-defined]
    accumulator._GeneratorFromPath = generator_from_path


def _confine_reader(reader: Any, path: str, root: str) -> None:
    """Make TensorBoard's directory reader ``reader`` read only files inside ``root``."""
    if not hasattr(reader, "_path_filter") or not hasattr(reader, "_loader_factory"):
        raise RuntimeError(  # an internal of TensorBoard changed: fail closed
            f"cannot confine TensorBoard's reader for {path}: this TensorBoard version reads "
            "event files another way"
        )
    path_filter, loader_factory = reader._path_filter, reader._loader_factory
    reader._path_filter = lambda file: path_filter(file) and _inside(os.path.realpath(file), root)

    def load(file: str) -> Any:
        opened = _open_inside(file, root)
        if opened is None:
            return _NoEvents()
        fd, name = opened
        folders = _READ_FROM.setdefault(os.path.dirname(os.path.abspath(file)), set())
        folders.add(os.path.dirname(os.path.realpath(name)))
        loader = loader_factory(name)
        weakref.finalize(loader, os.close, fd)  # the file stays open while it is read
        return loader

    reader._loader_factory = load


def _inside(real: str, root: str) -> bool:
    return real.startswith(root + os.sep)


def _open_inside(file: str, root: str) -> tuple[int, str] | None:
    """(descriptor, name to read it by) for ``file`` if the file it opens lies inside ``root``.

    TensorBoard reopens an event file by name at every read, so a file checked once could be
    swapped for a link later. On Linux the name handed back is ``/proc/self/fd/N``, which
    always opens the file checked here; elsewhere it is ``file``, checked once."""
    try:
        fd = os.open(file, os.O_RDONLY)
    except OSError as e:
        log.warning("event file %s is not read: %s", file, e.strerror)
        return None
    by_fd = f"/proc/self/fd/{fd}"
    linux = os.path.islink(by_fd)
    real = os.path.realpath(by_fd if linux else file)
    if not _inside(real, root):
        os.close(fd)
        log.warning("event file %s is not read: it is %s, outside %s", file, real, root)
        return None
    return fd, by_fd if linux else file


class _NoEvents:
    """The reader of a file that is not read."""

    def Load(self) -> Iterator[Any]:  # the name TensorBoard's loaders have
        return iter(())


#: how long a run's link check stays valid (TensorBoard itself reloads every few seconds)
_RECHECK_SECONDS = 5.0


class GrantFilteredProvider(tb_provider.DataProvider):
    """A :class:`tensorboard.data.provider.DataProvider` that shows each caller only their runs
    (and, with ``logdir``, no run that a symbolic link brings in from outside it)."""

    def __init__(self, inner: tb_provider.DataProvider, logdir: Path | None = None) -> None:
        self._inner = inner
        self._logdir = logdir
        self._hidden: set[str] = set()  # runs hidden for leaving logdir (warned once each)
        self._checked: dict[str, tuple[float, bool, str]] = {}  # run -> (when, escapes, real)

    def _links(self, run: str) -> tuple[bool, str]:
        """(:func:`escapes`, :func:`real_run`), looked up again at most every few seconds per
        run: every data call checks every run, and a page makes dozens of calls."""
        assert self._logdir is not None
        now = time.monotonic()
        hit = self._checked.get(run)
        if hit is None or now - hit[0] > _RECHECK_SECONDS:
            hit = (now, escapes(self._logdir, run), real_run(self._logdir, run))
            self._checked[run] = hit
        return hit[1], hit[2]

    def _visible(self, ident: Identity, run: str) -> bool:
        if not ident.can_view(run):
            return False
        if self._logdir is None:
            return True
        outside, real = self._links(run)
        if outside:
            if run not in self._hidden:
                self._hidden.add(run)
                log.warning("run %r is not served: it links to files outside %s", run, self._logdir)
            return False
        return all(
            name == run or ident.can_view(name) for name in (real, *read_from(self._logdir, run))
        )

    # -------------------------------------------------------------- helpers
    def _allowed_runs(self, ctx: Any, experiment_id: str) -> set[str]:
        ident = identity_of(ctx)
        runs = self._inner.list_runs(ctx, experiment_id=experiment_id)
        return {r.run_name for r in runs if self._visible(ident, r.run_name)}

    def _restrict(
        self, ctx: Any, experiment_id: str, run_tag_filter: tb_provider.RunTagFilter | None
    ) -> tb_provider.RunTagFilter | None:
        """The caller's filter, limited to allowed runs; None when nothing is allowed."""
        allowed = self._allowed_runs(ctx, experiment_id)
        runs = (
            allowed
            if run_tag_filter is None or run_tag_filter.runs is None
            else (allowed & set(run_tag_filter.runs))
        )
        if not runs:
            return None
        tags = None if run_tag_filter is None else run_tag_filter.tags
        return tb_provider.RunTagFilter(runs=runs, tags=tags)

    def _call(self, method: str, ctx: Any, experiment_id: str, **kwargs: Any) -> Any:
        run_filter = self._restrict(ctx, experiment_id, kwargs.pop("run_tag_filter", None))
        if run_filter is None:
            return {}
        result = getattr(self._inner, method)(
            ctx, experiment_id=experiment_id, run_tag_filter=run_filter, **kwargs
        )
        ident = identity_of(ctx)
        return {run: v for run, v in result.items() if self._visible(ident, run)}

    # -------------------------------------------------------------- experiment level
    def experiment_metadata(self, ctx: Any = None, *, experiment_id: str) -> Any:
        """The experiment's metadata; its ``data_location`` (the server's absolute path to the
        log folder, shown by ``/data/environment``) only for admins of everything. The front
        end starts from an empty one and shows nothing in its place."""
        ident = identity_of(ctx)
        md = self._inner.experiment_metadata(ctx, experiment_id=experiment_id)
        if ident.administers_all:
            return md
        return tb_provider.ExperimentMetadata(
            data_location="",
            experiment_name=md.experiment_name,
            experiment_description=md.experiment_description,
            creation_time=md.creation_time,
        )

    def list_plugins(self, ctx: Any = None, *, experiment_id: str) -> Any:
        """The plugins with data in the caller's runs: which dashboards light up must not tell
        a user what kinds of data other users' runs hold."""
        allowed = self._allowed_runs(ctx, experiment_id)
        if not allowed:
            return []
        only = tb_provider.RunTagFilter(runs=allowed)

        def has_data(plugin: str) -> bool:
            return any(
                getattr(self._inner, method)(
                    ctx, experiment_id=experiment_id, plugin_name=plugin, run_tag_filter=only
                )
                for method in ("list_scalars", "list_tensors", "list_blob_sequences")
            )

        plugins = self._inner.list_plugins(ctx, experiment_id=experiment_id)
        return [plugin for plugin in plugins if has_data(plugin)]

    def list_runs(self, ctx: Any = None, *, experiment_id: str) -> list[tb_provider.Run]:
        ident = identity_of(ctx)
        runs = self._inner.list_runs(ctx, experiment_id=experiment_id)
        return [r for r in runs if self._visible(ident, r.run_name)]

    # -------------------------------------------------------------- time series
    def list_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):  # type: ignore[no-untyped-def]
        return self._call(
            "list_scalars",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            run_tag_filter=run_tag_filter,
        )

    def read_scalars(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):  # type: ignore[no-untyped-def]
        return self._call(
            "read_scalars",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            downsample=downsample,
            run_tag_filter=run_tag_filter,
        )

    def read_last_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):  # type: ignore[no-untyped-def]
        return self._call(
            "read_last_scalars",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            run_tag_filter=run_tag_filter,
        )

    def list_tensors(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):  # type: ignore[no-untyped-def]
        return self._call(
            "list_tensors",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            run_tag_filter=run_tag_filter,
        )

    def read_tensors(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):  # type: ignore[no-untyped-def]
        return self._call(
            "read_tensors",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            downsample=downsample,
            run_tag_filter=run_tag_filter,
        )

    def list_blob_sequences(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):  # type: ignore[no-untyped-def]
        return self._call(
            "list_blob_sequences",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            run_tag_filter=run_tag_filter,
        )

    def read_blob_sequences(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):  # type: ignore[no-untyped-def]
        return self._call(
            "read_blob_sequences",
            ctx,
            experiment_id,
            plugin_name=plugin_name,
            downsample=downsample,
            run_tag_filter=run_tag_filter,
        )

    def read_blob(self, ctx: Any = None, *, blob_key: str) -> bytes:
        ident = identity_of(ctx)
        run = _decode_blob_run(blob_key)
        if run is None or not self._visible(ident, run):
            raise tb_errors.NotFoundError("no such blob")  # the same answer as a missing blob
        return self._inner.read_blob(ctx, blob_key=blob_key)

    # -------------------------------------------------------------- hyperparameters
    def list_hyperparameters(
        self, ctx: Any = None, *, experiment_ids: Any, limit: Any = None
    ) -> Any:
        ident = identity_of(ctx)
        result = self._inner.list_hyperparameters(ctx, experiment_ids=experiment_ids, limit=limit)
        groups = _visible_groups(result.session_groups, lambda run: self._visible(ident, run))
        return tb_provider.ListHyperparametersResult(
            hyperparameters=result.hyperparameters, session_groups=groups
        )

    def read_hyperparameters(  # type: ignore[no-untyped-def]
        self, ctx=None, *, experiment_ids, filters=None, sort=None, hparams_to_include=None
    ):
        ident = identity_of(ctx)
        groups = self._inner.read_hyperparameters(
            ctx,
            experiment_ids=experiment_ids,
            filters=filters,
            sort=sort,
            hparams_to_include=hparams_to_include,
        )
        return _visible_groups(groups, lambda run: self._visible(ident, run))


class CorePluginLoader(core_plugin.CorePluginLoader):
    """TensorBoard's core plugin (its flags, front end, run listing), with ``/data/logdir``
    naming the log folder only to admins of everything: it is the server's absolute path, of
    no use to a viewer and telling them where (and under whose home) the runs lie. Debug info
    (the flags, the log folder among them) stays off."""

    def __init__(self) -> None:
        super().__init__(include_debug_info=False)

    def load(self, context: Any) -> Any:
        # TensorBoard tells the core plugin apart by its exact type (``type(p) is CorePlugin``:
        # its routes are not put under /data/plugin/core), so the instance is TensorBoard's
        # own and only its route table is changed.
        plugin = core_plugin.CorePlugin(context, include_debug_info=False)
        routes = plugin.get_plugin_apps
        logdir = context.logdir or ""

        @wrappers.Request.application
        def serve_logdir(request: Any) -> Any:
            ident = request.environ.get(ENVIRON_KEY)
            shown = isinstance(ident, Identity) and ident.administers_all
            return http_util.Respond(
                request, {"logdir": logdir if shown else ""}, "application/json"
            )

        def get_plugin_apps() -> dict[str, Any]:
            return {**routes(), "/data/logdir": serve_logdir}

        plugin.get_plugin_apps = get_plugin_apps
        return plugin


def _visible_groups(groups: Iterable[Any], visible: Callable[[str], bool]) -> list[Any]:
    out = []
    for g in groups:
        sessions = [s for s in g.sessions if visible(s.run)]
        if sessions:
            out.append(dataclasses.replace(g, sessions=sessions))
    return out
