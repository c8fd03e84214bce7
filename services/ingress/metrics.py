"""ingress metrics (no ids in labels; unknown sources are counted as ``unknown``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from libs.metrics import LATENCY_BUCKETS

__all__ = ["CONFLICTS", "PUBLISH_SECONDS", "RECEIVED", "REJECTED", "REQUEST_SECONDS", "SPOOL_DEPTH"]

RECEIVED = Counter(
    "ingress_webhooks_received_total", "Webhooks received, by how they ended", ["source", "event_type", "outcome"]
)
REJECTED = Counter("ingress_webhooks_rejected_total", "Webhooks refused, by reason", ["source", "reason"])
REQUEST_SECONDS = Histogram(
    "ingress_request_duration_seconds", "Webhook request handling time", ["outcome"], buckets=LATENCY_BUCKETS
)
PUBLISH_SECONDS = Histogram(
    "ingress_publish_duration_seconds", "JetStream publish until PubAck", buckets=LATENCY_BUCKETS
)
SPOOL_DEPTH = Gauge("ingress_spool_depth", "Spooled events not yet relayed to JetStream", multiprocess_mode="livemax")
CONFLICTS = Counter(
    "ingress_webhook_conflicts_total",
    "Webhooks refused because their id was first received with a different body (kept in DEADLETTER)",
    ["source"],
)
