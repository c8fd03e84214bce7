"""One log format for every process, so that ``stockwire up``'s prefixed output lines up."""

from __future__ import annotations

import logging
import os

__all__ = ["setup_logging"]


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once per process: ``level``, else ``STOCKWIRE_LOG_LEVEL``, else INFO."""
    chosen = (level or os.environ.get("STOCKWIRE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=chosen, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", force=True)
    # The access log of every request drowns the lines that matter.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
