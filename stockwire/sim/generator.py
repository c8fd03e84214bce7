"""Generate a flash sale from a seed: a catalogue, stock, orders with their fates, and every webhook.

Pure: the same :class:`SimConfig` and ``now`` give the same plan, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter
from collections.abc import Callable, Sequence

from .config import CatalogueConfig, OrderMix, SimConfig
from .plan import Fate, Line, PlannedOrder, SalePlan, SkuSpec, Webhook

__all__ = ["generate_plan", "sku_names"]

_HOT = ("CONSOLE-X-1TB", "SNEAKER-RETRO-42", "SNEAKER-RETRO-43", "HOODIE-DROP-M", "HOODIE-DROP-L", "VINYL-LTD-001")
_FAMILIES = ("TEE", "CAP", "SOCKS", "MUG", "POSTER", "BAG", "SCARF", "BOTTLE")
_VARIANTS = ("RED-S", "RED-M", "BLUE-M", "BLUE-L", "BLACK-M", "WHITE-L")
# One SKU with characters a NATS subject cannot hold, so the token encoding is exercised end to end.
_AWKWARD = "GIFT.CARD/50 EUR"


def sku_names(config: CatalogueConfig, prefix: str = "") -> list[str]:
    """``config.skus`` distinct names; the first ``config.hot_skus`` are the hot ones."""
    hot = [_HOT[i] if i < len(_HOT) else f"HOT-ITEM-{i:02d}" for i in range(config.hot_skus)]
    cold_pool = (f"{family}-{variant}" for family, variant in itertools.product(_FAMILIES, _VARIANTS))
    cold = [_AWKWARD] if config.skus > config.hot_skus else []
    cold += list(itertools.islice(cold_pool, max(0, config.skus - config.hot_skus - 1)))
    cold += [f"ITEM-{i:04d}" for i in range(len(cold), config.skus - config.hot_skus)]
    return [prefix + name for name in hot + cold]


class _Ids:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._next = itertools.count(1)

    def event(self) -> str:
        return f"{self.run_id}-e{next(self._next):07d}"


def _weights(config: CatalogueConfig) -> list[float]:
    hot, cold = config.hot_skus, config.skus - config.hot_skus
    if cold == 0:
        return [1.0] * hot
    if hot == 0:
        return [1.0] * cold
    # Within the hot set demand falls off (1, 1/2, 1/3…), as a drop's lead item outsells the rest.
    harmonic = [1.0 / (i + 1) for i in range(hot)]
    scale = config.hot_demand_share / sum(harmonic)
    return [h * scale for h in harmonic] + [(1.0 - config.hot_demand_share) / cold] * cold


def _order_lines(
    rng: random.Random, skus: Sequence[str], weights: Sequence[float], config: CatalogueConfig
) -> tuple[Line, ...]:
    count = rng.randint(1, min(config.max_lines, len(skus)))
    chosen: list[str] = []
    while len(chosen) < count:
        sku = rng.choices(skus, weights)[0]
        if sku not in chosen:
            chosen.append(sku)
    return tuple(Line(sku, rng.randint(1, config.max_qty)) for sku in chosen)


def _fate(rng: random.Random, mix: OrderMix) -> Fate:
    u = rng.random()
    for share, fate in (
        (mix.abandon, Fate.ABANDONED),
        (mix.payment_failed, Fate.PAYMENT_FAILED),
        (mix.cancel_unpaid, Fate.CANCELLED_UNPAID),
        (mix.cancel_paid, Fate.CANCELLED_PAID),
    ):
        if u < share:
            return fate
        u -= share
    if rng.random() >= mix.ship:
        return Fate.PAID
    return Fate.RETURNED if rng.random() < mix.returned else Fate.SHIPPED


def _returned_lines(rng: random.Random, lines: Sequence[Line]) -> tuple[Line, ...]:
    picked = [line for line in lines if rng.random() < 0.7] or [lines[0]]
    return tuple(Line(line.sku, rng.randint(1, line.qty)) for line in picked)


def _stock_phase(
    rng: random.Random, ids: _Ids, catalogue: Sequence[SkuSpec], config: CatalogueConfig, now: dt.datetime
) -> tuple[list[Webhook], list[Webhook], list[Webhook]]:
    counted = set(rng.sample([s.sku for s in catalogue], min(config.stocktakes, len(catalogue))))
    damaged = set(rng.sample([s.sku for s in catalogue], min(config.damaged, len(catalogue))))
    newer_counts: list[Webhook] = []
    older_counts: list[Webhook] = []
    receipts: list[Webhook] = []
    write_offs: list[Webhook] = []
    for spec in catalogue:
        to_receive = spec.stock
        if spec.sku in counted:
            count = spec.stock // 2
            to_receive -= count
            newer_at = (now - dt.timedelta(minutes=10)).isoformat(timespec="seconds")
            older_at = (now - dt.timedelta(hours=2)).isoformat(timespec="seconds")
            newer_counts.append(
                Webhook(ids.event(), "inventory.adjusted", {"sku": spec.sku, "on_hand": count, "counted_at": newer_at})
            )
            stale = {"sku": spec.sku, "on_hand": count + 7, "counted_at": older_at, "reason": "late stocktake sheet"}
            older_counts.append(Webhook(ids.event(), "inventory.adjusted", stale))
        written_off = rng.randint(1, 3) if spec.sku in damaged else 0
        parts = _split(rng, to_receive + written_off, rng.randint(1, 3))
        receipts += [
            Webhook(ids.event(), "inventory.received", {"sku": spec.sku, "qty": qty, "po": f"PO-{ids.run_id}-{n}"})
            for n, qty in enumerate(parts)
            if qty > 0
        ]
        if written_off:
            damage = {"sku": spec.sku, "delta": -written_off, "reason": "damaged"}
            write_offs.append(Webhook(ids.event(), "inventory.adjusted", damage))
    stocktake = newer_counts + older_counts
    return stocktake, receipts, write_offs


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    if total <= 0:
        return []
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in itertools.pairwise([0, *cuts, total])]


def _order_webhooks(
    rng: random.Random, ids: _Ids, order: PlannedOrder, position: float, mix: OrderMix
) -> tuple[list[tuple[float, Webhook]], tuple[Webhook, ...]]:
    """The order's webhooks in the sale (with planned positions) and its follow-ups after acceptance."""
    oid = order.order_id
    amount = sum(line.qty for line in order.lines) * 4999
    created = {
        "order_id": oid,
        "customer_id": f"cus_{rng.randrange(10**8):08d}",
        "currency": "EUR",
        "total_cents": amount,
        "lines": [line.as_json() for line in order.lines],
    }
    timed = [(position, Webhook(ids.event(), "order.created", created, oid))]

    def gap() -> float:
        return rng.uniform(*mix.follow_up_gap)

    paid_at = position + gap()
    payment = {"order_id": oid, "payment_id": f"pay_{rng.randrange(10**10):010d}", "amount_cents": amount}
    success_type = "payment.captured" if rng.random() < mix.aliases else "payment.successful"
    if order.fate is Fate.PAYMENT_FAILED:
        timed.append((paid_at, Webhook(ids.event(), "payment.failed", {**payment, "reason": "card_declined"}, oid)))
    elif order.fate is Fate.CANCELLED_UNPAID:
        timed.append((paid_at, Webhook(ids.event(), "order.cancelled", {"order_id": oid, "reason": "customer"}, oid)))
    elif order.fate is not Fate.ABANDONED:
        timed.append((paid_at, Webhook(ids.event(), success_type, payment, oid)))
        if order.fate is Fate.CANCELLED_PAID:
            cancel = {"order_id": oid, "reason": "customer", "refund": True}
            timed.append((paid_at + gap(), Webhook(ids.event(), "order.cancelled", cancel, oid)))
    follow_ups: list[Webhook] = []
    if order.fate in (Fate.SHIPPED, Fate.RETURNED):
        ship_type = "order.fulfilled" if rng.random() < mix.aliases else "shipment.shipped"
        shipment = {"order_id": oid, "carrier": "DHL", "tracking": f"JD{rng.randrange(10**12):012d}"}
        follow_ups.append(Webhook(ids.event(), ship_type, shipment, oid, after_acceptance=True))
    if order.fate is Fate.RETURNED:
        lines = [line.as_json() for line in order.returned_lines]
        returned = {"order_id": oid, "lines": lines, "restock": order.restock}
        follow_ups.append(Webhook(ids.event(), "return.received", returned, oid, after_acceptance=True))
    return timed, tuple(follow_ups)


