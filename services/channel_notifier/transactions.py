"""The store's transactions: plain functions of a SQLAlchemy ``Connection``, statements built once.

Each implements a transition of :class:`.domain.pending.PendingDelivery` over many rows at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from libs.statements import execute_many

from .domain.channel import Channel
from .domain.records import ATTEMPTS_KEPT
from .schema import (
    DELIVERED,
    ID_TYPE,
    PENDING,
    RECORD_COLUMNS,
    DeliveryAttempt,
    DeliveryRecord,
    DuplicateChannel,
    Settlement,
    attempt_from_row,
    attempts_table,
    channel_from_row,
    channels_table,
    deliveries_table,
    record_from_row,
)

_C = channels_table.c
_D = deliveries_table.c
_A = attempts_table.c


def json_list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


# -- transactions (plain functions of a Connection) ---------------------------------------------------


def list_channels(conn: Connection) -> list[Channel]:
    return [channel_from_row(r) for r in conn.execute(sa.select(channels_table).order_by(_C.name)).all()]


def get_channel(conn: Connection, name: str) -> Channel | None:
    row = conn.execute(sa.select(channels_table).where(_C.name == name)).first()
    return channel_from_row(row) if row else None


def insert_channel(conn: Connection, values: dict[str, Any]) -> Channel:
    try:
        row = conn.execute(sa.insert(channels_table).values(**values).returning(channels_table)).one()
    except IntegrityError:
        raise DuplicateChannel(values["name"]) from None
    return channel_from_row(row)


def update_channel(conn: Connection, channel_id: int, values: dict[str, Any]) -> Channel | None:
    statement = sa.update(channels_table).where(_C.id == channel_id).values(**values).returning(channels_table)
    row = conn.execute(statement).first()
    return channel_from_row(row) if row else None


def delete_channel(conn: Connection, channel_id: int) -> None:
    conn.execute(sa.delete(deliveries_table).where(_D.channel_id == channel_id))
    conn.execute(sa.delete(channels_table).where(_C.id == channel_id))


def delivery_row(channel_id: int, sku: str, version: int, document: bytes, now: float) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "sku": sku,
        "version": version,
        "document": document,
        "delivered_version": 0,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "pending_since": now,
        "updated_at": now,
        "trace_context": None,
    }


def record_statement(insert: Any) -> Any:
    statement = insert(deliveries_table)
    excluded = statement.excluded
    still_pending = _D.status == PENDING
    return statement.on_conflict_do_update(
        index_elements=[_D.channel_id, _D.sku],
        set_={
            "version": excluded.version,
            "document": excluded.document,
            "status": PENDING,
            # A delivery that is failing keeps its backoff (and attempt count) for the newer version.
            "attempts": sa.case((still_pending, _D.attempts), else_=0),
            "next_attempt_at": sa.case((still_pending, _D.next_attempt_at), else_=excluded.next_attempt_at),
            "pending_since": sa.case((still_pending, _D.pending_since), else_=excluded.pending_since),
            "updated_at": excluded.updated_at,
            "trace_context": excluded.trace_context,
        },
        where=excluded.version > _D.version,
    )


def replay_statement(insert: Any) -> Any:
    statement = insert(deliveries_table)
    excluded = statement.excluded
    newer = excluded.version > _D.version
    return statement.on_conflict_do_update(
        index_elements=[_D.channel_id, _D.sku],
        set_={
            "version": sa.case((newer, excluded.version), else_=_D.version),
            "document": sa.case((newer, excluded.document), else_=_D.document),
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": excluded.next_attempt_at,
            "pending_since": excluded.pending_since,
            "updated_at": excluded.updated_at,
        },
    )


_CLAIM_NOW = sa.bindparam("c_now", type_=sa.Float)
_CLAIM = (
    sa.update(deliveries_table)
    .where(
        _D.id.in_(
            sa.select(_D.id)
            .where(
                _D.channel_id == sa.bindparam("c_channel", type_=ID_TYPE),
                _D.status == PENDING,
                _D.next_attempt_at <= _CLAIM_NOW,
                sa.or_(_D.lease_until.is_(None), _D.lease_until < _CLAIM_NOW),
            )
            .order_by(_D.next_attempt_at, _D.id)
            .limit(sa.bindparam("c_limit", type_=sa.Integer))
            .with_for_update(skip_locked=True)
        )
    )
    .values(
        lease_owner=sa.bindparam("c_owner", type_=sa.String(64)), lease_until=sa.bindparam("c_until", type_=sa.Float)
    )
    .returning(_D.id, _D.channel_id, _D.sku, _D.version, _D.document, _D.attempts, _D.pending_since, _D.trace_context)
)

TRACE_CONTEXT = (
    sa.update(deliveries_table)
    .where(
        _D.channel_id == sa.bindparam("t_channel", type_=ID_TYPE),
        _D.sku == sa.bindparam("t_sku", type_=sa.String(512)),
        _D.version == sa.bindparam("t_version", type_=sa.BigInteger),
    )
    .values(trace_context=sa.bindparam("t_context", type_=sa.Text))
)
"""Set the trace context of the (channel, SKU) row that holds that version (a row holding another is left)."""
_DUE_AT = sa.case(
    (sa.and_(_D.lease_until.is_not(None), _D.lease_until > _D.next_attempt_at), _D.lease_until),
    else_=_D.next_attempt_at,
)
_NEXT_DUE = sa.select(sa.func.min(_DUE_AT)).where(
    _D.channel_id == sa.bindparam("c_channel", type_=ID_TYPE), _D.status == PENDING
)


def claim(conn: Connection, channel_id: int, owner: str, limit: int, now: float, lease_s: float) -> list[Any]:
    params = {"c_channel": channel_id, "c_now": now, "c_limit": limit, "c_owner": owner, "c_until": now + lease_s}
    return list(conn.execute(_CLAIM, params).all())


def next_due(conn: Connection, channel_id: int) -> float | None:
    value = conn.execute(_NEXT_DUE, {"c_channel": channel_id}).scalar()
    return float(value) if value is not None else None


_B_ID = sa.bindparam("b_id", type_=ID_TYPE)
_B_OWNER = sa.bindparam("b_owner", type_=sa.String(64))
_B_NOW = sa.bindparam("b_now", type_=sa.Float)
_B_CODE = sa.bindparam("b_code", type_=sa.Integer)
_B_ERROR = sa.bindparam("b_error", type_=sa.Text)
_B_SENT = sa.bindparam("b_sent", type_=sa.BigInteger)
_HELD = (_D.id == _B_ID, _D.lease_owner == _B_OWNER)
_NEXT_SEQ = _D.attempt_seq + sa.literal_column("1", sa.BigInteger)  # constants inline: fewer bound parameters
_COUNTED = _D.attempt_seq + sa.bindparam("b_tried", type_=sa.Integer)
"""A row's attempt count after a settlement: one more when it carries an attempt."""

