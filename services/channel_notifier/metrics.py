"""channel-notifier metrics. Channel names are operator-chosen and few, so they may be labels; SKUs never."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from libs.metrics import LATENCY_BUCKETS

__all__ = [
    "CIRCUIT_OPEN",
    "DELIVERIES",
    "DELIVERY_LATENCY",
    "PENDING",
    "UPDATES",
    "forget_channel",
]

DELIVERIES = Counter(
    "channel_notifier_deliveries_total", "Delivery attempts to channels, by outcome", ["channel", "outcome"]
)
DELIVERY_LATENCY = Histogram(
    "channel_notifier_delivery_latency_seconds",
    "From the inventory change (occurred_at) to the channel's 2xx",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
PENDING = Gauge(
    "channel_notifier_pending_deliveries",
    "Deliveries waiting to be sent (one per SKU at most)",
    ["channel"],
    multiprocess_mode="livemax",
)
CIRCUIT_OPEN = Gauge(
    "channel_notifier_circuit_open", "1 while the channel's circuit is open", ["channel"], multiprocess_mode="livemax"
)
UPDATES = Counter(
    "channel_notifier_updates_total",
    "Availability updates consumed from INVENTORY, by what became of them in the KV bucket",
    ["outcome"],
)


def forget_channel(name: str) -> None:
    """Drop a deleted channel's series."""
    for gauge in (PENDING, CIRCUIT_OPEN):
        try:
            gauge.remove(name)
        except KeyError:
            pass
    for histogram in (DELIVERY_LATENCY,):
        try:
            histogram.remove(name)
        except KeyError:
            pass
