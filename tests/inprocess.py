"""``robustai ...`` run in the test process, answered as ``subprocess.run`` would answer.

A CLI process spends 4-5 s importing torch (and torch._dynamo, at its first optimizer) before
it does anything; the test process has them imported already. Tests whose subject is what a
shell sees (no traceback, a signal, a closed pipe, torchrun) start real processes instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from pathlib import Path

from robustai.cli.main import main


def _closed_stream_handlers() -> list[logging.StreamHandler]:
    """Handlers a library made during an earlier test (optuna's, on its first log line), that
    write to that test's captured stderr, closed since: in a process of their own they would
    write to the process's stderr."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        h
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for h in logger.handlers
        if type(h) is logging.StreamHandler and getattr(h.stream, "closed", False)
    ]


def robustai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``robustai *args`` in ``cwd``; its exit status, stdout and stderr. The log handlers
    a run attaches to the root logger are taken off again, also when it ends in an error."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stale = _closed_stream_handlers()
    for h in stale:
        h.stream = err  # not setStream: it would flush the closed stream first
    before = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # sys.exit("message"): Python prints it and exits 1
                    print(exc.code, file=err)
                    code = 1
    finally:
        for h in stale:
            h.stream = io.StringIO()  # not the closed stream again: this one stays open
        os.chdir(before)
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["robustai", *args], code, out.getvalue(), err.getvalue())
