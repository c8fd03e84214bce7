"""The ground truth: from what the producer delivered and which orders inventory accepted, the final stock.

The ledger's rules (:mod:`.order_rules`), applied to sets rather than sequences: given the delivered
events and inventory's decision on each order, every SKU's final ``on_hand``, ``reserved`` and
``committed`` are fixed, whatever order the events were applied in. A decision is whether
``order.created`` reserved the order, and — because a reservation's TTL runs on inventory's clock —
whether it expired before it was committed, and whether a commitment after expiry found the stock
gone. Every webhook is read as the canonical event its source's profile makes of it. The assumptions
that make this true are the simulator's, and it keeps them:

- absolute counts are delivered (and applied) before any other movement of their SKU in the run;
- write-offs (negative deltas) are applied after the receipts and before the sale, so inventory never
  has to clamp them to what is available;
- shipments and returns are only sent for orders inventory accepted, after their payment;
- backordered units: once everything is delivered, either every unit an order still waits for is
  held, or nothing of the SKU is available (stock that turns up goes to backorders first). Which
  order got the units does not matter to the totals as long as the orders waiting are all committed
  (or all merely reserved): the Commerce Engine generator only puts backorder lines on orders that
  are paid and never completed.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.profiles import Profile, load_profile
from libs.profiles.canonical import CanonicalEvent, StockAdjusted, StockReceived, Unmapped

from .order_rules import Backorder, Decision, OrderRecord, OrderState, order_effect, order_state
from .plan import Webhook, envelope

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

# A hand-built webhook that carries no canonical event is read through its profile, dated long ago:
# the envelope's time only stands in for a count's time when the count gives none.
_LONG_AGO = "2000-01-01T00:00:00Z"


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


@functools.cache
def _profile(name: str) -> Profile:
    return load_profile(name)


def canonical(webhook: Webhook) -> CanonicalEvent:
    """What ``webhook`` means: the event the generator attached, else what its profile reads."""
    if webhook.event is not None:
        return webhook.event
    return _profile(webhook.dialect).map_body(envelope(webhook, _LONG_AGO)).event


class GroundTruth:
    """Records every event the producer got a 2xx for; each event id counts once."""

    def __init__(self, baseline: Mapping[str, StockLevels] | None = None) -> None:
        self.baseline = dict(baseline or {})
        self.delivered: set[str] = set()
        self._received: Counter[str] = Counter()
        self._deltas: Counter[str] = Counter()
        self._counts: dict[str, tuple[float, int]] = {}
        self._orders: dict[str, OrderRecord] = {}
        self._seq = itertools.count()
        self.skus: set[str] = set(self.baseline)

    def record(self, webhook: Webhook) -> bool:
        """Take a delivered event into account; False if it was already recorded."""
        if webhook.event_id in self.delivered:
            return False
        self.delivered.add(webhook.event_id)
        event = canonical(webhook)
        if isinstance(event, StockReceived):
            self._received[event.sku] += event.quantity
            self.skus.add(event.sku)
        elif isinstance(event, StockAdjusted):
            self._adjusted(event)
        elif not isinstance(event, Unmapped):
            order = self._orders.get(event.order_key)
            if order is None:
                order = self._orders[event.order_key] = OrderRecord()
            self.skus.update(order.record(event, next(self._seq)))
        return True

    def _adjusted(self, event: StockAdjusted) -> None:
        self.skus.add(event.sku)
        if event.delta is not None:
            self._deltas[event.sku] += event.delta
            return
        assert event.on_hand is not None
        counted_at = event.counted_at if event.counted_at is not None else float("-inf")
        latest = self._counts.get(event.sku)
        if latest is None or counted_at > latest[0]:
            self._counts[event.sku] = (counted_at, event.on_hand)

    @property
    def order_ids(self) -> list[str]:
        return [oid for oid, order in self._orders.items() if order.placed is not None]

    def expected(self, decisions: Mapping[str, Decision]) -> Expectation:
        """Final levels per SKU, given inventory's decision on every delivered order."""
        on_hand = Counter({sku: self.baseline.get(sku, StockLevels()).on_hand for sku in self.skus})
        reserved = Counter({sku: self.baseline.get(sku, StockLevels()).reserved for sku in self.skus})
        committed = Counter({sku: self.baseline.get(sku, StockLevels()).committed for sku in self.skus})
        for sku, (_, count) in self._counts.items():
            on_hand[sku] = count
        on_hand.update(self._received)
        on_hand.update(self._deltas)
        states: dict[str, OrderState] = {}
        undecided: list[str] = []
        anomalies: list[str] = []
        backorders: dict[str, list[Backorder]] = defaultdict(list)
        for oid, order in self._orders.items():
            if order.placed is None:
                anomalies.append(f"{oid}: follow-up events delivered but order.created never was")
                continue
            decision = decisions.get(oid)
            if decision is None:
                undecided.append(oid)
                continue
            state = states[oid] = order_state(order, decision)
            effect = order_effect(oid, order, state)
            on_hand.update(effect.on_hand)
            reserved.update(effect.reserved)
            committed.update(effect.committed)
            anomalies += effect.anomalies
            for backorder in effect.backorders:
                backorders[backorder.sku].append(backorder)
        for sku, waiting in backorders.items():
            anomalies += _fill(sku, waiting, on_hand, reserved, committed)
        levels = {sku: StockLevels(on_hand[sku], reserved[sku], committed[sku]) for sku in sorted(self.skus)}
        return Expectation(levels, states, sorted(undecided), anomalies)


def _fill(
    sku: str, waiting: list[Backorder], on_hand: Counter[str], reserved: Counter[str], committed: Counter[str]
) -> list[str]:
    """Hold what stock allows of the units ``waiting`` for ``sku``, oldest order first."""
    wanted = sum(b.units for b in waiting)
    free = max(0, min(wanted, on_hand[sku] - reserved[sku] - committed[sku]))
    anomalies = []
    if free < wanted and any(b.must_be_filled for b in waiting):
        anomalies.append(f"{sku}: backordered units shipped or completed while {wanted - free} still wait for stock")
    for backorder in sorted(waiting, key=lambda b: b.seq):
        take = min(free, backorder.units)
        free -= take
        (committed if backorder.committed else reserved)[sku] += take
    return anomalies


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
