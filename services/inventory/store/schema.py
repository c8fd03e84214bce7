"""Inventory's tables (SQLAlchemy Core), and the versioned migrations that create them."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from libs.outbox import create_outbox_schema, outbox_table
from libs.subjects import SOURCE_PATTERN as SOURCE_NAME

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "backorders",
    "inbox",
    "ledger",
    "metadata",
    "outbox",
    "parked",
    "reservations",
    "skus",
]

COMPONENT = "inventory"

metadata = sa.MetaData()
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_KEY = 256
_MSG_ID = 600

skus = sa.Table(
    "skus",
    metadata,
    sa.Column("sku", sa.String(_KEY), primary_key=True),
    sa.Column("on_hand", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("committed", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("counted_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Units accepted without stock and waiting for it (version 2).
    sa.Column("backordered", sa.BigInteger, nullable=False, server_default="0"),
    # The last line of defence: whatever a bug or a race might try, the database refuses to oversell.
    sa.CheckConstraint(
        "reserved >= 0 AND committed >= 0 AND on_hand - reserved - committed >= 0", name="ck_skus_never_oversold"
    ),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(_KEY), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("qty", sa.BigInteger, nullable=False),
    sa.Column("on_hand_delta", sa.BigInteger, nullable=False),
    sa.Column("reserved_delta", sa.BigInteger, nullable=False),
    sa.Column("committed_delta", sa.BigInteger, nullable=False),
    sa.Column("reservation", sa.String(_KEY + 8), nullable=True),
    sa.Column("source", sa.String(_MSG_ID), nullable=False),
    sa.Column("occurred_at", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # Two writers that both believed they were next for a SKU cannot both commit.
    sa.UniqueConstraint("sku", "version", name="uq_ledger_sku_version"),
)
sa.Index("ix_ledger_reservation", ledger.c.reservation)
sa.Index("ix_ledger_source", ledger.c.source)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("key", sa.String(_KEY + 8), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("lines", sa.Text, nullable=False),
    sa.Column("returned", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    # Backordered and shipped units, shipments, restocked returns, products -> SKU (JSON; version 2).
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
)
sa.Index("ix_reservations_expires_at", reservations.c.expires_at)

backorders = sa.Table(
    "backorders",
    metadata,
    sa.Column("order_key", sa.String(_KEY + 8), primary_key=True),
    sa.Column("sku", sa.String(_KEY), primary_key=True),
    sa.Column("qty", sa.BigInteger, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.CheckConstraint("qty > 0", name="ck_backorders_positive"),
)
# Filling takes a SKU's backorders oldest first.
sa.Index("ix_backorders_sku_since", backorders.c.sku, backorders.c.since, backorders.c.seq, backorders.c.order_key)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("msg_id", sa.String(_MSG_ID), primary_key=True),
    sa.Column("stream_seq", sa.BigInteger, nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("order_id", sa.String(_KEY), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("settled_at", sa.Float, nullable=False),
)
sa.Index("ix_inbox_order_id", inbox.c.order_id)
sa.Index("ix_inbox_stream_seq", inbox.c.stream_seq)

parked = sa.Table(
    "parked",
    metadata,
    sa.Column("msg_id", sa.String(_MSG_ID), primary_key=True),
    sa.Column("order_key", sa.String(_KEY + 8), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("stream_seq", sa.BigInteger, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("parked_at", sa.Float, nullable=False),
    # Set once the sweeper has given up on it: never applied again, on its way to DEADLETTER.
    sa.Column("dead_lettering", sa.Boolean, nullable=False, default=False),
)
sa.Index("ix_parked_order_key", parked.c.order_key)
sa.Index("ix_parked_parked_at", parked.c.parked_at)

outbox = outbox_table(metadata)


def _create_v1(conn: Connection) -> None:
    for table in (skus, ledger, reservations, inbox, parked):
        table.create(conn, checkfirst=True)
    create_outbox_schema(conn, outbox)


def _backorders_and_shipments_v2(conn: Connection) -> None:
    """Backorders, partial shipments and returns by product (a store of version 1 gains the columns;
    a new one has them from version 1's ``create``)."""
    inspector = sa.inspect(conn)
    for table, column in ((skus, "backordered"), (reservations, "detail")):
        if column not in {c["name"] for c in inspector.get_columns(table.name)}:
            col = table.c[column]
            ddl = col.type.compile(dialect=conn.dialect)
            default = col.server_default.arg if col.server_default is not None else None  # type: ignore[attr-defined]
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column} {ddl} NOT NULL DEFAULT '{default}'"))
    backorders.create(conn, checkfirst=True)
    _shipped_orders_remember_their_units(conn)
    _orders_keyed_by_source(conn)


def _shipped_orders_remember_their_units(conn: Connection) -> None:
    """Version 1 knew an order only as shipped or not: a shipped one shipped all its lines, which is
    what a later return may restock (less what came back already)."""
    r = reservations
    rows = conn.execute(sa.select(r.c.key, r.c.lines).where(r.c.state == "shipped", r.c.detail == "{}")).all()
    for key, lines in rows:
        detail = json.dumps({"shipped": json.loads(lines)}, sort_keys=True, separators=(",", ":"))
        conn.execute(sa.update(r).where(r.c.key == key).values(detail=detail))


def _orders_keyed_by_source(conn: Connection) -> None:
    """Orders recorded as ``order:<id>`` become ``order:<source>:<id>``, the source read from the inbox
    key (``<source>:<event id>``) of an event of the order. Ledger rows keep the key they were written
    with: it is part of their hash (readers look an order's rows up under both)."""
    r, p, i = reservations, parked, inbox
    legacy = [key for (key,) in conn.execute(sa.select(r.c.key).where(r.c.key.like("order:%")))]
    legacy += [key for (key,) in conn.execute(sa.select(p.c.order_key).distinct())]
    for key in sorted(set(legacy)):
        order_id = key.removeprefix("order:")
        first = conn.execute(sa.select(i.c.msg_id).where(i.c.order_id == order_id).limit(1)).scalar()
        source = first.partition(":")[0] if first and ":" in first else ""
        if source and order_id.startswith(f"{source}:"):
            continue  # already keyed by its source
        if not SOURCE_NAME.fullmatch(source):
            source = "unknown"  # no readable source: still one namespace, never merged with a real one
        new_key = f"order:{source}:{order_id}"
        conn.execute(sa.update(r).where(r.c.key == key).values(key=new_key))
        conn.execute(sa.update(p).where(p.c.order_key == key).values(order_key=new_key))
        conn.execute(sa.update(i).where(i.c.order_id == order_id).values(order_id=f"{source}:{order_id}"))


MIGRATIONS = [_create_v1, _backorders_and_shipments_v2]
