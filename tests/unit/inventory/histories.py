"""Random commerce histories for the property tests, and an in-memory inventory to run them on.

A history is a list of segments: a stock event (receipt, adjustment) or one order's whole life
(created, then paid / failed / cancelled, shipped, returned…), each event stamped with the producer's
time in history order, except the "late" ones: a stale payment failure delivered after the success but
stamped before it, an ``order.created`` sent again under a new id. Deliveries are built from it: in
order, with each order's own events shuffled and duplicates thrown in, or in any order at all.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from libs.profiles.canonical import StockReceived
from services.inventory.adapters.wire import Envelope
from services.inventory.consumer import incoming
from services.inventory.domain.ledger import CartResult, Result
from services.inventory.domain.model import LedgerEntry, LedgerKind, ReservationState
from services.inventory.domain.workspace import Outcome, Workspace
from services.inventory.service_layer import handlers
from services.inventory.service_layer.unit_of_work import Scope, Transaction

T = TypeVar("T")

SKUS = ("A", "B", "C.red")
BASE_TS = 1_790_000_000.0


def envelope(event_type: str, event_id: str, data: dict, *, ts: float = BASE_TS, seq: int = 0) -> Envelope:
    """A COMMERCE message exactly as ingress writes it for a Commerce Engine webhook."""
    body = json.dumps({"id": event_id, "event_type": event_type, "created_at": ts, "data": data}).encode()
    headers = {
        "Nats-Msg-Id": f"ce:{event_id}",
        "Stockwire-Source": "ce",
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
    }
    return Envelope(f"commerce.ce.{event_type}", body, headers, seq)


@dataclass
class Segment:
    events: list[Envelope]
    order_id: str | None = None


@dataclass
class History:
    segments: list[Segment]

    def in_order(self) -> list[Envelope]:
        return [e for segment in self.segments for e in segment.events]

    def event_types(self) -> dict[str, str]:
        """Every event's type by its message id (the ``source`` of the ledger rows it causes)."""
        return {e.msg_id: e.event_type for e in self.in_order()}

    def receipts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for e in self.in_order():
            if e.event_type == "inventory.received":
                data = json.loads(e.body)["data"]
                totals[data["sku"]] = totals.get(data["sku"], 0) + data["qty"]
        return totals


def _with_seq(events: Iterable[Envelope]) -> list[Envelope]:
    return [Envelope(e.subject, e.body, e.headers, i + 1) for i, e in enumerate(events)]


def shuffled_per_order(history: History, rng: random.Random, duplicate_p: float) -> list[Envelope]:
    """Each order's events in any order (orders keep their places); some events delivered again later."""
    out: list[Envelope] = []
    for segment in history.segments:
        events = list(segment.events)
        if segment.order_id is not None:
            rng.shuffle(events)
        out.extend(events)
    return _with_seq(_duplicated(out, rng, duplicate_p))


def any_interleaving(history: History, rng: random.Random, duplicate_p: float) -> list[Envelope]:
    events = history.in_order()
    rng.shuffle(events)
    return _with_seq(_duplicated(events, rng, duplicate_p))


def _duplicated(events: list[Envelope], rng: random.Random, p: float) -> list[Envelope]:
    out = list(events)
    for event in events:
        if rng.random() < p:
            first = out.index(event)
            out.insert(rng.randint(first + 1, len(out)), event)
    return out


# --- strategies ------------------------------------------------------------------------------------
_LIFECYCLES = (
    (),
    ("payment.failed",),
    ("order.cancelled",),
    ("payment.successful",),
    ("payment.captured", "order.cancelled"),
    ("payment.successful", "shipment.shipped"),
    ("payment.captured", "order.fulfilled", "return"),
    ("payment.successful", "shipment.shipped", "return", "return"),
    # A failed attempt, then a successful retry.
    ("payment.failed", "payment.successful"),
    ("payment.failed", "payment.captured", "shipment.shipped"),
    # Late: a failure stamped before the success but delivered after it; a resent order.created.
    ("payment.successful", "late:payment.failed"),
    ("payment.captured", "late:payment.failed", "shipment.shipped"),
    ("payment.successful", "shipment.shipped", "late:payment.failed"),
    ("payment.successful", "late:payment.failed", "order.cancelled"),
    ("payment.successful", "late:order.created"),
    ("payment.successful", "shipment.shipped", "late:order.created", "return"),
)


