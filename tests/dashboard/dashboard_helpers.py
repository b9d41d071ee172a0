"""Helpers for the dashboard tests: two small runs, their users, a minimal HTTP client."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from robustai.security import AccessStore

MNIST_RUN = "mnist_small_cnn_pgd/2026-01-01/10-00-00"
CIFAR_RUN = "cifar10_preact_resnet18_pgd/2026-01-02/11-00-00"
PASSWORDS = {
    "alice": "alice correct horse battery",  # viewer of mnist_*
    "bob": "bob correct horse battery",  # viewer of cifar10_*
    "nobody": "nobody correct horse battery",  # no grants
}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """One HTTP client with its own cookie jar; never follows redirects."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        url = urllib.parse.urlsplit(self.base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=self.timeout)
        hdrs = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            reply = Reply(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()
        for raw in reply.set_cookies():
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def login(self, user: str, password: str | None = None, **kw: Any) -> Reply:
        pw = PASSWORDS[user] if password is None else password
        return self.request("POST", "/login", form={"username": user, "password": pw}, **kw)


def cookie(client: Client, stem: str = "session") -> str:
    """The name of the dashboard's ``robustai_<stem>`` cookie at ``client``'s port."""
    return f"robustai_{stem}_{urllib.parse.urlsplit(client.base).port}"


def write_runs(logdir: Path) -> None:
    for run, offset in ((MNIST_RUN, 0.0), (CIFAR_RUN, 1.0)):
        w = SummaryWriter(str(logdir / run))
        for step in range(5):
            w.add_scalar("train/loss", offset + 1.0 / (step + 1), step)
            w.add_scalar("val/clean_acc", 0.5 + 0.1 * step, step)
        w.add_image("eval/adversarial/pgd20@0.1", torch.rand(1, 8, 8), 4)
        if run == CIFAR_RUN:  # a kind of data only one user's run has
            w.add_histogram("weights/fc", torch.randn(100), 4)
        w.close()


def make_store(path: Path) -> AccessStore:
    store = AccessStore(path, create=True)
    for user, pw in PASSWORDS.items():
        store.add_user(user, pw)
    store.grant("alice", "viewer", "mnist_*")
    store.grant("bob", "viewer", "cifar10_*")
    return store


def access_logger(path: Path) -> logging.Logger:
    """A private access logger writing to ``path`` (the server's own default is shared)."""
    logger = logging.getLogger(f"robustai.dashboard.access.test.{path.parent.name}")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
