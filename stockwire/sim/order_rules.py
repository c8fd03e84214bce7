"""What one order does to stock, by the ledger's rules, once everything about it has been delivered.

An :class:`OrderRecord` gathers the canonical events of one order (any arrival order, each counted
once); :func:`order_state` says where the order ended, given inventory's :class:`Decision` on it; and
:func:`order_effect` says what it did to each SKU. The rules (docs/design.md §4), whichever dialect the
events came in (the profile already wrote the difference into them):

- placed: per SKU, paid and free units of physical and bundle lines; digital lines hold nothing.
  Units of backorder lines are held as far as stock allows and the rest waits for stock (filled
  oldest order first whenever stock turns up); the model settles that per SKU (:class:`Backorder`).
  An order placed already confirmed or paid commits at once.
- a confirmation or a successful payment commits the order, and outlives any failure; a failed
  payment releases an uncommitted order only when it says so (Stockwire's dialect; Commerce Engine
  retries payments); retries and refunds move nothing. A cancellation releases every held unit not
  yet shipped, and its backorders; an order shipped or completed ignores it.
- a shipment, keyed by its reference, leaves stock (on hand and committed) the first time it is seen
  in a status from ``shipped`` on, once; ``return_to_origin`` puts its units back on hand, ``lost``
  does not; a shipment waits until the order is committed. Stockwire's ``shipment.shipped`` takes
  the whole order off the shelf.
- a return puts units back on hand once it is ``complete`` or received, once per request, products
  resolved to SKUs through the order's own lines, at most what was shipped and not returned yet;
  Stockwire's ``return.received`` restocks the lines it says, once the order has shipped.
- a completion takes whatever is still committed and no shipment reported off the shelf.

A reservation whose TTL ran out before it was committed holds nothing; a commitment after expiry takes
the stock again, unless inventory found it gone (``Decision.rejected_later``).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from libs.profiles.canonical import (
    SHIPPED_STATUSES,
    CanonicalEvent,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentSucceeded,
    Return,
    ReturnReceived,
    Shipment,
    ShipmentItem,
)

__all__ = [
    "SHIPPED_STATUSES",
    "Backorder",
    "Decision",
    "Effect",
    "OrderRecord",
    "OrderState",
    "order_effect",
    "order_state",
]


class OrderState(enum.Enum):
    REJECTED = "rejected"
    RESERVED = "reserved"
    EXPIRED = "expired"
    RELEASED = "released"
    COMMITTED = "committed"
    SHIPPED = "shipped"
    """Nothing of it is held any more: shipped as a whole, or completed."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What inventory did with one order, as read back from it."""

    accepted: bool
    """``order.created`` reserved the order (False: rejected for want of stock)."""
    expired: bool = False
    """The reservation's TTL passed before the order was committed."""
    rejected_later: bool = False
    """A commitment after expiry found the stock gone, and the order was rejected then."""


@dataclass
class _Shipment:
    units: Counter[str] = field(default_factory=Counter)
    left: bool = False
    back: bool = False
    """Came back to origin: its units are on hand again."""


@dataclass
class OrderRecord:
    """Everything delivered about one order (each event id once; the first placement wins)."""

    placed: OrderPlaced | None = None
    placed_seq: int = 0
    """Rank of the placement among the run's orders (backorders are filled oldest first)."""
    paid: bool = False
    confirmed: bool = False
    failed: bool = False
    """A failed payment that releases the hold (``PaymentFailed.release``)."""
    cancelled: bool = False
    completed: bool = False
    shipped_whole: bool = False
    shipments: dict[str, _Shipment] = field(default_factory=dict)
    returns: dict[str, Return] = field(default_factory=dict)
    """Requests that came back (``complete`` or received), the first such report of each."""
    restocked: list[Counter[str]] = field(default_factory=list)
    """Stockwire's dialect: units put back on the shelf, per return."""

    def _sku(self, item: ShipmentItem) -> str | None:
        """The item's SKU, or its product's in the order's lines (an item may name only its product)."""
        if item.sku is not None or self.placed is None:
            return item.sku
        for line in self.placed.lines:
            if line.product_id == item.product_id and item.variant_id in (None, line.variant_id):
                return line.sku
        return None

    def record(self, event: CanonicalEvent, seq: int) -> set[str]:
        """Take ``event`` in; returns the SKUs it names that hold stock."""
        if isinstance(event, OrderPlaced):
            if self.placed is None:
                self.placed, self.placed_seq = event, seq
            return {line.sku for line in event.lines if line.product_type != "digital"}
        if isinstance(event, Shipment):
            shipment = self.shipments.setdefault(event.reference, _Shipment())
            items = [(self._sku(item), item.units) for item in event.items]
            shipment.units = Counter({sku: 0 for sku, _ in items if sku is not None})
            for sku, units in items:
                if sku is not None:
                    shipment.units[sku] += units
            shipment.left |= event.status in SHIPPED_STATUSES
            shipment.back |= event.status == "return_to_origin"
            return set(shipment.units)
        if isinstance(event, Return):
            if event.status == "complete" or event.received_at is not None:
                self.returns.setdefault(event.request_number, event)
        elif isinstance(event, ReturnReceived):
            self.restocked.append(Counter({line.sku: line.quantity for line in event.lines if event.restocks(line)}))
            return {line.sku for line in event.lines}
        else:
            self._flag(event)
        return set()

    def _flag(self, event: CanonicalEvent) -> None:
        self.paid |= isinstance(event, PaymentSucceeded)
        self.confirmed |= isinstance(event, OrderConfirmed)
        self.failed |= isinstance(event, PaymentFailed) and event.release
        self.cancelled |= isinstance(event, OrderCancelled)
        self.completed |= isinstance(event, OrderCompleted)
        self.shipped_whole |= isinstance(event, OrderShipped)

    @property
    def committed(self) -> bool:
        """Reserved → committed: a payment, a confirmation, or placed so."""
        return self.paid or self.confirmed or (self.placed is not None and self.placed.confirmed)

    def units(self, backorder: bool) -> Counter[str]:
        """Stocked units per SKU of the lines that are (or are not) backorders."""
        out: Counter[str] = Counter()
        for line in self.placed.lines if self.placed else ():
            if line.product_type != "digital" and line.backorder == backorder:
                out[line.sku] += line.quantity
        return out


