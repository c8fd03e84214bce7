"""The ground truth: from what the producer delivered and which orders inventory accepted, the final stock.

The ledger rules of design §4, applied to sets rather than sequences: given the delivered events and
inventory's decision on each order, every SKU's final ``on_hand``, ``reserved`` and ``committed`` are
fixed, whatever order the events were applied in. A decision is whether ``order.created`` reserved
the order, and — because a reservation's TTL runs on inventory's clock — whether it expired before
its payment, and whether a payment after expiry found the stock gone. The assumptions that make this
true are the simulator's, and it keeps them:

- absolute counts are delivered (and applied) before any other movement of their SKU in the run;
- write-offs (negative deltas) are applied after the receipts and before the sale, so inventory never
  has to clamp them to what is available;
- shipments and returns are only sent for orders inventory accepted, shipments only after a payment.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .plan import Webhook

__all__ = [
    "Decision",
    "Expectation",
    "GroundTruth",
    "Mismatch",
    "OrderState",
    "StockLevels",
    "compare_levels",
    "oversold_units",
]

_PAID = frozenset({"payment.successful", "payment.captured"})
_SHIPPED = frozenset({"shipment.shipped", "order.fulfilled"})


@dataclass(frozen=True, slots=True)
class StockLevels:
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.committed)

    @property
    def oversold(self) -> int:
        """Units promised (reserved or committed) beyond what is on hand."""
        return max(0, self.reserved + self.committed - self.on_hand)

    def as_dict(self) -> dict[str, int]:
        return {
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "committed": self.committed,
            "available": self.available,
        }


class OrderState(enum.Enum):
    REJECTED = "rejected"
    RESERVED = "reserved"
    EXPIRED = "expired"
    RELEASED = "released"
    COMMITTED = "committed"
    SHIPPED = "shipped"


@dataclass(frozen=True, slots=True)
class Decision:
    """What inventory did with one order, as read back from it."""

    accepted: bool
    """``order.created`` reserved every line (False: rejected for want of stock)."""
    expired: bool = False
    """The reservation's TTL passed before a payment arrived."""
    rejected_later: bool = False
    """A payment after expiry found the stock gone, and the order was rejected then."""


@dataclass
class _Order:
    lines: dict[str, int] = field(default_factory=dict)
    created: bool = False
    paid: bool = False
    failed: bool = False
    cancelled: bool = False
    shipped: bool = False
    returns: list[dict[str, int]] = field(default_factory=list)
    """Restocked units per SKU, one mapping per return."""