_SETTLE_SUCCESS = (
    sa.update(deliveries_table)
    .where(*_HELD)
    .values(
        delivered_version=sa.case((_D.delivered_version < _B_SENT, _B_SENT), else_=_D.delivered_version),
        status=sa.case((_D.version > _B_SENT, PENDING), else_=DELIVERED),
        pending_since=sa.case((_D.version > _B_SENT, _B_NOW), else_=sa.null()),
        attempts=0,
        next_attempt_at=_B_NOW,
        lease_owner=None,
        lease_until=None,
        last_status=_B_CODE,
        last_error=None,
        delivered_at=_B_NOW,
        updated_at=_B_NOW,
        attempt_seq=_COUNTED,
    )
)
_SETTLE_FAILURE = (
    sa.update(deliveries_table)
    .where(*_HELD)
    .values(
        status=sa.bindparam("b_status", type_=sa.String(16)),
        attempts=sa.bindparam("b_attempts", type_=sa.Integer),
        next_attempt_at=sa.bindparam("b_next", type_=sa.Float),
        lease_owner=None,
        lease_until=None,
        last_status=_B_CODE,
        last_error=_B_ERROR,
        updated_at=_B_NOW,
        attempt_seq=_COUNTED,
    )
)
_SETTLE_RELEASE = (
    sa.update(deliveries_table)
    .where(*_HELD)
    .values(
        lease_owner=None,
        lease_until=None,
        next_attempt_at=sa.case(
            (_D.next_attempt_at > sa.bindparam("b_next", type_=sa.Float), _D.next_attempt_at),
            else_=sa.bindparam("b_next", type_=sa.Float),
        ),
        last_error=sa.func.coalesce(_B_ERROR, _D.last_error),
        updated_at=_B_NOW,
        attempt_seq=_COUNTED,
    )
)


