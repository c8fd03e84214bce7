"""Stockwire's canonical domain events: what a source profile turns a webhook into.

Every producer's payload, whatever its dialect, becomes one of these frozen msgspec Structs; the
inventory domain reads only these. Each field is bounded (lengths, counts, integer ranges) by its
annotation, so a value that maps is a value the ledger can hold. Times are epoch seconds (float).

Facts taken from a vendor (the shipment and return status values) come from Commerce Engine's
Storefront API schema, ``@commercengine/storefront-sdk`` 0.15.0, ``components["schemas"]``
(``ShipmentStatus``, ``OrderReturn.status``, ``OrderItem.product_type``).
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

import msgspec

__all__ = [
    "KEY",
    "KINDS",
    "MAX_ITEMS",
    "MAX_KEY_LENGTH",
    "MAX_QTY",
    "MAX_TIME",
    "ORDER_EVENTS",
    "SHIPPED_STATUSES",
    "SKU",
    "TIME",
    "WIRE_NOT_EMPTY",
    "CanonicalEvent",
    "Disposition",
    "Mapped",
    "OrderCancelled",
    "OrderCompleted",
    "OrderConfirmed",
    "OrderEvent",
    "OrderLine",
    "OrderPlaced",
    "OrderShipped",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentRetried",
    "PaymentSucceeded",
    "ProductType",
    "Return",
    "ReturnItem",
    "ReturnLine",
    "ReturnReceived",
    "ReturnStatus",
    "Shipment",
    "ShipmentItem",
    "ShipmentStatus",
    "StockAdjusted",
    "StockReceived",
    "Unmapped",
]

MAX_QTY = 1_000_000_000
"""The largest quantity (units) one line, item or adjustment may carry."""
MAX_ITEMS = 500
"""The most lines or items one event may carry."""
MAX_KEY_LENGTH = 200
"""The longest identifier (order key, SKU, reference, product id …), in characters."""
MAX_TIME = 253_402_300_799.0
"""9999-12-31T23:59:59Z in epoch seconds: later times are refused."""

# No control characters (C0, C1) nor line/paragraph separators: keys end up in logs, subjects and
# URLs. \A…\Z, not ^…$: `$` would accept a trailing newline.
_PRINTABLE = r"\A[^\x00-\x1f\x7f-\x9f\u2028\u2029]+\Z"

WIRE_NOT_EMPTY = "wire_not_empty"
"""The ``extra`` mark of a list field whose list on the wire must not be empty, although the profile may
select none of its elements (Shopify's lines without a SKU)."""

KEY = msgspec.Meta(
    min_length=1,
    max_length=MAX_KEY_LENGTH,
    pattern=_PRINTABLE,
    description="an identifier: a string, or an integer written as its decimal string",
)
SKU = msgspec.Meta(
    min_length=1, max_length=MAX_KEY_LENGTH, pattern=_PRINTABLE, description="a SKU: a string, never a number"
)
TIME = msgspec.Meta(ge=0.0, le=MAX_TIME, description="epoch seconds; ISO 8601 text is read into it")

Key = Annotated[str, KEY]
Sku = Annotated[str, SKU]
Time = Annotated[float, TIME]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_QTY)]

ProductType = Literal["physical", "digital", "bundle"]
ShipmentStatus = Literal[
    "unscheduled",
    "schedule_requested",
    "scheduled",
    "packed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivery_attempted",
    "undelivered",
    "return_to_origin",
    "delivered",
    "cancelled",
    "lost",
]
ReturnStatus = Literal["created", "approved", "rejected", "complete", "cancelled"]
SHIPPED_STATUSES: frozenset[str] = frozenset(
    {
        "shipped",
        "in_transit",
        "out_for_delivery",
        "delivery_attempted",
        "undelivered",
        "delivered",
        "return_to_origin",
        "lost",
    }
)
"""The shipment statuses from ``shipped`` on: the shipment's units have left the warehouse, whether it is then
delivered, comes back or is lost (``ShipmentStatus``)."""


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    pass


