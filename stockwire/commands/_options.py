"""Options more than one command takes, spelt the same everywhere."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from libs.config import check_database_url
from stockwire.sim.config import DIALECTS, SimConfig

__all__ = ["add_dialect", "database_url_argument", "http_url_argument"]


def http_url_argument(text: str) -> str:
    """An argument naming a service: an ``http://`` or ``https://`` URL with a host (and a port in range,
    if given). Anything else is an argument error (argparse: usage, status 2), not a failed request."""
    parts = urllib.parse.urlsplit(text)
    try:
        port_ok = parts.port != 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL with a host")
    return text


def database_url_argument(text: str) -> str:
    """An argument naming a store: ``sqlite:///<path>`` or ``postgresql://…`` (see
    :func:`libs.config.check_database_url`); anything else is an argument error (status 2)."""
    try:
        return check_database_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text.split('@')[-1]!r} {exc}") from None


def add_dialect(parser: Any) -> None:
    """``--dialect``: how the simulator writes orders, payments, shipments and returns."""
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default=SimConfig().dialect,
        help="how orders, payments, shipments and returns are written: Commerce Engine's webhooks or Stockwire's "
        "own dialect (default %(default)s); stock receipts and counts are Stockwire's dialect either way",
    )
