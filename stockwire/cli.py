"""``stockwire <command>``: every module in :mod:`stockwire.commands` adds one command.

A command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers read it as theirs)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main"]

# What this module imports at its top runs before :func:`main` can catch a Ctrl-C: nothing the
# interpreter has not loaded at start-up. Everything else (argparse and importlib.metadata too, some
# 30 ms; the settings, the commands, their clients) loads inside it.


def build_parser() -> argparse.ArgumentParser:
    import argparse
    import importlib
    import pkgutil

    from stockwire import commands

    parser = argparse.ArgumentParser(prog="stockwire", description="Event-driven commerce on NATS JetStream.")
    parser.add_argument("--version", action="version", version=f"stockwire {_version()}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING…")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"stockwire.commands.{info.name}")
        module.register(subparsers)
    return parser


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("stockwire")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments); returns its exit status: 2
    for a configuration that cannot be used, 130 for a Ctrl-C at any moment the command does not take
    as its own way to stop, the imports of the first half second included (no traceback: the status a
    shell expects of an interrupted command). ``stockwire up`` takes Ctrl-C, SIGTERM and SIGHUP as the
    request to stop, as a server does: 0 once everything stopped cleanly, 1 if something had to be killed."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return 130


def _run(argv: Sequence[str] | None) -> int:
    from libs.config import ConfigError, check_known, config_error_line, load_raw
    from libs.logs import setup_logging
    from stockwire.stack import section_classes

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        # The whole file and environment, every service's section included: a typo is refused before
        # any command acts on a configuration it half understood.
        check_known(load_raw(), section_classes())
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(config_error_line(exc), file=sys.stderr)
        return 2
