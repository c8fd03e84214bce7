"""inventory metrics (no SKU or order ids in labels; event types no shipped profile maps are ``other``,
except in the unmapped counter, which names the first 200 it sees per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from libs.metrics import LATENCY_BUCKETS
from libs.profiles import event_type_label

__all__ = [
    "APPLIED",
    "APPLY_SECONDS",
    "CONSUMER_PENDING",
    "EXPIRED",
    "OVERSELL_REJECTIONS",
    "PARKED",
    "UNMAPPED",
    "event_type_label",
    "unmapped_label",
]

APPLIED = Counter(
    "inventory_events_applied_total",
    "COMMERCE events handled, by type and outcome (applied, duplicate, parked, rejected, dead_lettered, ignored)",
    ["event_type", "outcome"],
)
APPLY_SECONDS = Histogram(
    "inventory_apply_duration_seconds", "Time to apply one fetched batch in its transaction", buckets=LATENCY_BUCKETS
)
PARKED = Gauge("inventory_parked_events", "Events waiting for their predecessor", multiprocess_mode="livemax")
CONSUMER_PENDING = Gauge(
    "inventory_consumer_pending",
    "Messages of COMMERCE the inventory consumer has not yet been given",
    multiprocess_mode="livemax",
)
OVERSELL_REJECTIONS = Counter(
    "inventory_oversell_rejections_total", "Reservations refused because the stock was not there", ["path"]
)
EXPIRED = Counter("inventory_reservations_expired_total", "Reservations released because their TTL passed")
UNMAPPED = Counter(
    "inventory_unmapped_events_total",
    "COMMERCE events kept but not acted on because their source's profile does not map their type",
    ["source", "event_type"],
)

_MAX_UNMAPPED_LABELS = 200
_unmapped_labels: set[tuple[str, str]] = set()


def unmapped_label(source: str, event_type: str) -> str:
    """The ``event_type`` label of an unmapped event: the type itself for the first
    :data:`_MAX_UNMAPPED_LABELS` (source, type) pairs this process sees, ``other`` after that, so a
    producer inventing types cannot grow the metric without bound."""
    pair = (source, event_type)
    if pair in _unmapped_labels:
        return event_type
    if len(_unmapped_labels) < _MAX_UNMAPPED_LABELS:
        _unmapped_labels.add(pair)
        return event_type
    return "other"
