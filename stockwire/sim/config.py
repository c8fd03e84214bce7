"""What a simulated flash sale looks like: catalogue, order mix and producer behaviour, all as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from stockwire.dev_sources import DEV_CE_SOURCE, DEV_SOURCE

__all__ = ["DIALECTS", "CatalogueConfig", "Dialect", "OrderMix", "ProducerConfig", "SimConfig"]

Dialect = Literal["commerce-engine", "stockwire"]
"""How orders, payments, shipments and returns are written: Commerce Engine's webhooks (the
``commerce-engine`` profile), or Stockwire's own ``{order_id, lines}`` dialect (the ``stockwire`` profile).
Stock receipts and counts are Stockwire's dialect either way: Commerce Engine sends none."""
DIALECTS: tuple[Dialect, ...] = get_args(Dialect)


@dataclass(frozen=True)
class CatalogueConfig:
    skus: int = 40
    hot_skus: int = 6
    hot_demand_share: float = 0.8
    """Share of order lines that go to the hot SKUs."""
    hot_stock_ratio: float = 0.6
    """Hot SKUs get this share of their expected demand as stock: the sale sells out."""
    cold_stock_ratio: float = 1.6
    max_lines: int = 3
    max_qty: int = 2
    stocktakes: int = 4
    """SKUs counted (absolute on_hand) before the sale; each gets a superseded older count too."""
    damaged: int = 4
    """SKUs written down by a negative adjustment before the sale."""
    gift_skus: int = 2
    """Commerce Engine dialect: stocked SKUs given away as free gift lines (quantity 0, free_quantity 1)."""
    bundle_skus: int = 2
    """Commerce Engine dialect: bundles, each stocked as its own SKU."""
    digital_skus: int = 3
    """Commerce Engine dialect: digital products; their SKUs are never stocked and never held."""


@dataclass(frozen=True)
class OrderMix:
    """Shares of orders by fate; whatever is left over is paid and then shipped or kept (committed)."""

    abandon: float = 0.06
    """The cart is abandoned: no payment follows and the reservation expires."""
    payment_failed: float = 0.06
    cancel_unpaid: float = 0.03
    cancel_paid: float = 0.03
    ship: float = 0.75
    """Share of the remaining paid orders that are shipped during the run."""
    returned: float = 0.12
    """Share of shipped orders that come back."""
    restock: float = 0.6
    """Share of returns whose goods go back on the shelf."""
    follow_up_gap: tuple[float, float] = (0.5, 25.0)
    """Payment or cancellation comes this many orders after the order (uniform)."""
    aliases: float = 0.3
    """Share of payments and shipments sent under their other name: ``payment.captured`` and
    ``order.fulfilled`` in Stockwire's dialect; Commerce Engine's earlier names (``payment.successful``,
    ``shipment.shipped``) or ``shipment.delivered`` for its ``shipment.updated``."""
    mid_sale_adjustments: int = 6
    """Found stock during the sale: positive ``inventory.adjusted`` deltas on hot SKUs."""
    mid_sale_receipts: int = 2
    """A late delivery lands during the sale."""

    # Commerce Engine dialect only: what its orders and their stories hold besides the above.
    free_units: float = 0.12
    """Share of lines with a free unit on top (``free_quantity`` 1: buy two, get one)."""
    gift: float = 0.08
    """Share of orders with a free gift line (``quantity`` 0, ``free_quantity`` 1)."""
    bundle: float = 0.08
    """Share of orders with a bundle line."""
    digital: float = 0.1
    """Share of orders with a digital line (never stocked, never shipped)."""
    backorder: float = 0.04
    """Share of paid orders with a backorder line on a hot SKU (waits in a scheduled shipment)."""
    placed_paid: float = 0.03
    """Share of paid orders placed already confirmed and paid (no payment event follows)."""
    payment_retried: float = 0.08
    """Share of paid orders whose first payment fails and is retried."""
    late_failure: float = 0.01
    """Share of paid orders that get a ``payment.failed`` after their success (it releases nothing)."""
    placed_again: float = 0.01
    """Share of orders whose ``order.created`` comes again under a new event id (it changes nothing)."""
    confirmed: float = 0.8
    """Share of paid orders the store confirms (``order.confirmed``)."""
    shipment_cancelled: float = 0.5
    """Share of paid-then-cancelled orders whose shipment is cancelled before it ships."""
    shipped_step_missing: float = 0.15
    """Share of shipments whose ``shipped`` update never comes (the next status is the first news)."""
    reported_twice: float = 0.05
    """Share of shipments reported shipped under both names (``shipment.updated`` and ``shipment.shipped``)."""
    return_to_origin: float = 0.03
    """Share of shipments that come back to the warehouse undelivered."""
    lost: float = 0.02
    """Share of shipments the carrier loses."""
    delivered: float = 0.85
    """Share of the other shipments delivered during the run (the rest stay on their way)."""
    completed: float = 0.9
    """Share of fully delivered orders the store completes (``order.completed``)."""

    def validate(self) -> None:
        if self.abandon + self.payment_failed + self.cancel_unpaid + self.cancel_paid > 1.0:
            raise ValueError("abandon + payment_failed + cancel_unpaid + cancel_paid must not exceed 1")
        if self.return_to_origin + self.lost > 1.0:
            raise ValueError("return_to_origin + lost must not exceed 1")
        for name in _SHARES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


