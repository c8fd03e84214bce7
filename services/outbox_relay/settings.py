"""The ``[outbox-relay]`` section of the configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from libs.config import ConfigError, Count, DatabaseUrl, NonNegative, Port, Positive
from libs.outbox import OUTBOX_TABLE
from libs.store import database_url

__all__ = ["DEFAULT_OUTBOXES", "OutboxRelaySettings", "OutboxSpec", "resolve_outboxes"]

# What `stockwire up` runs: ingress's spool and inventory's outbox, SQLite files in the data dir.
DEFAULT_OUTBOXES = ("ingress", "inventory")

# The name goes into a KV key, a NATS subject and a metric label; Kubernetes pod names fit.
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class OutboxSpec:
    name: str
    # A SQLite file (``sqlite:///path``) or PostgreSQL (``postgresql://…``); empty: <data_dir>/<name>.db.
    database_url: DatabaseUrl = ""
    table: str = OUTBOX_TABLE

    def __repr__(self) -> str:  # a URL may carry a password
        return f"OutboxSpec(name={self.name!r}, table={self.table!r})"


@dataclass(frozen=True)
class OutboxRelaySettings:
    host: str = "127.0.0.1"
    port: Port = 8083
    # Empty: the ingress spool and the inventory outbox under the data dir.
    outboxes: list[OutboxSpec] = field(default_factory=list)
    batch_size: Count = 500  # rows read per query
    max_in_flight: Count = 4000  # publishes awaiting their PubAck
    ack_timeout_s: Positive = 5.0  # a PubAck not back by then counts as a failure (the row is retried)
    retry_initial_s: Positive = 0.1  # backoff after a failure: doubles up to retry_max_s, with jitter
    retry_max_s: Positive = 5.0
    idle_poll_s: Positive = 1.0  # longest pause between reads when nothing wakes the relay
    change_check_s: Positive = 0.02  # SQLite: how soon to look again for commits of other processes...
    change_check_max_s: Positive = 0.25  # ...growing to this while nothing new is seen or nudges come first
    sweep_interval_s: Positive = 30.0  # rescan from the oldest unpublished row at least this often
    retention_s: NonNegative = 3600.0  # published rows are deleted after this long (0: once published)
    cleanup_interval_s: Positive = 60.0
    stats_interval_s: Positive = 2.0  # backlog gauges refresh
    lease_ttl_s: Positive = 4.0  # a standby takes over this long after the leader's last renewal
    # An epoch that gets nowhere (no read, send, settlement or mark) for this long ends as failed, saying
    # what it waited on, and the next one starts on a new connection: no await without an answer holds
    # the relay.
    stall_s: Positive = 15.0
    # Tests only: wait this long after the PubAcks of a batch before marking it published.
    debug_pause_before_mark_s: NonNegative = 0.0

    def __post_init__(self) -> None:
        # The numbers' ranges are their fields' Bounds, checked by the loader; the outboxes are checked here.
        names = [spec.name for spec in self.outboxes]
        for spec in self.outboxes:
            if not _NAME.fullmatch(spec.name):
                raise ConfigError(
                    f"[outbox-relay] outboxes: name {spec.name!r} must be dot-separated tokens of [A-Za-z0-9_-]"
                )
            if not _TABLE.fullmatch(spec.table):
                raise ConfigError(f"[outbox-relay] outboxes: table {spec.table!r} is not a plain SQL identifier")
        if len(set(names)) != len(names):
            raise ConfigError(f"[outbox-relay] outboxes: names must be unique, got {names}")


def resolve_outboxes(settings: OutboxRelaySettings, data_dir: str | Path) -> list[OutboxSpec]:
    """The outboxes to serve, each with a full SQLAlchemy URL."""
    specs = settings.outboxes or [OutboxSpec(name) for name in DEFAULT_OUTBOXES]
    return [OutboxSpec(s.name, database_url(s.database_url, data_dir, s.name), s.table) for s in specs]
