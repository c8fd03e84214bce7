"""outbox-relay metrics, one series per outbox."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["BACKLOG", "DUPLICATES", "LEADER", "OLDEST_AGE", "PUBLISHED", "PUBLISH_ERRORS"]

BACKLOG = Gauge("outbox_relay_backlog_rows", "Outbox rows not yet published", ["outbox"], multiprocess_mode="livemax")
OLDEST_AGE = Gauge(
    "outbox_relay_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0: none)",
    ["outbox"],
    multiprocess_mode="livemax",
)
PUBLISHED = Counter(
    "outbox_relay_published_total",
    "Rows JetStream acknowledged (stored now, or already held: see duplicates) and marked published",
    ["outbox"],
)
DUPLICATES = Counter(
    "outbox_relay_duplicates_total", "Publishes JetStream answered as duplicates of a Nats-Msg-Id it had", ["outbox"]
)
PUBLISH_ERRORS = Counter(
    "outbox_relay_publish_errors_total", "Rows whose publish failed or got no PubAck in time (retried)", ["outbox"]
)
LEADER = Gauge(
    "outbox_relay_leader", "1 while this replica holds the outbox's lease", ["outbox"], multiprocess_mode="livemax"
)
