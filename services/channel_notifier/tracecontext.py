"""Trace context of the availability updates a notifier process has taken in, for its delivery attempts.

While tracing is on, the ingest keeps the ``traceparent`` (and ``tracestate``) each INVENTORY
availability message came with, by (SKU, version); a delivery attempt of that version is traced as its
child and sends the attempt's own context on to the channel. Kept in memory and bounded: a delivery made
after a restart, by another replica or for an update seeded from the bucket starts a trace of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from libs.contracts import HEADER_TRACEPARENT, HEADER_TRACESTATE

__all__ = ["MEMO", "TraceMemo"]


class TraceMemo:
    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, int], dict[str, str]] = OrderedDict()

    def put(self, sku: str, version: int, headers: Mapping[str, str]) -> None:
        """Remember the trace context in ``headers`` (a message's), if any, for ``sku`` at ``version``."""
        parent = headers.get(HEADER_TRACEPARENT)
        if parent is None:
            return
        carrier = {HEADER_TRACEPARENT: parent}
        state = headers.get(HEADER_TRACESTATE)
        if state:
            carrier[HEADER_TRACESTATE] = state
        key = (sku, version)
        self._items[key] = carrier
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, sku: str, version: int) -> dict[str, str] | None:
        return self._items.get((sku, version))


MEMO = TraceMemo()
"""The process's memo (ingest writes, workers read; one event loop)."""