@dataclass(frozen=True)
class Expectation:
    levels: dict[str, StockLevels]
    states: dict[str, OrderState]
    undecided: list[str]
    """Orders delivered but not (yet) known accepted or rejected: the expectation is incomplete."""
    anomalies: list[str]
    """Delivered events the rules cannot place (e.g. a shipment whose payment never arrived)."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    sku: str
    field: str
    expected: int
    actual: int | None

    def __str__(self) -> str:
        return f"{self.sku}: {self.field} expected {self.expected}, ledger has {self.actual}"


def _summed(lines: Iterable[Mapping[str, Any]], restock_default: bool | None = None) -> dict[str, int]:
    """Units per SKU; with ``restock_default`` set, only the lines that go back on the shelf."""
    out: dict[str, int] = defaultdict(int)
    for line in lines:
        if restock_default is None or bool(line.get("restock", restock_default)):
            out[str(line["sku"])] += int(line["qty"])
    return dict(out)


class GroundTruth:
    """Records every event the producer got a 2xx for; each event id counts once."""

    def __init__(self, baseline: Mapping[str, StockLevels] | None = None) -> None:
        self.baseline = dict(baseline or {})
        self.delivered: set[str] = set()
        self._received: dict[str, int] = defaultdict(int)
        self._deltas: dict[str, int] = defaultdict(int)
        self._counts: dict[str, tuple[str, int]] = {}
        self._orders: dict[str, _Order] = defaultdict(_Order)
        self.skus: set[str] = set(self.baseline)

    def record(self, webhook: Webhook) -> bool:
        """Take a delivered event into account; False if it was already recorded."""
        if webhook.event_id in self.delivered:
            return False
        self.delivered.add(webhook.event_id)
        data, kind = webhook.data, webhook.event_type
        if kind == "inventory.received":
            self._received[data["sku"]] += int(data["qty"])
            self.skus.add(data["sku"])
        elif kind == "inventory.adjusted":
            self.skus.add(data["sku"])
            if "delta" in data:
                self._deltas[data["sku"]] += int(data["delta"])
            else:
                latest = self._counts.get(data["sku"])
                if latest is None or str(data["counted_at"]) > latest[0]:
                    self._counts[data["sku"]] = (str(data["counted_at"]), int(data["on_hand"]))
        elif "order_id" in data:
            self._record_order(kind, data)
        return True

    def _record_order(self, kind: str, data: Mapping[str, Any]) -> None:
        order = self._orders[str(data["order_id"])]
        if kind == "order.created":
            order.created = True
            order.lines = _summed(data["lines"])
            self.skus.update(order.lines)
        elif kind in _PAID:
            order.paid = True
        elif kind == "payment.failed":
            order.failed = True
        elif kind == "order.cancelled":
            order.cancelled = True
        elif kind in _SHIPPED:
            order.shipped = True
        elif kind == "return.received":
            order.returns.append(_summed(data["lines"], bool(data.get("restock", False))))

    @property
    def order_ids(self) -> list[str]:
        return [oid for oid, order in self._orders.items() if order.created]

    def order_lines(self, order_id: str) -> dict[str, int]:
        return dict(self._orders[order_id].lines) if order_id in self._orders else {}

    def _state(self, order: _Order, decision: Decision) -> OrderState:
        if not decision.accepted:
            return OrderState.REJECTED
        if decision.expired and not order.paid:
            return OrderState.EXPIRED
        if order.paid and decision.rejected_later:
            return OrderState.REJECTED
        # From here the order holds its stock (a payment after expiry took it again).
        # A successful payment outlives any failure of the order, whatever the order they came in (design §4).
        if (order.failed and not order.paid) or (order.cancelled and not order.shipped):
            return OrderState.RELEASED
        if order.shipped and order.paid:
            return OrderState.SHIPPED
        if order.paid:
            return OrderState.COMMITTED
        return OrderState.RESERVED

    def expected(self, decisions: Mapping[str, Decision]) -> Expectation:
        """Final levels per SKU, given inventory's decision on every delivered order."""
        on_hand = {sku: self.baseline.get(sku, StockLevels()).on_hand for sku in self.skus}
        reserved = {sku: self.baseline.get(sku, StockLevels()).reserved for sku in self.skus}
        committed = {sku: self.baseline.get(sku, StockLevels()).committed for sku in self.skus}
        for sku, (_, count) in self._counts.items():
            on_hand[sku] = count
        for sku, qty in self._received.items():
            on_hand[sku] += qty
        for sku, delta in self._deltas.items():
            on_hand[sku] += delta
        states: dict[str, OrderState] = {}
        undecided: list[str] = []
        anomalies: list[str] = []
        for oid, order in self._orders.items():
            if not order.created:
                anomalies.append(f"{oid}: follow-up events delivered but order.created never was")
                continue
            decision = decisions.get(oid)
            if decision is None:
                undecided.append(oid)
                continue
            state = self._state(order, decision)
            states[oid] = state
            if order.shipped and not order.paid and decision.accepted:
                anomalies.append(f"{oid}: shipped but no payment was delivered")
            for sku, qty in order.lines.items():
                if state is OrderState.RESERVED:
                    reserved[sku] += qty
                elif state is OrderState.COMMITTED:
                    committed[sku] += qty
                elif state is OrderState.SHIPPED:
                    on_hand[sku] -= qty
            if state is OrderState.SHIPPED:
                for restocked in order.returns:
                    for sku, qty in restocked.items():
                        on_hand[sku] += qty
            elif order.returns and decision.accepted:
                anomalies.append(f"{oid}: return delivered for an order that was not shipped")
        levels = {sku: StockLevels(on_hand[sku], reserved[sku], committed[sku]) for sku in sorted(self.skus)}
        return Expectation(levels, states, sorted(undecided), anomalies)


def compare_levels(expected: Mapping[str, StockLevels], actual: Mapping[str, StockLevels | None]) -> list[Mismatch]:
    """Every field of every SKU where the ledger differs from the ground truth."""
    out: list[Mismatch] = []
    for sku, want in sorted(expected.items()):
        have = actual.get(sku)
        for name in ("on_hand", "reserved", "committed", "available"):
            wanted = getattr(want, name)
            got = None if have is None else getattr(have, name)
            if got != wanted:
                out.append(Mismatch(sku, name, wanted, got))
    return out


def oversold_units(levels: Iterable[StockLevels]) -> int:
    return sum(level.oversold for level in levels)
