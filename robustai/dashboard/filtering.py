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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorboard import auth as tb_auth
from tensorboard import errors as tb_errors
from tensorboard.data import provider as tb_provider

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


#: how long a run's link check stays valid (TensorBoard itself reloads every few seconds)
_RECHECK_SECONDS = 5.0


class GrantFilteredProvider(tb_provider.DataProvider):
    """A :class:`tensorboard.data.provider.DataProvider` that shows each caller only their runs
    (and, with ``logdir``, no run that a symbolic link brings in from outside it)."""

    def __init__(self, inner: tb_provider.DataProvider, logdir: Path | None = None) -> None:
        self._inner = inner
        self._logdir = logdir
        self._hidden: set[str] = set()  # runs hidden for leaving logdir (warned once each)
        self._checked: dict[str, tuple[float, bool]] = {}  # run -> (when, escapes)

    def _escapes(self, run: str) -> bool:
        """:func:`escapes`, looked up again at most every few seconds per run: every data call
        checks every run, and a page makes dozens of calls."""
        now = time.monotonic()
        hit = self._checked.get(run)
        if hit is None or now - hit[0] > _RECHECK_SECONDS:
            hit = (now, escapes(self._logdir, run))  # type: ignore[arg-type]
            self._checked[run] = hit
        return hit[1]

    def _visible(self, ident: Identity, run: str) -> bool:
        if not ident.can_view(run):
            return False
        if self._logdir is not None and self._escapes(run):
            if run not in self._hidden:
                self._hidden.add(run)
                log.warning(
                    "run %r is not served: it links to files outside %s", run, self._logdir
                )
            return False
        return True

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
        identity_of(ctx)
        return self._inner.experiment_metadata(ctx, experiment_id=experiment_id)

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


def _visible_groups(groups: Iterable[Any], visible: Callable[[str], bool]) -> list[Any]:
    out = []
    for g in groups:
        sessions = [s for s in g.sessions if visible(s.run)]
        if sessions:
            out.append(dataclasses.replace(g, sessions=sessions))
    return out
