"""The slice of state one transaction works on, and a record of everything it changed.

The store loads a workspace (the SKUs, reservations, parked events and inbox entries a batch can
touch), the domain applies events to it, and the store writes back what :class:`Workspace` says
changed. Tests keep one workspace alive across steps as a complete in-memory inventory.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.contracts import InventoryEvent

from .events import CommerceEvent
from .model import Backorder, LedgerEntry, Reservation, SkuState

__all__ = ["InboxRecord", "NotLoaded", "Outcome", "ParkedEvent", "Workspace"]


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    REJECTED = "rejected"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"
    """Not in the inbox: the event is retried (a storage error, a bug)."""


class NotLoaded(LookupError):
    """The store did not load a row the domain needed: a planning bug, never a business outcome."""


@dataclass(slots=True)
class InboxRecord:
    msg_id: str
    stream_seq: int
    subject: str
    event_type: str
    order_id: str | None
    outcome: Outcome
    detail: str
    settled_at: float


@dataclass(slots=True)
class ParkedEvent:
    event: CommerceEvent
    parked_at: float
    reason: str

    @property
    def sort_key(self) -> tuple[float, int, str]:
        # The producer's clock first (it knows the true order of one order's events), then arrival.
        return (self.event.source_ts, self.event.stream_seq, self.event.msg_id)


@dataclass
class Workspace:
    skus: dict[str, SkuState] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    parked: dict[str, dict[str, ParkedEvent]] = field(default_factory=dict)
    """Parked events per order key, by msg_id."""
    inbox: dict[str, Outcome] = field(default_factory=dict)
    """Outcomes of events already in the inbox (only those the batch may meet again)."""
    strict: bool = True
    """Strict: a SKU the store did not load is an error. Otherwise a new SKU starts at zero."""
    loaded_skus: set[str] = field(default_factory=set)
    backorders: dict[str, list[Backorder]] = field(default_factory=dict)
    """Each SKU's backorders, oldest first, as far as they were loaded (every SKU with backordered units)."""

    entries: list[LedgerEntry] = field(default_factory=list)
    rejections: list[InventoryEvent] = field(default_factory=list)
    dirty_skus: set[str] = field(default_factory=set)
    dirty_reservations: set[str] = field(default_factory=set)
    new_inbox: dict[str, InboxRecord] = field(default_factory=dict)
    settled_parked: dict[str, tuple[Outcome, str, float]] = field(default_factory=dict)
    """Inbox rows of formerly parked events whose outcome is now known."""
    new_parked: dict[str, tuple[str, ParkedEvent]] = field(default_factory=dict)
    removed_parked: set[str] = field(default_factory=set)
    settled_events: list[tuple[ParkedEvent, Outcome]] = field(default_factory=list)
    """Every parked event applied or ignored in this transaction, with its outcome (for metrics)."""
    initial_available: dict[str, int] = field(default_factory=dict)
    cause: dict[str, str] = field(default_factory=dict)
    backorder_changes: dict[tuple[str, str], Backorder | None] = field(default_factory=dict)
    """(order key, SKU) -> the backorder as it is now; None: filled or dropped (deleted)."""
    replaced_inbox: set[str] = field(default_factory=set)
    """Inbox rows of dead-lettered events that a replay recorded again."""
    trace: dict[str, Mapping[str, str]] = field(default_factory=dict)
    """Trace context headers (``traceparent``…) by event ``msg_id``: added to the outbox messages that the
    event's ledger rows cause (empty while tracing is off)."""

    # --- reads -------------------------------------------------------------------------------------
    def sku(self, sku: str) -> SkuState:
        state = self.skus.get(sku)
        if state is None:
            if self.strict and sku not in self.loaded_skus:
                raise NotLoaded(f"SKU {sku!r} was not loaded for this transaction")
            state = self.skus[sku] = SkuState(sku)
        if sku not in self.initial_available:
            self.initial_available[sku] = state.available
        return state

    def reservation(self, key: str) -> Reservation | None:
        return self.reservations.get(key)

    def seen(self, msg_id: str) -> Outcome | None:
        record = self.new_inbox.get(msg_id)
        if record is not None:
            return record.outcome
        return self.inbox.get(msg_id)

    def parked_for(self, key: str) -> list[ParkedEvent]:
        return sorted(self.parked.get(key, {}).values(), key=lambda p: p.sort_key)

    def parked_count(self) -> int:
        return sum(len(events) for events in self.parked.values())

    # --- changes -----------------------------------------------------------------------------------
    def touch_sku(self, state: SkuState) -> None:
        self.dirty_skus.add(state.sku)

    def put_reservation(self, reservation: Reservation) -> None:
        self.reservations[reservation.key] = reservation
        self.dirty_reservations.add(reservation.key)

    def backorders_for(self, sku: str) -> list[Backorder]:
        return list(self.backorders.get(sku, ()))

    def put_backorder(self, backorder: Backorder) -> None:
        """Add or change a backorder (``qty`` 0: it is filled or dropped, and removed)."""
        queue = [b for b in self.backorders.get(backorder.sku, []) if b.order != backorder.order]
        if backorder.qty > 0:
            queue.append(backorder)
            queue.sort(key=lambda b: b.sort_key)
        self.backorders[backorder.sku] = queue
        self.backorder_changes[(backorder.order, backorder.sku)] = backorder if backorder.qty > 0 else None

    def record(self, event: CommerceEvent, outcome: Outcome, detail: str, now: float) -> None:
        subject = event.envelope.subject if event.envelope else ""
        if event.msg_id in self.inbox and event.msg_id not in self.new_inbox:
            self.replaced_inbox.add(event.msg_id)
        self.new_inbox[event.msg_id] = InboxRecord(
            event.msg_id, event.stream_seq, subject, event.event_type, event.order_id, outcome, detail, now
        )

    def park(self, key: str, parked: ParkedEvent) -> None:
        self.parked.setdefault(key, {})[parked.event.msg_id] = parked
        self.new_parked[parked.event.msg_id] = (key, parked)

    def settle_parked(self, key: str, parked: ParkedEvent, outcome: Outcome, detail: str, now: float) -> None:
        msg_id = parked.event.msg_id
        self.parked.get(key, {}).pop(msg_id, None)
        self.settled_events.append((parked, outcome))
        if msg_id in self.new_parked:
            # Parked and released within this transaction: only the final outcome is written.
            del self.new_parked[msg_id]
            self.new_inbox[msg_id].outcome = outcome
            self.new_inbox[msg_id].detail = detail
            self.new_inbox[msg_id].settled_at = now
        else:
            self.removed_parked.add(msg_id)
            self.settled_parked[msg_id] = (outcome, detail, now)
            self.inbox[msg_id] = outcome

    def changed_availability(self) -> list[SkuState]:
        """SKUs whose available stock differs from what this transaction started with."""
        return [
            self.skus[sku]
            for sku in sorted(self.dirty_skus)
            if self.skus[sku].available != self.initial_available.get(sku, 0)
        ]

    def clear_changes(self) -> None:
        """Forget the change log (after the store wrote it, or between steps of an in-memory run)."""
        for msg_id, record in self.new_inbox.items():
            self.inbox[msg_id] = record.outcome
        self.entries = []
        self.rejections = []
        self.dirty_skus = set()
        self.dirty_reservations = set()
        self.new_inbox = {}
        self.settled_parked = {}
        self.new_parked = {}
        self.removed_parked = set()
        self.settled_events = []
        self.initial_available = {}
        self.cause = {}
        self.backorder_changes = {}
        self.replaced_inbox = set()
        self.trace = {}