def generate_plan(config: SimConfig, now: dt.datetime | None = None) -> SalePlan:
    """The whole sale for ``config``; ``now`` only dates the stocktakes (pass it for byte-identical plans)."""
    config.mix.validate()
    if config.orders < 0 or config.catalogue.skus < 1 or config.catalogue.hot_skus > config.catalogue.skus:
        raise ValueError("need orders >= 0 and 1 <= skus, hot_skus <= skus")
    now = now or dt.datetime.now(dt.UTC)
    rng = random.Random(config.seed)
    ids = _Ids(config.run_id)
    names = sku_names(config.catalogue, config.sku_prefix)
    weights = _weights(config.catalogue)
    hot = set(names[: config.catalogue.hot_skus])

    orders: dict[str, PlannedOrder] = {}
    for index in range(config.orders):
        oid = f"{config.run_id}-o{index:06d}"
        lines = _order_lines(rng, names, weights, config.catalogue)
        fate = _fate(rng, config.mix)
        returned = _returned_lines(rng, lines) if fate is Fate.RETURNED else ()
        restock = fate is Fate.RETURNED and rng.random() < config.mix.restock
        orders[oid] = PlannedOrder(oid, lines, fate, returned, restock)

    demand: Counter[str] = Counter()
    for order in orders.values():
        for line in order.lines:
            demand[line.sku] += line.qty
    ratio: Callable[[str], float] = lambda sku: (  # noqa: E731
        config.catalogue.hot_stock_ratio if sku in hot else config.catalogue.cold_stock_ratio
    )
    catalogue = tuple(SkuSpec(sku, sku in hot, max(1, round(demand[sku] * ratio(sku))), demand[sku]) for sku in names)
    stocktake, receipts, write_offs = _stock_phase(rng, ids, catalogue, config.catalogue, now)

    timed: list[tuple[float, int, Webhook]] = []
    follow_ups: dict[str, tuple[Webhook, ...]] = {}
    tie = itertools.count()
    for position, order in enumerate(orders.values()):
        steps, later = _order_webhooks(rng, ids, order, float(position), config.mix)
        timed += [(at, next(tie), webhook) for at, webhook in steps]
        if later:
            follow_ups[order.order_id] = later
    hot_names = [spec.sku for spec in catalogue if spec.hot] or list(names)
    span = max(1, config.orders)
    for _ in range(config.mix.mid_sale_adjustments):
        sku = rng.choice(hot_names)
        found = {"sku": sku, "delta": rng.randint(1, 3), "reason": "found in returns cage"}
        timed.append((rng.uniform(0, span), next(tie), Webhook(ids.event(), "inventory.adjusted", found)))
    for n in range(config.mix.mid_sale_receipts):
        sku = rng.choice(hot_names)
        late = {"sku": sku, "qty": rng.randint(2, 10), "po": f"PO-{config.run_id}-late-{n}"}
        timed.append((rng.uniform(0, span), next(tie), Webhook(ids.event(), "inventory.received", late)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return SalePlan(
        catalogue=catalogue,
        stocktake=tuple(stocktake),
        receipts=tuple(receipts),
        write_offs=tuple(write_offs),
        sale=tuple(webhook for _, _, webhook in timed),
        follow_ups=follow_ups,
        orders=orders,
    )
