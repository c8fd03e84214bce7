"""The ``[inventory]`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from libs.config import Bounds, Count, DatabaseUrl, NonNegative, Port, Positive

__all__ = ["InventorySettings"]


@dataclass(frozen=True)
class InventorySettings:
    host: str = "127.0.0.1"
    port: Port = 8081
    # Empty: a SQLite file under the data dir. ``postgresql://…`` lets several replicas share one store.
    database_url: DatabaseUrl = ""
    # fsync every commit (SQLite synchronous=FULL): a message is acknowledged only once its effect is
    # on disk. Commits are per batch, so this costs little.
    durable_commits: bool = True
    pool_size: Count = 10
    consume: bool = True
    """Run the COMMERCE consumer (false: an HTTP-only replica)."""
    batch_size: Count = 256
    fetch_timeout_s: Positive = 1.0
    fetch_linger_s: NonNegative = 0.06
    """A batch shorter than ``batch_size`` waits this long for more (:class:`libs.consumer.PullConsumer`).
    Longer than the notifier's: a bigger batch also folds a SKU's changes into one availability snapshot
    per transaction, which the relay and the notifier then carry once (bench/README.md, "a longer
    linger": 5 % less CPU an order at 10,000/min, the p99 unchanged)."""
    watchdog_s: Positive = 15.0
    heartbeat_s: Positive = 10.0
    reservation_ttl_s: Positive = 900.0
    max_reservation_ttl_s: Annotated[float, Bounds(ge=1)] = 86_400.0
    """The longest ``ttl_s`` POST /reservations accepts; it accepts 1 second at least."""
    park_limit_s: Positive = 3_600.0
    """How long an event may wait for its predecessor before it goes to DEADLETTER."""
    sweep_interval_s: Positive = 5.0
    expire_batch: Count = 200
    metrics_interval_s: Positive = 5.0
    max_lines: Count = 100
    max_body_bytes: Count = 64 * 1024
