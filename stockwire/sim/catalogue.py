"""What a simulated store sells and how its stock arrives.

The sale's SKUs (a few hot ones most orders want, many cold ones), in the Commerce Engine dialect also
free gifts, bundles and digital products, each with the product and variant a return names; and the
stock webhooks before and during the sale, always in Stockwire's dialect (Commerce Engine sends none).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libs.profiles.canonical import StockAdjusted, StockReceived

from .config import CatalogueConfig, SimConfig
from .draws import Ids, split
from .plan import ProductType, SkuSpec, Webhook

__all__ = ["Assortment", "Product", "assortment", "sku_names", "stock_phase", "stock_webhook", "weights"]

_HOT = ("CONSOLE-X-1TB", "SNEAKER-RETRO-42", "SNEAKER-RETRO-43", "HOODIE-DROP-M", "HOODIE-DROP-L", "VINYL-LTD-001")
_FAMILIES = ("TEE", "CAP", "SOCKS", "MUG", "POSTER", "BAG", "SCARF", "BOTTLE")
_VARIANTS = ("RED-S", "RED-M", "BLUE-M", "BLUE-L", "BLACK-M", "WHITE-L")
# One SKU with characters a NATS subject cannot hold, so the token encoding is exercised end to end.
_AWKWARD = "GIFT.CARD/50 EUR"
_GIFTS = ("TOTE-CANVAS", "STICKER-SET", "KEYRING-LOGO")
_BUNDLES = ("BNDL-GIFT-BOX-01", "BNDL-STARTER-KIT", "BNDL-DUO-PACK")
_DIGITAL = ("EBOOK-CARE-GUIDE", "EGIFT-CARD-25", "DL-SOUNDTRACK", "EBOOK-STYLE-NOTES")


def sku_names(config: CatalogueConfig, prefix: str = "") -> list[str]:
    """``config.skus`` distinct names; the first ``config.hot_skus`` are the hot ones."""
    hot = [_HOT[i] if i < len(_HOT) else f"HOT-ITEM-{i:02d}" for i in range(config.hot_skus)]
    cold_pool = (f"{family}-{variant}" for family, variant in itertools.product(_FAMILIES, _VARIANTS))
    cold = [_AWKWARD] if config.skus > config.hot_skus else []
    cold += list(itertools.islice(cold_pool, max(0, config.skus - config.hot_skus - 1)))
    cold += [f"ITEM-{i:04d}" for i in range(len(cold), config.skus - config.hot_skus)]
    return [prefix + name for name in hot + cold]


def _named(pool: Sequence[str], count: int, fallback: str) -> list[str]:
    return [pool[i] if i < len(pool) else f"{fallback}-{i:02d}" for i in range(count)]


def weights(config: CatalogueConfig) -> list[float]:
    """Demand weight of each of :func:`sku_names`."""
    hot, cold = config.hot_skus, config.skus - config.hot_skus
    if cold == 0:
        return [1.0] * hot
    if hot == 0:
        return [1.0] * cold
    # Within the hot set demand falls off (1, 1/2, 1/3…), as a drop's lead item outsells the rest.
    harmonic = [1.0 / (i + 1) for i in range(hot)]
    scale = config.hot_demand_share / sum(harmonic)
    return [h * scale for h in harmonic] + [(1.0 - config.hot_demand_share) / cold] * cold


@dataclass(frozen=True, slots=True)
class Product:
    """The product and variant Commerce Engine names a SKU by (a return names only these)."""

    product_id: str
    variant_id: str | None
    product_type: ProductType = "physical"


def _product(name: str, prefix: str, product_type: ProductType, variants: bool) -> Product:
    # A family and a variant, as a shop names them: SNEAKER-RETRO / 42. Variant ids repeat across
    # products (every hoodie and every tee has an M), so a return resolves by product and variant.
    family, dash, variant = name.rpartition("-")
    if variants and dash and family:
        return Product(f"prd_{prefix}{family}", f"var_{variant}", product_type)
    return Product(f"prd_{prefix}{name}", None, product_type)


@dataclass(frozen=True)
class Assortment:
    names: list[str]
    """The sale's SKUs (:func:`sku_names`), hot first."""
    weights: list[float]
    hot: list[str]
    gifts: list[str]
    bundles: list[str]
    digital: list[str]
    products: Mapping[str, Product]

    @property
    def stocked(self) -> list[str]:
        """Every SKU that holds stock, in catalogue order."""
        return [*self.names, *self.gifts, *self.bundles]


