"""The ``robustai`` command: dispatches to subcommands."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from robustai.cli.common import EXIT_BAD_INPUT

# name -> (module with a ``main(argv)``, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "robustai.cli.train",
        "train and evaluate a model; Hydra overrides (see `robustai train --help`)",
    ),
    "evaluate": (
        "robustai.cli.evaluate",
        "attack a saved model, check the result can be trusted, write a report (checkpoint=...)",
    ),
    "users": (
        "robustai.cli.users",
        "manage dashboard users, roles and tokens (add, list, grant, token create, ...)",
    ),
    "dashboard": (
        "robustai.cli.dashboard",
        "TensorBoard behind a login: each user sees the runs their grants cover",
    ),
    "summarize": (
        "robustai.cli.summarize",
        "compare a sweep's runs: table (CSV, Markdown) sorted by the objective, Pareto plot",
    ),
}

USAGE = """usage: robustai <command> [args ...]

Train models that stay correct under attack and keep their training data private.

commands:
{commands}

`robustai <command> --help` shows a command's options. Example:
  robustai train attack=pgd attack.eps=0.1 trainer.epochs=5
"""


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return USAGE.format(commands=lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; a reader that stops early (``robustai users token list | head``) ends
    the command quietly, as it would end ``ls``, instead of with a BrokenPipeError traceback."""
    # Hydra's --info writes through logging, which printed "--- Logging error ---" and a
    # traceback for every record once the reader had gone; a CLI's logging stays quiet about
    # its own failures (the standard library's advice for production use).
    logging.raiseExceptions = False
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # inside the try: a closed pipe fails here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        # Ctrl-C before a command's own handling starts (a run's checks, its config's
        # composition): the commands say what an interrupt left where they handle it
        name = (list(sys.argv[1:] if argv is None else argv) or ["robustai"])[0]
        sys.stderr.write(f"robustai {name}: interrupted\n")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # Python would flush stdout again at exit and print an error: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # what a shell reports for a process its reader cut off


def _dispatch(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # a mistake: the usage goes where errors go
        sys.stderr.write(usage())
        return EXIT_BAD_INPUT
    if args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if args[0] == "--version":
        from robustai import __version__

        sys.stdout.write(f"robustai {__version__}\n")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        sys.stderr.write(
            f"robustai: error: unknown command '{name}'; valid: {', '.join(COMMANDS)}\n"
        )
        return EXIT_BAD_INPUT
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
