"""Writing back what a transaction changed: one multi-row statement per table.

Outbox rows go last, after every lock the transaction takes (the relay's commit-order rule on
PostgreSQL relies on that; see libs/outbox.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from libs.outbox import add_to_outbox_sync
from libs.statements import execute_many

from ..domain.ledger import iso_time
from ..domain.messages import outbox_messages
from ..domain.workspace import Workspace
from . import schema

__all__ = ["write_changes"]


_encoder = msgspec.json.Encoder(order="sorted")


def _json(value: Mapping[str, object]) -> str:
    """Compact JSON with sorted keys (what ``json.dumps(sort_keys=True)`` writes, at a tenth of its cost)."""
    return _encoder.encode(value).decode()


def _length(column: sa.Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int)
    return length


def _insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# Each statement is built once per dialect: execute_many keeps what it worked out per statement object.
@functools.cache
def _upsert_statement(dialect: str, table: sa.Table, key: str) -> Any:
    insert = _insert(dialect, table)
    update = {c.name: insert.excluded[c.name] for c in table.columns if c.name != key}
    return insert.on_conflict_do_update(index_elements=[key], set_=update)


@functools.cache
def _inbox_insert(dialect: str) -> Any:
    return _insert(dialect, schema.inbox).on_conflict_do_nothing(index_elements=["msg_id"])


_LEDGER_INSERT = sa.insert(schema.ledger)
_PARKED_INSERT = sa.insert(schema.parked)
_INBOX_REPLACE = (
    sa.update(schema.inbox)
    .where(schema.inbox.c.msg_id == sa.bindparam("b_msg_id"))
    .values(
        stream_seq=sa.bindparam("b_seq"),
        subject=sa.bindparam("b_subject"),
        event_type=sa.bindparam("b_type"),
        order_id=sa.bindparam("b_order"),
        outcome=sa.bindparam("b_outcome"),
        detail=sa.bindparam("b_detail"),
        settled_at=sa.bindparam("b_at"),
    )
)
_INBOX_SETTLE = (
    sa.update(schema.inbox)
    .where(schema.inbox.c.msg_id == sa.bindparam("b_msg_id"))
    .values(outcome=sa.bindparam("b_outcome"), detail=sa.bindparam("b_detail"), settled_at=sa.bindparam("b_at"))
)


def _upsert(conn: Connection, table: sa.Table, rows: list[dict[str, object]], key: str) -> None:
    execute_many(conn, _upsert_statement(conn.dialect.name, table, key), rows)


def _write_backorders(conn: Connection, ws: Workspace) -> None:
    t = schema.backorders
    changed = sorted(ws.backorder_changes)
    for order, sku in changed:
        conn.execute(sa.delete(t).where(t.c.order_key == order, t.c.sku == sku))
    rows = [
        {"order_key": b.order, "sku": b.sku, "qty": b.qty, "since": b.since, "seq": b.seq}
        for b in (ws.backorder_changes[key] for key in changed)
        if b is not None
    ]
    if rows:
        conn.execute(sa.insert(t), rows)


def write_changes(conn: Connection, ws: Workspace, now: float) -> int:
    """Write everything the workspace changed; returns how many outbox rows were added."""
    if ws.entries:
        execute_many(
            conn,
            _LEDGER_INSERT,
            [
                {
                    "sku": e.sku,
                    "version": e.version,
                    "kind": e.kind.value,
                    "qty": e.qty,
                    "on_hand_delta": e.on_hand_delta,
                    "reserved_delta": e.reserved_delta,
                    "committed_delta": e.committed_delta,
                    "reservation": e.reservation,
                    "source": e.source,
                    "occurred_at": e.occurred_at,
                    "reason": e.reason,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in ws.entries
            ],
        )
    if ws.dirty_skus:
        rows = []
        for name in sorted(ws.dirty_skus):
            s = ws.skus[name]
            rows.append(
                {
                    "sku": s.sku,
                    "on_hand": s.on_hand,
                    "reserved": s.reserved,
                    "committed": s.committed,
                    "version": s.version,
                    "last_hash": s.last_hash,
                    "counted_at": s.counted_at,
                    "backordered": s.backordered,
                    "updated_at": now,
                }
            )
        _upsert(conn, schema.skus, rows, "sku")
    if ws.dirty_reservations:
        rows = []
        for key in sorted(ws.dirty_reservations):
            r = ws.reservations[key]
            rows.append(
                {
                    "key": r.key,
                    "state": r.state.value,
                    "lines": _json(r.lines),
                    "returned": _json(r.returned),
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                    "expires_at": r.expires_at,
                    "detail": _json(r.detail_json()),
                }
            )
        _upsert(conn, schema.reservations, rows, "key")
    if ws.new_inbox:
        execute_many(
            conn,
            _inbox_insert(conn.dialect.name),
            [
                {
                    "msg_id": r.msg_id,
                    "stream_seq": r.stream_seq,
                    # Diagnostic columns: an unhandled type may be longer than they keep (the key is bounded).
                    "subject": r.subject[: _length(schema.inbox.c.subject)],
                    "event_type": r.event_type[: _length(schema.inbox.c.event_type)],
                    "order_id": r.order_id,
                    "outcome": r.outcome.value,
                    "detail": r.detail,
                    "settled_at": r.settled_at,
                }
                for r in ws.new_inbox.values()
            ],
        )
    if ws.replaced_inbox:
        # A replayed dead letter: its inbox row now says what the replay did.
        execute_many(
            conn,
            _INBOX_REPLACE,
            [
                {
                    "b_msg_id": record.msg_id,
                    "b_seq": record.stream_seq,
                    "b_subject": record.subject[: _length(schema.inbox.c.subject)],
                    "b_type": record.event_type[: _length(schema.inbox.c.event_type)],
                    "b_order": record.order_id,
                    "b_outcome": record.outcome.value,
                    "b_detail": record.detail,
                    "b_at": record.settled_at,
                }
                for record in (ws.new_inbox[msg_id] for msg_id in sorted(ws.replaced_inbox))
            ],
        )
    if ws.backorder_changes:
        _write_backorders(conn, ws)
    if ws.settled_parked:
        execute_many(
            conn,
            _INBOX_SETTLE,
            [
                {"b_msg_id": msg_id, "b_outcome": outcome.value, "b_detail": detail, "b_at": at}
                for msg_id, (outcome, detail, at) in ws.settled_parked.items()
            ],
        )
    if ws.new_parked:
        execute_many(
            conn,
            _PARKED_INSERT,
            [
                {
                    "msg_id": msg_id,
                    "order_key": key,
                    "subject": p.event.envelope.subject if p.event.envelope else "",
                    "stream_seq": p.event.stream_seq,
                    "headers": json.dumps(dict(p.event.envelope.headers) if p.event.envelope else {}),
                    "body": p.event.envelope.body if p.event.envelope else b"",
                    "reason": p.reason,
                    "parked_at": p.parked_at,
                    "dead_lettering": False,
                }
                for msg_id, (key, p) in ws.new_parked.items()
            ],
        )
    if ws.removed_parked:
        t = schema.parked
        conn.execute(sa.delete(t).where(t.c.msg_id.in_(sorted(ws.removed_parked))))
    messages = outbox_messages(ws, iso_time(now))
    if messages:
        add_to_outbox_sync(conn, schema.outbox, messages, now=now)
    return len(messages)