def assortment(config: SimConfig) -> Assortment:
    """The catalogue of ``config``; gifts, bundles and digital products only in the Commerce Engine dialect."""
    catalogue, prefix = config.catalogue, config.sku_prefix
    names = sku_names(catalogue, prefix)
    extras = config.dialect == "commerce-engine"
    gifts = [prefix + "GIFT-" + n for n in _named(_GIFTS, catalogue.gift_skus, "FREEBIE")] if extras else []
    bundles = [prefix + n for n in _named(_BUNDLES, catalogue.bundle_skus, "BNDL")] if extras else []
    digital = [prefix + n for n in _named(_DIGITAL, catalogue.digital_skus, "DIGITAL")] if extras else []
    products = {sku: _product(sku.removeprefix(prefix), prefix, "physical", True) for sku in names}
    products |= {sku: _product(sku.removeprefix(prefix), prefix, "physical", False) for sku in gifts}
    products |= {sku: _product(sku.removeprefix(prefix), prefix, "bundle", False) for sku in bundles}
    products |= {sku: _product(sku.removeprefix(prefix), prefix, "digital", False) for sku in digital}
    return Assortment(names, weights(catalogue), names[: catalogue.hot_skus], gifts, bundles, digital, products)


def _epoch(value: object) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None


def stock_webhook(ids: Ids, event_type: str, data: Mapping[str, Any], source: str) -> Webhook:
    """A receipt (``inventory.received``) or an adjustment (``inventory.adjusted``), Stockwire's dialect."""
    event: StockReceived | StockAdjusted
    if event_type == "inventory.received":
        event = StockReceived(sku=data["sku"], quantity=data["qty"])
    else:
        event = StockAdjusted(
            sku=data["sku"],
            delta=data.get("delta"),
            on_hand=data.get("on_hand"),
            counted_at=_epoch(data.get("counted_at")),
        )
    return Webhook(ids.event(), event_type, data, source=source, dialect="stockwire", event=event)


def stock_phase(
    rng: random.Random, ids: Ids, catalogue: Sequence[SkuSpec], config: CatalogueConfig, source: str, now: dt.datetime
) -> tuple[list[Webhook], list[Webhook], list[Webhook]]:
    """Stocktake (a newer count, then a stale older one), receipts, and write-offs that add up to each SKU's stock."""
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
            newer = {"sku": spec.sku, "on_hand": count, "counted_at": newer_at}
            newer_counts.append(stock_webhook(ids, "inventory.adjusted", newer, source))
            stale = {"sku": spec.sku, "on_hand": count + 7, "counted_at": older_at, "reason": "late stocktake sheet"}
            older_counts.append(stock_webhook(ids, "inventory.adjusted", stale, source))
        written_off = rng.randint(1, 3) if spec.sku in damaged else 0
        parts = split(rng, to_receive + written_off, rng.randint(1, 3))
        receipts += [
            stock_webhook(
                ids, "inventory.received", {"sku": spec.sku, "qty": qty, "po": f"PO-{ids.run_id}-{n}"}, source
            )
            for n, qty in enumerate(parts)
            if qty > 0
        ]
        if written_off:
            damage = {"sku": spec.sku, "delta": -written_off, "reason": "damaged"}
            write_offs.append(stock_webhook(ids, "inventory.adjusted", damage, source))
    return newer_counts + older_counts, receipts, write_offs