_SHARES = (
    "abandon",
    "payment_failed",
    "cancel_unpaid",
    "cancel_paid",
    "ship",
    "returned",
    "restock",
    "aliases",
    "free_units",
    "gift",
    "bundle",
    "digital",
    "backorder",
    "placed_paid",
    "payment_retried",
    "late_failure",
    "placed_again",
    "confirmed",
    "shipment_cancelled",
    "shipped_step_missing",
    "reported_twice",
    "return_to_origin",
    "lost",
    "delivered",
    "completed",
)


@dataclass(frozen=True)
class ProducerConfig:
    rate: float = 400.0
    """Steady webhooks per second; 0 sends as fast as the connections allow."""
    concurrency: int = 48
    duplicate_rate: float = 0.02
    """Share of deliveries sent twice (the producer did not see the first answer)."""
    reorder_rate: float = 0.05
    """Share of events delivered after a later one (e.g. a payment before its order)."""
    reorder_window: int = 12
    burst_at: float = 0.4
    """Where in the sale (share of webhooks sent) the burst starts."""
    burst_share: float = 0.15
    """Share of the sale's webhooks sent during the burst."""
    burst_factor: float = 4.0
    """The burst's rate as a multiple of the steady rate."""
    forged_rate: float = 0.0
    """Share of deliveries followed by a copy with a wrong signature (ingress must refuse it)."""
    max_attempts: int = 30
    """Attempts per delivery for 5xx, 429 and connection errors before giving up."""
    max_attempts_client_error: int = 3
    """Attempts for other 4xx answers (they will not get better)."""
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    orders: int = 10_000
    run_id: str = "sim"
    """Part of every event id and order number, so that runs against the same stack never collide."""
    dialect: Dialect = "commerce-engine"
    source: str = DEV_SOURCE
    """The source stock receipts and counts go to (Stockwire's dialect); in the ``stockwire`` dialect, everything."""
    order_source: str = DEV_CE_SOURCE
    """The source Commerce Engine's orders, payments, shipments and returns go to (its own dialect)."""
    sku_prefix: str = ""
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    mix: OrderMix = field(default_factory=OrderMix)
    producer: ProducerConfig = field(default_factory=ProducerConfig)

    @property
    def order_prefix(self) -> str:
        """What every order number of this run starts with (and nothing else on the stack)."""
        return f"ORD-{self.run_id}-" if self.dialect == "commerce-engine" else f"{self.run_id}-o"

    def order_number(self, index: int) -> str:
        return f"{self.order_prefix}{index:06d}"

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source the run sends to, stock first."""
        if self.dialect == "stockwire" or self.order_source == self.source:
            return (self.source,)
        return (self.source, self.order_source)
