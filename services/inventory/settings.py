"""The ``[inventory]`` section of the configuration."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InventorySettings"]


@dataclass(frozen=True)
class InventorySettings:
    host: str = "127.0.0.1"
    port: int = 8081
    # Empty: a SQLite file under the data dir. ``postgresql://…`` lets several replicas share one store.
    database_url: str = ""
    # fsync every commit (SQLite synchronous=FULL): a message is acknowledged only once its effect is
    # on disk. Commits are per batch, so this costs little.
    durable_commits: bool = True
    pool_size: int = 10
    consume: bool = True
    """Run the COMMERCE consumer (false: an HTTP-only replica)."""
    batch_size: int = 256
    fetch_timeout_s: float = 1.0
    fetch_linger_s: float = 0.02
    """A batch shorter than ``batch_size`` waits this long for more (:class:`libs.consumer.PullConsumer`)."""
    watchdog_s: float = 15.0
    heartbeat_s: float = 10.0
    reservation_ttl_s: float = 900.0
    max_reservation_ttl_s: float = 86_400.0
    park_limit_s: float = 3_600.0
    """How long an event may wait for its predecessor before it goes to DEADLETTER."""
    sweep_interval_s: float = 5.0
    expire_batch: int = 200
    metrics_interval_s: float = 5.0
    max_lines: int = 100
    max_body_bytes: int = 64 * 1024
