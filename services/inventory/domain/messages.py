"""What inventory tells the world: one ``inventory.<kind>`` event per ledger row (and per rejected
order line), and an ``inventory.availability`` snapshot per SKU whose available stock changed.

Message ids are derived from the SKU's version, so writing the same change twice (a retried
transaction) yields the same ids and JetStream's de-duplication keeps one copy.
"""

from __future__ import annotations

from libs.contracts import (
    AvailabilityChanged,
    InventoryEvent,
    availability_msg_id,
    availability_subject,
    encode,
    inventory_event_msg_id,
    rejection_msg_id,
)
from libs.outbox import OutboxMessage
from libs.subjects import inventory_subject

from .model import LedgerEntry, ReservationKind, order_ref, split_key
from .workspace import Workspace

__all__ = ["entry_event", "outbox_messages"]

_HEADERS = {"Content-Type": "application/json"}


def entry_event(entry: LedgerEntry) -> InventoryEvent:
    order_id = order_source = reservation_id = None
    if entry.reservation is not None:
        kind, ref = split_key(entry.reservation)
        if kind is ReservationKind.ORDER:
            order_source, order_id = order_ref(ref)
        else:
            reservation_id = ref
    return InventoryEvent(
        kind=entry.kind.value,
        sku=entry.sku,
        qty=entry.qty,
        version=entry.version,
        occurred_at=entry.occurred_at,
        order_id=order_id,
        order_source=order_source,
        reservation_id=reservation_id,
        source_event_id=entry.source,
        reason=entry.reason or None,
    )


def _headers(ws: Workspace, source: str | None) -> dict[str, str]:
    """The message headers, with the trace context of the event ``source`` (its msg_id) when it has one."""
    extra = ws.trace.get(source) if source is not None else None
    return {**_HEADERS, **extra} if extra else _HEADERS


def outbox_messages(ws: Workspace, occurred_at: str) -> list[OutboxMessage]:
    out = [
        OutboxMessage(
            inventory_subject(entry.kind.value, entry.sku),
            inventory_event_msg_id(entry.sku, entry.version),
            encode(entry_event(entry)),
            _headers(ws, entry.source) if ws.trace else _HEADERS,
        )
        for entry in ws.entries
    ]
    out += [
        OutboxMessage(
            inventory_subject("rejected", event.sku),
            rejection_msg_id(event),
            encode(event),
            _headers(ws, event.source_event_id) if ws.trace else _HEADERS,
        )
        for event in ws.rejections
    ]
    # A SKU's snapshot follows from its last ledger row of the transaction (the event that caused it).
    last_source = {entry.sku: entry.source for entry in ws.entries} if ws.trace else {}
    for state in ws.changed_availability():
        snapshot = AvailabilityChanged(
            sku=state.sku,
            version=state.version,
            available=state.available,
            on_hand=state.on_hand,
            reserved=state.reserved,
            committed=state.committed,
            occurred_at=occurred_at,
            cause=ws.cause.get(state.sku, ""),
        )
        out.append(
            OutboxMessage(
                availability_subject(state.sku),
                availability_msg_id(state.sku, state.version),
                encode(snapshot),
                _headers(ws, last_source.get(state.sku)) if ws.trace else _HEADERS,
            )
        )
    return out
