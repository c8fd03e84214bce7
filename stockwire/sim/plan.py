"""The records a simulated sale is made of: webhooks, orders and their fates, the catalogue."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from libs.profiles.canonical import CanonicalEvent
from stockwire.dev_sources import DEV_SOURCE

__all__ = ["Fate", "Line", "PlannedOrder", "ProductType", "SalePlan", "SkuSpec", "Webhook", "envelope"]

ProductType = Literal["physical", "digital", "bundle"]


class Fate(enum.Enum):
    """What happens to an order after it is placed (if inventory accepts it)."""

    ABANDONED = "abandoned"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED_UNPAID = "cancelled_unpaid"
    CANCELLED_PAID = "cancelled_paid"
    PAID = "paid"
    SHIPPED = "shipped"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class Line:
    """One order line: ``qty`` paid units and ``free`` free ones of one SKU (Stockwire's dialect has
    neither free units nor products: only ``sku`` and ``qty``)."""

    sku: str
    qty: int
    free: int = 0
    product_type: ProductType = "physical"
    backorder: bool = False
    product_id: str | None = None
    variant_id: str | None = None

    @property
    def units(self) -> int:
        """Every unit that leaves the shelf, paid or free."""
        return self.qty + self.free

    @property
    def stocked(self) -> bool:
        return self.product_type != "digital"

    def as_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "qty": self.qty}


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook; ``data`` is what goes under ``"data"`` in the envelope."""

    event_id: str
    event_type: str
    data: Mapping[str, Any]
    order_id: str | None = None
    after_acceptance: bool = False
    """Sent only once inventory accepted the order (a warehouse ships only what was reserved)."""
    source: str = DEV_SOURCE
    """The webhook source it is sent to (``POST /webhooks/<source>``)."""
    dialect: str = "stockwire"
    """The profile that reads it (the source's)."""
    event: CanonicalEvent | None = field(default=None, compare=False)
    """What it means, as the profile reads it, when the generator already knows (the model maps it otherwise)."""


def envelope(webhook: Webhook, created_at: str) -> bytes:
    """The Commerce Engine body: ``{"id", "event_type", "created_at", "data"}``."""
    document = {
        "id": webhook.event_id,
        "event_type": webhook.event_type,
        "created_at": created_at,
        "data": webhook.data,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    order_id: str
    lines: tuple[Line, ...]
    fate: Fate
    returned_lines: tuple[Line, ...] = ()
    restock: bool = False


@dataclass(frozen=True, slots=True)
class SkuSpec:
    sku: str
    hot: bool
    stock: int
    """Units supplied before the sale (counts, receipts and write-downs together)."""
    demand: int
    """Units the planned orders ask for."""


@dataclass(frozen=True)
class SalePlan:
    catalogue: tuple[SkuSpec, ...]
    stocktake: tuple[Webhook, ...]
    """Phase 1: absolute counts (the older count of a pair comes last and must not apply)."""
    receipts: tuple[Webhook, ...]
    """Phase 2: goods in."""
    write_offs: tuple[Webhook, ...]
    """Phase 3: damaged units written down (negative deltas), once the receipts are in."""
    sale: tuple[Webhook, ...]
    """Phase 4, in planned order: orders, payments, cancellations, stock found or delivered mid-sale."""
    follow_ups: Mapping[str, tuple[Webhook, ...]] = field(default_factory=dict)
    """Per order, in order (shipments, returns, completion, refunds): sent after inventory accepted the order."""
    orders: Mapping[str, PlannedOrder] = field(default_factory=dict)
    gates: Mapping[str, str] = field(default_factory=dict)
    """Per order with follow-ups, the sale event they wait for (the one that commits the order)."""

    @property
    def skus(self) -> list[str]:
        return [spec.sku for spec in self.catalogue]

    def webhooks(self) -> Iterator[Webhook]:
        yield from self.stocktake
        yield from self.receipts
        yield from self.write_offs
        yield from self.sale
        for steps in self.follow_ups.values():
            yield from steps

    def count(self) -> int:
        return sum(1 for _ in self.webhooks())

    def phases(self) -> list[tuple[str, tuple[Webhook, ...]]]:
        """The phases before the sale; each must be applied before the next starts."""
        return [("stocktake", self.stocktake), ("receipts", self.receipts), ("write-offs", self.write_offs)]
