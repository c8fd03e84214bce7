"""What one transaction announces: an event per ledger row and rejected line, one snapshot per SKU."""

from __future__ import annotations

from libs.contracts import decode_availability, decode_inventory_event
from services.inventory.adapters.wire import parse_event
from services.inventory.domain.ledger import Inventory
from services.inventory.domain.messages import outbox_messages
from services.inventory.domain.model import SkuState
from services.inventory.domain.workspace import Workspace

from .histories import envelope


def _workspace(**stock: int) -> Workspace:
    ws = Workspace(skus={sku: SkuState(sku, on_hand=qty, version=1) for sku, qty in stock.items()})
    ws.loaded_skus = set(stock)
    return ws


def test_movements_become_events_and_one_availability_snapshot_per_sku() -> None:
    ws = _workspace(A=5)
    book = Inventory(ws, now=1000.0, reservation_ttl_s=60)
    for event_id, qty in (("c1", 2), ("c2", 1)):
        data = {"order_id": event_id, "lines": [{"sku": "A", "qty": qty}]}
        book.apply(parse_event(envelope("order.created", event_id, data)))
    messages = outbox_messages(ws, "2026-11-28T10:00:00+00:00")
    assert [(m.subject, m.msg_id) for m in messages] == [
        ("inventory.reserved.A", "inventory:A:2"),
        ("inventory.reserved.A", "inventory:A:3"),
        ("inventory.availability.A", "availability:A:3"),
    ]
    reserved = decode_inventory_event(messages[0].payload)
    assert (reserved.kind, reserved.qty, reserved.order_id, reserved.order_source, reserved.source_event_id) == (
        "reserved",
        2,
        "c1",
        "ce",
        "ce:c1",
    )
    snapshot = decode_availability(messages[-1].payload)
    assert (snapshot.available, snapshot.reserved, snapshot.version, snapshot.cause) == (2, 3, 3, "reserved")


def test_a_rejected_order_announces_each_line_and_no_snapshot() -> None:
    ws = _workspace(A=1, B=5)
    book = Inventory(ws, now=1000.0, reservation_ttl_s=60)
    data = {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}
    book.apply(parse_event(envelope("order.created", "c1", data)))
    messages = outbox_messages(ws, "2026-11-28T10:00:00+00:00")
    assert [(m.subject, m.msg_id) for m in messages] == [
        ("inventory.rejected.A", "rejected:ce:o1:A"),
        ("inventory.rejected.B", "rejected:ce:o1:B"),
    ]
    first = decode_inventory_event(messages[0].payload)
    assert (first.order_id, first.order_source) == ("o1", "ce")
    assert first.reason.startswith("short: 1 available") and first.version == 1
    assert decode_inventory_event(messages[1].payload).reason.startswith("another line is short")


def test_a_commit_moves_no_available_stock_so_no_snapshot() -> None:
    ws = _workspace(A=5)
    book = Inventory(ws, now=1000.0, reservation_ttl_s=60)
    book.apply(parse_event(envelope("order.created", "c1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]})))
    ws.clear_changes()
    book.apply(parse_event(envelope("payment.successful", "p1", {"order_id": "o1"})))
    assert [m.subject for m in outbox_messages(ws, "t")] == ["inventory.committed.A"]


def test_messages_carry_the_trace_context_of_the_event_that_caused_them() -> None:
    ws = _workspace(A=5, B=1)
    ws.trace = {"ce:c1": {"traceparent": "00-t1-s1-01"}}
    book = Inventory(ws, now=1000.0, reservation_ttl_s=60)
    book.apply(parse_event(envelope("order.created", "c1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]})))
    book.apply(parse_event(envelope("order.created", "c2", {"order_id": "o2", "lines": [{"sku": "B", "qty": 5}]})))
    messages = outbox_messages(ws, "2026-11-28T10:00:00+00:00")
    headers = {m.msg_id: m.headers for m in messages}
    assert headers["inventory:A:2"] == {"Content-Type": "application/json", "traceparent": "00-t1-s1-01"}
    assert headers["availability:A:2"] == {"Content-Type": "application/json", "traceparent": "00-t1-s1-01"}
    # An event without a context (here c2, rejected) is announced without one.
    assert headers["rejected:ce:o2:B"] == {"Content-Type": "application/json"}


def test_without_tracing_messages_have_the_plain_headers() -> None:
    ws = _workspace(A=5)
    Inventory(ws, now=1000.0, reservation_ttl_s=60).apply(
        parse_event(envelope("order.created", "c1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}))
    )
    assert all(m.headers == {"Content-Type": "application/json"} for m in outbox_messages(ws, "t"))