_SETTLE_DROP = sa.delete(deliveries_table).where(*_HELD)


def attempt_statement(insert: Any) -> Any:
    """Keep an attempt in its row's ring (the slot of its number, :func:`.domain.records.attempt_slot`),
    while the settling owner still holds the row's lease; run before the settlements that count it."""
    columns = ["delivery_id", "slot", "seq", "channel_id", "attempt", "started_at"]
    columns += ["status_code", "latency_ms", "error", "outcome"]
    source = sa.select(
        _D.id,
        _NEXT_SEQ % sa.literal_column(str(ATTEMPTS_KEPT), sa.Integer),
        _NEXT_SEQ,
        _D.channel_id,
        sa.bindparam("a_attempt", type_=sa.Integer),
        sa.bindparam("a_started", type_=sa.Float),
        sa.bindparam("a_code", type_=sa.Integer),
        sa.bindparam("a_latency", type_=sa.Float),
        sa.bindparam("a_error", type_=sa.Text),
        sa.bindparam("a_outcome", type_=sa.String(16)),
    ).where(*_HELD)
    statement = insert(attempts_table).from_select(columns, source)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_A.delivery_id, _A.slot], set_={name: excluded[name] for name in columns[2:]}
    )


def settle(conn: Connection, settlements: Sequence[Settlement], attempt_upsert: Any) -> None:
    """Write a batch of results: first the attempts they record, each in the slot after the row's newest,
    then the rows (which count them); a handful of statements for the whole batch."""
    successes, failures, releases, drops, attempts = [], [], [], [], []
    for s in settlements:
        base = {"b_id": s.delivery_id, "b_owner": s.owner, "b_now": s.now, "b_tried": 0 if s.attempt is None else 1}
        if s.attempt is not None and not s.dropped:
            a = s.attempt
            attempts.append(
                {
                    "b_id": s.delivery_id,
                    "b_owner": s.owner,
                    "a_attempt": a.attempt,
                    "a_started": a.started_at,
                    "a_code": a.status_code,
                    "a_latency": a.latency_ms,
                    "a_error": a.error,
                    "a_outcome": a.outcome,
                }
            )
        if s.dropped:
            drops.append({"b_id": s.delivery_id, "b_owner": s.owner})
        elif s.succeeded:
            successes.append({**base, "b_code": s.status_code, "b_sent": s.sent_version})
        elif s.failure is not None:
            failures.append(
                {
                    **base,
                    "b_code": s.status_code,
                    "b_error": s.error,
                    "b_status": s.failure.status.value,
                    "b_attempts": s.failure.attempts,
                    "b_next": s.failure.next_attempt_at,
                }
            )
        else:
            releases.append({**base, "b_error": s.error, "b_next": max(s.now, s.not_before or s.now)})
    for statement, params in (
        (attempt_upsert, attempts),
        (_SETTLE_SUCCESS, successes),
        (_SETTLE_FAILURE, failures),
        (_SETTLE_RELEASE, releases),
        (_SETTLE_DROP, drops),
    ):
        if params:
            execute_many(conn, statement, params)


def records(conn: Connection, *where: Any, limit: int = 1000) -> list[DeliveryRecord]:
    statement = sa.select(*RECORD_COLUMNS).where(*where).order_by(_D.id).limit(limit)
    return [record_from_row(r) for r in conn.execute(statement).all()]


def attempts(conn: Connection, delivery_ids: Sequence[int], per_delivery: int) -> dict[int, list[DeliveryAttempt]]:
    """The newest ``per_delivery`` kept attempts of each row, newest first (rows without any left out)."""
    found: dict[int, list[DeliveryAttempt]] = {}
    for start in range(0, len(delivery_ids), 500):
        statement = (
            sa.select(attempts_table)
            .where(_A.delivery_id.in_(delivery_ids[start : start + 500]))
            .order_by(_A.delivery_id, _A.seq.desc())
        )
        for row in conn.execute(statement).all():
            kept = found.setdefault(int(row.delivery_id), [])
            if len(kept) < per_delivery:
                kept.append(attempt_from_row(row))
    return found


def resend(conn: Connection, where: Any, now: float) -> int:
    result = conn.execute(
        sa.update(deliveries_table)
        .where(where)
        .values(status=PENDING, attempts=0, next_attempt_at=now, pending_since=now, updated_at=now)
    )
    return max(result.rowcount or 0, 0)
