"""Options more than one command takes, spelt the same everywhere."""

from __future__ import annotations

from typing import Any

from stockwire.sim.config import DIALECTS, SimConfig

__all__ = ["add_dialect"]


def add_dialect(parser: Any) -> None:
    """``--dialect``: how the simulator writes orders, payments, shipments and returns."""
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default=SimConfig().dialect,
        help="how orders, payments, shipments and returns are written: Commerce Engine's webhooks or Stockwire's "
        "own dialect (default %(default)s); stock receipts and counts are Stockwire's dialect either way",
    )
