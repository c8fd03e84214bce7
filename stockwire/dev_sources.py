"""The local webhook sources ``stockwire up``, the demo and the benchmark configure when none is.

Two, because the two dialects Stockwire reads arrive on different sources: ``shop`` speaks
Stockwire's own dialect (stock receipts and counts, which Commerce Engine does not send, and
``stockwire send``); ``store`` speaks Commerce Engine's (orders, payments, shipments, returns).
Each has its own secret under ``<data dir>/secrets/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["DEV_CE_SOURCE", "DEV_SOURCE", "DEV_SOURCES"]

DEV_SOURCE = "shop"
"""Stockwire's dialect: ``inventory.received``, ``inventory.adjusted`` and the rest of docs/profiles.md."""
DEV_CE_SOURCE = "store"
"""Commerce Engine's dialect: the ``commerce-engine`` profile."""
DEV_SOURCES: Mapping[str, str] = MappingProxyType({DEV_SOURCE: "stockwire", DEV_CE_SOURCE: "commerce-engine"})
"""Each dev source and the profile that reads it."""
