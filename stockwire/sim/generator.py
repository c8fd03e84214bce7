"""Generate a flash sale from a seed: a catalogue, stock, orders with their fates, and every webhook.

Pure: the same :class:`SimConfig` and ``now`` give the same plan, byte for byte. Orders, payments,
shipments and returns are written in the configured dialect (:mod:`.commerce_engine` or
:mod:`.stockwire_dialect`); stock arrives in Stockwire's dialect (:mod:`.catalogue`) either way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter

from libs.profiles.canonical import OrderPlaced, PaymentSucceeded

from . import commerce_engine, stockwire_dialect
from .catalogue import Assortment, assortment, sku_names, stock_phase, stock_webhook
from .config import SimConfig
from .draws import Ids
from .plan import PlannedOrder, SalePlan, SkuSpec, Webhook

__all__ = ["generate_plan", "sku_names"]


def _draw_order(rng: random.Random, config: SimConfig, index: int, shop: Assortment) -> PlannedOrder:
    if config.dialect == "commerce-engine":
        return commerce_engine.draw_order(rng, config, index, shop)
    return stockwire_dialect.draw_order(rng, config, index, shop)


def _order_webhooks(
    rng: random.Random, ids: Ids, order: PlannedOrder, position: float, config: SimConfig, now: dt.datetime
) -> tuple[list[tuple[float, Webhook]], tuple[Webhook, ...]]:
    if config.dialect == "commerce-engine":
        return commerce_engine.order_webhooks(rng, ids, order, position, config, now)
    return stockwire_dialect.order_webhooks(rng, ids, order, position, config)


def generate_plan(config: SimConfig, now: dt.datetime | None = None) -> SalePlan:
    """The whole sale for ``config``; ``now`` dates the stocktakes and the times inside Commerce Engine's
    objects (pass it for byte-identical plans)."""
    config.mix.validate()
    if config.orders < 0 or config.catalogue.skus < 1 or config.catalogue.hot_skus > config.catalogue.skus:
        raise ValueError("need orders >= 0 and 1 <= skus, hot_skus <= skus")
    now = now or dt.datetime.now(dt.UTC)
    rng = random.Random(config.seed)
    ids = Ids(config.run_id)
    shop = assortment(config)
    orders = {order.order_id: order for order in (_draw_order(rng, config, i, shop) for i in range(config.orders))}

    demand: Counter[str] = Counter()
    for order in orders.values():
        for line in order.lines:
            if line.stocked:
                demand[line.sku] += line.units
    hot = set(shop.hot)
    catalogue = tuple(
        SkuSpec(
            sku,
            sku in hot,
            max(
                1,
                round(
                    demand[sku]
                    * (config.catalogue.hot_stock_ratio if sku in hot else config.catalogue.cold_stock_ratio)
                ),
            ),
            demand[sku],
        )
        for sku in shop.stocked
    )
    stocktake, receipts, write_offs = stock_phase(rng, ids, catalogue, config.catalogue, config.source, now)

    timed: list[tuple[float, int, Webhook]] = []
    follow_ups: dict[str, tuple[Webhook, ...]] = {}
    gates: dict[str, str] = {}
    tie = itertools.count()
    for position, order in enumerate(orders.values()):
        steps, later = _order_webhooks(rng, ids, order, float(position), config, now)
        timed += [(at, next(tie), webhook) for at, webhook in steps]
        if later:
            follow_ups[order.order_id] = later
            gates[order.order_id] = _gate([webhook for _, webhook in steps])
    hot_names = [spec.sku for spec in catalogue if spec.hot] or list(shop.names)
    span = max(1, config.orders)
    for _ in range(config.mix.mid_sale_adjustments):
        sku = rng.choice(hot_names)
        found = {"sku": sku, "delta": rng.randint(1, 3), "reason": "found in returns cage"}
        timed.append((rng.uniform(0, span), next(tie), stock_webhook(ids, "inventory.adjusted", found, config.source)))
    for n in range(config.mix.mid_sale_receipts):
        sku = rng.choice(hot_names)
        late = {"sku": sku, "qty": rng.randint(2, 10), "po": f"PO-{config.run_id}-late-{n}"}
        timed.append((rng.uniform(0, span), next(tie), stock_webhook(ids, "inventory.received", late, config.source)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return SalePlan(
        catalogue=catalogue,
        stocktake=tuple(stocktake),
        receipts=tuple(receipts),
        write_offs=tuple(write_offs),
        sale=tuple(webhook for _, _, webhook in timed),
        follow_ups=follow_ups,
        orders=orders,
        gates=gates,
    )


def _gate(sale: list[Webhook]) -> str:
    """The event that commits the order (its payment, or a placement already paid): its follow-ups wait for it."""
    committing = [
        webhook
        for webhook in sale
        if isinstance(webhook.event, PaymentSucceeded)
        or (isinstance(webhook.event, OrderPlaced) and webhook.event.confirmed)
    ]
    return committing[-1].event_id