@st.composite
def histories(draw: st.DrawFn, max_segments: int = 14) -> History:
    segments: list[Segment] = []
    counter = iter(range(10**6))
    ts = iter(BASE_TS + i for i in range(10**6))
    count = draw(st.integers(1, max_segments))
    for _ in range(count):
        kind = draw(st.sampled_from(("receipt", "receipt", "adjust", "order", "order", "order")))
        n = next(counter)
        if kind == "receipt":
            data = {"sku": draw(st.sampled_from(SKUS)), "qty": draw(st.integers(1, 4))}
            segments.append(Segment([envelope("inventory.received", f"r{n}", data, ts=next(ts))]))
        elif kind == "adjust":
            sku = draw(st.sampled_from(SKUS))
            if draw(st.booleans()):
                data = {"sku": sku, "delta": draw(st.integers(-3, 3).filter(bool))}
            else:
                counted = BASE_TS + draw(st.integers(0, 40))
                data = {"sku": sku, "on_hand": draw(st.integers(0, 8)), "counted_at": counted}
            segments.append(Segment([envelope("inventory.adjusted", f"a{n}", data, ts=next(ts))]))
        else:
            order_id = f"o{n}"
            lines = draw(
                st.lists(
                    st.fixed_dictionaries({"sku": st.sampled_from(SKUS), "qty": st.integers(1, 3)}),
                    min_size=1,
                    max_size=3,
                )
            )
            created_ts = next(ts)
            paid_ts = created_ts
            order = {"order_id": order_id, "lines": lines}
            events = [envelope("order.created", f"{order_id}-c", order, ts=created_ts)]
            # Returns never give back more than was shipped (what a real shop sends).
            returnable = {}
            for line in lines:
                returnable[line["sku"]] = returnable.get(line["sku"], 0) + line["qty"]
            for i, step in enumerate(draw(st.sampled_from(_LIFECYCLES))):
                if step == "return":
                    sku = draw(st.sampled_from(sorted(returnable)))
                    if returnable[sku] == 0:
                        continue
                    qty = draw(st.integers(1, returnable[sku]))
                    returnable[sku] -= qty
                    data = {"order_id": order_id, "lines": [{"sku": sku, "qty": qty}], "restock": draw(st.booleans())}
                    events.append(envelope("return.received", f"{order_id}-{i}", data, ts=next(ts)))
                elif step == "late:order.created":
                    events.append(envelope("order.created", f"{order_id}-{i}", order, ts=created_ts))
                elif step.startswith("late:"):
                    # Stamped just before the success it is delivered after.
                    events.append(envelope(step[5:], f"{order_id}-{i}", {"order_id": order_id}, ts=paid_ts - 0.5))
                else:
                    stamp = next(ts)
                    if step.startswith("payment.") and step != "payment.failed":
                        paid_ts = stamp
                    events.append(envelope(step, f"{order_id}-{i}", {"order_id": order_id}, ts=stamp))
            segments.append(Segment(events, order_id))
    return History(segments)


# --- the in-memory inventory ----------------------------------------------------------------------
def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a handler over :class:`MemoryUnitOfWork`) to its end, at once."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("the coroutine suspended: only in-memory work can be run this way")


@dataclass
class MemoryUnitOfWork:
    """The unit of work of the unit tests (and its transaction): every row kept in memory, the same
    handlers as the store's.

    One workspace holds the whole state (it loads nothing: everything is there). What a transaction
    changed is kept once written; a transaction whose body raises, or a savepoint left by an
    exception, is undone from a copy taken when it began.
    """

    ws: Workspace = field(default_factory=lambda: Workspace(strict=False))
    ledger: list[LedgerEntry] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def _snapshot(self) -> tuple[Workspace, int, dict[str, Outcome]]:
        return copy.deepcopy(self.ws), len(self.ledger), dict(self.outcomes)

    def _restore(self, snapshot: tuple[Workspace, int, dict[str, Outcome]]) -> None:
        self.ws, length, self.outcomes = snapshot
        del self.ledger[length:]

    async def run(self, work: Callable[[Transaction], T]) -> T:
        with self.savepoint():
            return work(self)

    def load(self, scope: Scope, *, now: float, expire: bool) -> tuple[Workspace, list[str]]:
        overdue = sorted(k for k, r in self.ws.reservations.items() if r.overdue(now)) if expire else []
        return self.ws, overdue

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        before = self._snapshot()
        try:
            yield
        except BaseException:
            self._restore(before)
            raise

    def write(self, ws: Workspace, *, now: float) -> int:
        """Keep what ``ws`` changed; it keeps no outbox (0 rows)."""
        self.ledger.extend(ws.entries)
        for msg_id, record in ws.new_inbox.items():
            self.outcomes[msg_id] = record.outcome
        for msg_id, (outcome, _detail, _at) in ws.settled_parked.items():
            self.outcomes[msg_id] = outcome
        ws.clear_changes()
        return 0