def order_state(order: OrderRecord, decision: Decision) -> OrderState:
    if not decision.accepted:
        return OrderState.REJECTED
    if decision.expired and not order.committed:
        return OrderState.EXPIRED
    if order.committed and decision.rejected_later:
        return OrderState.REJECTED
    # From here the order holds its stock (a commitment after expiry took it again).
    if not order.committed:
        return OrderState.RELEASED if order.failed or order.cancelled else OrderState.RESERVED
    done = order.shipped_whole or order.completed
    if order.cancelled and not done:
        return OrderState.RELEASED
    return OrderState.SHIPPED if done else OrderState.COMMITTED


@dataclass(frozen=True, slots=True)
class Backorder:
    """Units of one SKU an order still waits for (some of them may have been filled)."""

    seq: int
    sku: str
    units: int
    committed: bool
    must_be_filled: bool = False
    """The order already shipped or completed some of its backordered units: they must have been there."""


@dataclass
class Effect:
    on_hand: Counter[str] = field(default_factory=Counter)
    """Change of on_hand per SKU."""
    reserved: Counter[str] = field(default_factory=Counter)
    committed: Counter[str] = field(default_factory=Counter)
    backorders: list[Backorder] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)


def order_effect(oid: str, order: OrderRecord, state: OrderState) -> Effect:
    """What the order, ended in ``state``, did to each SKU."""
    effect = Effect()
    firm, waiting = order.units(backorder=False), order.units(backorder=True)
    gone = [shipment for shipment in order.shipments.values() if shipment.left]
    if not order.committed or state in (OrderState.REJECTED, OrderState.EXPIRED):
        # An order rejected after all (committed after expiry, the stock gone) ignores its shipments;
        # shipments of an order never committed are the simulator's mistake.
        sent = gone or order.returns or order.shipped_whole or order.restocked
        if sent and not order.committed and state is not OrderState.REJECTED:
            effect.anomalies.append(f"{oid}: shipments or returns delivered for an order inventory never committed")
        if state is OrderState.RESERVED:
            effect.reserved.update(firm)
            effect.backorders += _waiting(order, waiting, committed=False)
        return effect
    left: Counter[str] = Counter()
    for shipment in gone:
        left.update(shipment.units)
        effect.on_hand.subtract(shipment.units)
        if shipment.back:
            effect.on_hand.update(shipment.units)
    effect.on_hand.update(_returned(oid, order, effect))
    if order.restocked and not order.shipped_whole:
        effect.anomalies.append(f"{oid}: return delivered for an order that was not shipped")
    if order.shipped_whole and state is OrderState.SHIPPED:
        effect.on_hand.subtract(firm)
        for restocked in order.restocked:
            effect.on_hand.update(restocked)
        return effect
    if state is OrderState.RELEASED:
        return effect
    still_waiting: Counter[str] = Counter()
    must_be_filled: set[str] = set()
    for sku in firm | waiting:
        from_firm = min(left[sku], firm[sku])
        from_waiting = left[sku] - from_firm
        if from_waiting > waiting[sku]:
            effect.anomalies.append(f"{oid}: shipments carry {left[sku]} units of {sku}, the order has fewer")
        if from_waiting or (order.completed and waiting[sku]):
            must_be_filled.add(sku)
        if order.completed:
            # Whatever is still committed and no shipment reported leaves the shelf too.
            effect.on_hand[sku] -= max(0, firm[sku] + waiting[sku] - left[sku])
        else:
            effect.committed[sku] += firm[sku] - from_firm
            still_waiting[sku] = max(0, waiting[sku] - from_waiting)
    effect.backorders += _waiting(order, still_waiting, committed=True, must_be_filled=must_be_filled)
    return effect


def _waiting(
    order: OrderRecord, units: Counter[str], *, committed: bool, must_be_filled: set[str] | None = None
) -> list[Backorder]:
    return [
        Backorder(order.placed_seq, sku, n, committed, sku in (must_be_filled or set()))
        for sku, n in units.items()
        if n > 0
    ]


def _returned(oid: str, order: OrderRecord, effect: Effect) -> Counter[str]:
    """Units back on hand from the order's returns, by SKU: at most what left and was not back already."""
    assert order.placed is not None
    by_product = {(line.product_id, line.variant_id): line.sku for line in order.placed.lines}
    by_id: dict[str | None, set[str]] = {}
    for line in order.placed.lines:
        by_id.setdefault(line.product_id, set()).add(line.sku)
    returnable: Counter[str] = Counter()
    for shipment in order.shipments.values():
        if shipment.left and not shipment.back:
            returnable.update(shipment.units)
    back: Counter[str] = Counter()
    for request in sorted(order.returns):
        for item in order.returns[request].items:
            sku = by_product.get((item.product_id, item.variant_id))
            if sku is None and len(by_id.get(item.product_id, ())) == 1:
                (sku,) = by_id[item.product_id]
            if sku is None:
                effect.anomalies.append(f"{oid}: return {request} names {item.product_id}, not in the order")
                continue
            units = min(item.quantity, returnable[sku] - back[sku])
            back[sku] += max(0, units)
    return back
