"""The notifier's tables, and the records read from and written to them."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .domain.channel import Channel, ChannelFilters
from .domain.pending import DeliveryStatus
from .domain.records import (
    AttemptRecord,
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryRecord,
    DuplicateChannel,
    Settlement,
)

__all__ = [
    "COMPONENT",
    "DELIVERED",
    "FAILED",
    "ID_TYPE",
    "MIGRATIONS",
    "PENDING",
    "RECORD_COLUMNS",
    "ClaimedDelivery",
    "DeliveryAttempt",
    "DeliveryRecord",
    "DuplicateChannel",
    "Settlement",
    "attempt_from_row",
    "attempts_table",
    "channel_from_row",
    "channels_table",
    "deliveries_table",
    "record_from_row",
]

COMPONENT = "channel-notifier"


_metadata = sa.MetaData()
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

channels_table = sa.Table(
    "channels",
    _metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("secrets", sa.Text, nullable=False, default="[]"),
    sa.Column("filters", sa.Text, nullable=False, default="{}"),
    sa.Column("buffer", sa.Integer, nullable=False, default=0),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

deliveries_table = sa.Table(
    "channel_deliveries",
    _metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("channel_id", ID_TYPE, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sku", sa.String(512), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("document", sa.LargeBinary, nullable=False),
    sa.Column("delivered_version", sa.BigInteger, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("pending_since", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # W3C trace context (JSON headers) of the update this row holds, while [tracing] is on.
    sa.Column("trace_context", sa.Text, nullable=True),
    # Attempts the row ever made (never reset): numbers its kept attempts and picks their slot.
    sa.Column("attempt_seq", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.UniqueConstraint("channel_id", "sku", name="uq_channel_deliveries_channel_sku"),
)
# The claim's whole ORDER BY (next_attempt_at, id), so a claim walks the index and stops at its limit.
# Without `id` PostgreSQL may sort every due row of the channel on each claim when the table has no
# fresh statistics (a catalogue-wide change recorded before autovacuum has looked): tens of
# milliseconds per claim per 100,000 pending rows.
_DUE_INDEX = sa.Index(
    "ix_channel_deliveries_due_order",
    deliveries_table.c.channel_id,
    deliveries_table.c.status,
    deliveries_table.c.next_attempt_at,
    deliveries_table.c.id,
)

attempts_table = sa.Table(
    "channel_delivery_attempts",
    _metadata,
    # A ring of ATTEMPTS_KEPT slots per delivery row, written with the row's settlement and deleted with
    # the row (the foreign key's cascade: a channel deleted, a SKU its filters leave out).
    sa.Column("delivery_id", ID_TYPE, sa.ForeignKey("channel_deliveries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("channel_id", ID_TYPE, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    # SQLite: the rows live in the primary key's b-tree, one insert per attempt rather than two.
    sqlite_with_rowid=False,
)


def _create_schema(conn: Connection) -> None:
    _metadata.create_all(conn, tables=[channels_table, deliveries_table])


def _claim_index_in_claim_order(conn: Connection) -> None:
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_channel_deliveries_due"))
    _DUE_INDEX.create(conn, checkfirst=True)


def _trace_context_column(conn: Connection) -> None:
    columns = {column["name"] for column in sa.inspect(conn).get_columns("channel_deliveries")}
    if "trace_context" not in columns:  # a store created before the column (step 1 now creates it)
        conn.execute(sa.text("ALTER TABLE channel_deliveries ADD COLUMN trace_context TEXT"))


def _attempts(conn: Connection) -> None:
    columns = {column["name"] for column in sa.inspect(conn).get_columns("channel_deliveries")}
    if "attempt_seq" not in columns:  # a store created before the column (step 1 now creates it)
        conn.execute(sa.text("ALTER TABLE channel_deliveries ADD COLUMN attempt_seq BIGINT NOT NULL DEFAULT 0"))
    _metadata.create_all(conn, tables=[attempts_table])


MIGRATIONS = [_create_schema, _claim_index_in_claim_order, _trace_context_column, _attempts]

_C = channels_table.c
_D = deliveries_table.c
PENDING = DeliveryStatus.PENDING.value
DELIVERED = DeliveryStatus.DELIVERED.value
FAILED = DeliveryStatus.FAILED.value


def channel_from_row(row: Any) -> Channel:
    return Channel(
        id=int(row.id),
        name=row.name,
        kind=row.kind,
        url=row.url,
        secrets=tuple(json.loads(row.secrets or "[]")),
        filters=ChannelFilters.from_dict(json.loads(row.filters or "{}")),
        buffer=int(row.buffer),
        enabled=bool(row.enabled),
        disabled_reason=row.disabled_reason,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
    )


def record_from_row(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        id=int(row.id),
        channel_id=int(row.channel_id),
        sku=row.sku,
        version=int(row.version),
        delivered_version=int(row.delivered_version),
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=float(row.next_attempt_at),
        pending_since=row.pending_since,
        last_status=row.last_status,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        updated_at=float(row.updated_at),
    )


RECORD_COLUMNS = (
    _D.id,
    _D.channel_id,
    _D.sku,
    _D.version,
    _D.delivered_version,
    _D.status,
    _D.attempts,
    _D.next_attempt_at,
    _D.pending_since,
    _D.last_status,
    _D.last_error,
    _D.delivered_at,
    _D.updated_at,
)


def attempt_from_row(row: Any) -> DeliveryAttempt:
    record = AttemptRecord(
        attempt=int(row.attempt),
        started_at=float(row.started_at),
        latency_ms=float(row.latency_ms),
        outcome=row.outcome,
        status_code=row.status_code,
        error=row.error,
    )
    return DeliveryAttempt(int(row.delivery_id), int(row.channel_id), int(row.seq), record)