class _OrderEvent(_Event, frozen=True, kw_only=True):
    order_key: Key
    """The order as its producer names it (Commerce Engine: ``order_number``)."""


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a placed order.

    ``quantity`` is every unit that leaves the shelf, paid or free (Commerce Engine: ``quantity +
    free_quantity``). ``digital`` lines hold no stock. ``backorder`` marks a line the store accepted
    without stock. ``product_id``/``variant_id`` are kept so a return that names products (not SKUs)
    can be resolved through the order's own lines.
    """

    sku: Sku
    quantity: Quantity
    product_type: ProductType = "physical"
    backorder: bool = False
    product_id: Key | None = None
    variant_id: Key | None = None
    restocked: Count = 0
    """Units of the line that refunds have put back so far: a running total, not one refund's own
    (WooCommerce's ``_restock_refunded_items``). Only what exceeds the total already applied moves."""


class OrderPlaced(_OrderEvent, frozen=True, kw_only=True):
    """A new order: its lines, up to :data:`MAX_ITEMS` of them."""

    lines: Annotated[tuple[OrderLine, ...], msgspec.Meta(max_length=MAX_ITEMS, extra={WIRE_NOT_EMPTY: True})]
    """Empty only when the profile selected none of the order's lines as stock (an order of a gift card
    only): recorded, nothing is held. An order that carries no line at all does not map."""
    reservation_id: Key | None = None
    """A checkout reservation the order takes over, if the producer names one."""
    confirmed: bool = False
    """The order was already confirmed or paid when it was placed (Commerce Engine: an ``Order`` whose
    ``status`` is past ``confirmed``, or whose ``payment_status`` is ``success``): it commits at once.
    Sent again for an order already placed (a producer that sends the whole order on each change, as
    WooCommerce does), it commits that order."""
    completed: bool = False
    """The order was already complete when this was sent: every unit has left the warehouse (Shopify:
    ``fulfillment_status`` ``fulfilled``; WooCommerce: status ``completed``). Placed, committed and
    shipped at once, or, for an order already placed, shipped as ``order_completed`` would."""


class OrderConfirmed(_OrderEvent, frozen=True, kw_only=True):
    """The store confirmed the order."""


class OrderCancelled(_OrderEvent, frozen=True, kw_only=True):
    """The store cancelled the order."""


class OrderCompleted(_OrderEvent, frozen=True, kw_only=True):
    """The store considers the order complete (everything delivered)."""


class PaymentSucceeded(_OrderEvent, frozen=True, kw_only=True):
    """The order is paid."""


class PaymentFailed(_OrderEvent, frozen=True, kw_only=True):
    """A payment attempt for the order failed."""

    release: bool = False
    """Whether the failure gives the order's hold back at once. Commerce Engine retries payments
    (``payment.retried``), so there the hold stays until the order is cancelled or its reservation
    expires; Stockwire's own dialect releases (``release = "`true`"`` in its profile)."""


class PaymentRetried(_OrderEvent, frozen=True, kw_only=True):
    """The customer tries to pay the order again."""


class PaymentRefunded(_OrderEvent, frozen=True, kw_only=True):
    """A refund of the order moved (initiated, succeeded or failed); refunds move no stock."""


class ShipmentItem(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one SKU in a shipment: ``quantity`` paid and ``free_quantity`` free.

    The item names its SKU, or its product (``product_id``, ``variant_id``), resolved through the
    order's own lines: Commerce Engine's ``ShipmentItem`` marks every field optional.
    """

    sku: Annotated[str, SKU] | None = None
    product_id: Key | None = None
    variant_id: Key | None = None
    quantity: Count
    free_quantity: Count = 0

    def __post_init__(self) -> None:
        if self.sku is None and self.product_id is None:
            raise ValueError("a shipment item names its 'sku' or its 'product_id'")

    @property
    def units(self) -> int:
        """Every unit of the SKU in the shipment, paid or free."""
        return self.quantity + self.free_quantity


class Shipment(_OrderEvent, frozen=True, kw_only=True):
    """One shipment of an order, in its current ``status``; sent again each time the status moves.

    ``reference`` names the shipment (Commerce Engine: ``reference_number``): a shipment's items leave
    stock once however many times it is reported.
    """

    reference: Key
    status: ShipmentStatus
    items: Annotated[tuple[ShipmentItem, ...], msgspec.Meta(max_length=MAX_ITEMS)]
    """Empty when none of its items is stock (a gift card's fulfilment): recorded, nothing moves."""


class OrderShipped(_OrderEvent, frozen=True, kw_only=True):
    """The whole order left the warehouse (a producer that does not report shipments one by one)."""


Disposition = Literal["restock", "no_restock", "cancel"]


class ReturnItem(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a returned or refunded product: named by ``sku``, or by product (``product_id``,
    ``variant_id``) resolved through the order's lines (Commerce Engine's ``OrderReturnItem`` names
    products only).

    ``disposition`` says what happens to the units (Shopify's ``restock_type``): ``restock`` — they
    came back from a shipment and are sellable again; ``no_restock`` — refunded, not put back;
    ``cancel`` — never shipped: the order's hold on them is given back.
    """

    sku: Annotated[str, SKU] | None = None
    product_id: Key | None = None
    variant_id: Key | None = None
    quantity: Quantity
    shipment_number: Key | None = None
    """The shipment the units came back from."""
    disposition: Disposition = "restock"

    def __post_init__(self) -> None:
        if self.sku is None and self.product_id is None:
            raise ValueError("a return item names its 'sku' or its 'product_id'")


class Return(_OrderEvent, frozen=True, kw_only=True):
    """A return request and how far it got: units come back once ``status`` is ``complete`` or
    ``received_at`` is set."""

    request_number: Key
    status: ReturnStatus
    received_at: Time | None = None
    items: Annotated[tuple[ReturnItem, ...], msgspec.Meta(max_length=MAX_ITEMS)]
    """Empty when none of its items is stock (a refund of shipping only): recorded, nothing moves."""


class ReturnLine(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one SKU back in the warehouse; ``restock`` None: as the return says."""

    sku: Sku
    quantity: Quantity
    restock: bool | None = None


class ReturnReceived(_OrderEvent, frozen=True, kw_only=True):
    """Units of an order are back, named by SKU; restocked only where the return says so."""

    lines: Annotated[tuple[ReturnLine, ...], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    restock: bool = False
    """The default for lines that do not say (restocking is opt-in)."""

    def restocks(self, line: ReturnLine) -> bool:
        """Whether ``line``'s units become sellable again."""
        return self.restock if line.restock is None else line.restock


class StockReceived(_Event, frozen=True, kw_only=True):
    """Units of a SKU arrived (a receipt)."""

    sku: Sku
    quantity: Quantity


class StockAdjusted(_Event, frozen=True, kw_only=True):
    """A correction: either a signed ``delta``, or an absolute count ``on_hand`` taken at ``counted_at``."""

    sku: Sku
    delta: Annotated[int, msgspec.Meta(ge=-MAX_QTY, le=MAX_QTY)] | None = None
    on_hand: Count | None = None
    counted_at: Time | None = None

    def __post_init__(self) -> None:
        if (self.delta is None) == (self.on_hand is None):
            raise ValueError("an adjustment carries either 'delta' or 'on_hand', exactly one of them")


class Unmapped(_Event, frozen=True, kw_only=True):
    """An event type the profile does not map: kept and counted, never applied."""

    event_type: str


OrderEvent = (
    OrderPlaced
    | OrderConfirmed
    | OrderCancelled
    | OrderCompleted
    | PaymentSucceeded
    | PaymentFailed
    | PaymentRetried
    | PaymentRefunded
    | Shipment
    | OrderShipped
    | Return
    | ReturnReceived
)
"""The events that name an order (``order_key``); the others are stock events or :class:`Unmapped`."""
CanonicalEvent = OrderEvent | StockReceived | StockAdjusted | Unmapped
"""Every event a profile builds."""
ORDER_EVENTS: tuple[type[_OrderEvent], ...] = typing.get_args(OrderEvent)

KINDS: dict[str, type[msgspec.Struct]] = {
    "order_placed": OrderPlaced,
    "order_confirmed": OrderConfirmed,
    "order_cancelled": OrderCancelled,
    "order_completed": OrderCompleted,
    "payment_succeeded": PaymentSucceeded,
    "payment_failed": PaymentFailed,
    "payment_retried": PaymentRetried,
    "payment_refunded": PaymentRefunded,
    "shipment": Shipment,
    "order_shipped": OrderShipped,
    "return": Return,
    "return_received": ReturnReceived,
    "stock_received": StockReceived,
    "stock_adjusted": StockAdjusted,
}
"""The kind names a profile file uses, and the event each one builds (``unmapped`` builds :class:`Unmapped`)."""


class Mapped(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery read through a profile: where it came from, and the canonical event it means."""

    event_type: str
    event_id: str | None
    """The producer's id of the delivery (its dedup key), None when the delivery carries none."""
    occurred_at: float | None
    """The producer's time of the event, epoch seconds; None when absent or unreadable."""
    event: CanonicalEvent