@dataclass
class MemoryInventory:
    """The service's handlers on a :class:`MemoryUnitOfWork`: what the store does, minus the database."""

    now: float = BASE_TS
    ttl_s: float = 900.0
    uow: MemoryUnitOfWork = field(default_factory=MemoryUnitOfWork)
    received: dict[str, int] = field(default_factory=dict)
    profiles: SourceProfiles = field(default_factory=lambda: SourceProfiles({}))
    """No source configured: every source speaks the canonical dialect (see :func:`commerce_engine`)."""

    @classmethod
    def commerce_engine(cls, source: str = "ce") -> MemoryInventory:
        """An inventory whose ``source`` speaks Commerce Engine's own payloads; others the canonical one."""
        return cls(profiles=SourceProfiles({source: SourceSettings(profile="commerce-engine")}))

    @property
    def ws(self) -> Workspace:
        return self.uow.ws

    @property
    def ledger(self) -> list[LedgerEntry]:
        return self.uow.ledger

    @property
    def outcomes(self) -> dict[str, Outcome]:
        return self.uow.outcomes

    def reserve(self, reservation_id: str, lines: Mapping[str, int], hold_s: float) -> CartResult:
        result, _rows = run_now(
            handlers.reserve(self.uow, reservation_id, lines, hold_s, now=self.now, ttl_s=self.ttl_s)
        )
        return result

    def release(self, reservation_id: str) -> CartResult:
        result, _rows = run_now(handlers.release(self.uow, reservation_id, now=self.now, ttl_s=self.ttl_s))
        return result

    def deliver(self, envelope: Envelope) -> Result:
        item = incoming(envelope, self.profiles)
        [result] = run_now(handlers.apply_batch(self.uow, [item], now=self.now, ttl_s=self.ttl_s)).results
        payload = item.event.payload
        if result.outcome is Outcome.APPLIED and isinstance(payload, StockReceived):
            self.received[payload.sku] = self.received.get(payload.sku, 0) + payload.quantity
        return result

    def deliver_all(self, envelopes: Sequence[Envelope]) -> list[Result]:
        return [self.deliver(e) for e in envelopes]

    def expire_overdue(self) -> int:
        expired, _rows = run_now(handlers.expire_overdue(self.uow, now=self.now, ttl_s=self.ttl_s))
        return expired

    def quantities(self) -> dict[str, tuple[int, int, int]]:
        return {
            sku: (s.on_hand, s.reserved, s.committed)
            for sku, s in sorted(self.ws.skus.items())
            if (s.on_hand, s.reserved, s.committed) != (0, 0, 0) or s.version
        }

    def parked(self) -> int:
        return self.ws.parked_count()


_LEAVE_COMMITTED = {
    LedgerKind.DEDUCTED: ("shipment.shipped", "order.fulfilled"),
    LedgerKind.RELEASED: ("order.cancelled",),
}


def check_invariants(
    quantities: dict[str, tuple[int, int, int]],
    ledger: Sequence[LedgerEntry],
    received: dict[str, int],
    reservations: Iterable[tuple[str, ReservationState, dict[str, int]]],
    event_types: Mapping[str, str] | None = None,
) -> None:
    """available >= 0; on_hand = receipts + adjustments + restocked returns - deducted; reserved +
    committed = what the open reservations hold, and each reservation's own ledger rows say the same.
    Given the event types by message id: committed stock leaves only through a shipment (deducted) or
    a cancellation (released), never through a payment failure, an expiry or anything else."""
    if event_types is not None:
        for entry in ledger:
            if entry.committed_delta < 0:
                allowed = _LEAVE_COMMITTED.get(entry.kind, ())
                cause = event_types.get(entry.source, entry.source)
                assert cause in allowed, f"{entry.sku} v{entry.version}: {entry.kind.value} of committed by {cause}"
    on_hand_by_kind: dict[tuple[str, LedgerKind], int] = {}
    by_reservation: dict[tuple[str, str], list[int]] = {}
    for entry in ledger:
        key = (entry.sku, entry.kind)
        on_hand_by_kind[key] = on_hand_by_kind.get(key, 0) + entry.on_hand_delta
        if entry.reservation is not None:
            sums = by_reservation.setdefault((entry.reservation, entry.sku), [0, 0])
            sums[0] += entry.reserved_delta
            sums[1] += entry.committed_delta
    held: dict[str, list[int]] = {}
    open_holds: dict[tuple[str, str], list[int]] = {}
    for key, state, lines in reservations:
        for sku, qty in lines.items():
            if state is ReservationState.RESERVED:
                held.setdefault(sku, [0, 0])[0] += qty
                open_holds[key, sku] = [qty, 0]
            elif state is ReservationState.COMMITTED:
                held.setdefault(sku, [0, 0])[1] += qty
                open_holds[key, sku] = [0, qty]
    for sku in set(quantities) | set(held) | set(received):
        on_hand, reserved, committed = quantities.get(sku, (0, 0, 0))
        assert on_hand - reserved - committed >= 0, f"{sku}: oversold {quantities[sku]}"
        assert reserved >= 0 and committed >= 0
        expected_on_hand = (
            received.get(sku, 0)
            + on_hand_by_kind.get((sku, LedgerKind.ADJUSTED), 0)
            + on_hand_by_kind.get((sku, LedgerKind.RETURNED), 0)
            + on_hand_by_kind.get((sku, LedgerKind.DEDUCTED), 0)  # deductions are negative deltas
        )
        assert on_hand == expected_on_hand, f"{sku}: on_hand {on_hand} != {expected_on_hand}"
        assert [reserved, committed] == held.get(sku, [0, 0]), f"{sku}: {quantities.get(sku)} vs holds {held.get(sku)}"
    for key in set(open_holds) | set(by_reservation):
        assert by_reservation.get(key, [0, 0]) == open_holds.get(key, [0, 0]), f"{key}: ledger and reservation differ"
