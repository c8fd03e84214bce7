"""What a simulated flash sale looks like: catalogue, order mix and producer behaviour, all as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CatalogueConfig", "OrderMix", "ProducerConfig", "SimConfig"]


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
    """Share of payments and shipments sent under their alias (``payment.captured``, ``order.fulfilled``)."""
    mid_sale_adjustments: int = 6
    """Found stock during the sale: positive ``inventory.adjusted`` deltas on hot SKUs."""
    mid_sale_receipts: int = 2
    """A late delivery lands during the sale."""

    def validate(self) -> None:
        if self.abandon + self.payment_failed + self.cancel_unpaid + self.cancel_paid > 1.0:
            raise ValueError("abandon + payment_failed + cancel_unpaid + cancel_paid must not exceed 1")
        for name in ("abandon", "payment_failed", "cancel_unpaid", "cancel_paid", "ship", "returned", "restock"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


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
    """Prefix of every event and order id, so that runs against the same stack never collide."""
    source: str = "shop"
    sku_prefix: str = ""
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    mix: OrderMix = field(default_factory=OrderMix)
    producer: ProducerConfig = field(default_factory=ProducerConfig)
