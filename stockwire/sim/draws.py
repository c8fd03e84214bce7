"""Random draws both dialects share: an order's fate, which SKUs it takes, how a total splits, event ids."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from .config import OrderMix
from .plan import Fate

__all__ = ["Ids", "draw_fate", "pick_distinct", "split"]


class Ids:
    """Event ids of one run: ``<run id>-e0000001`` …"""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._next = itertools.count(1)

    def event(self) -> str:
        return f"{self.run_id}-e{next(self._next):07d}"


def draw_fate(rng: random.Random, mix: OrderMix) -> Fate:
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


def pick_distinct(rng: random.Random, skus: Sequence[str], weights: Sequence[float], count: int) -> list[str]:
    """``count`` distinct SKUs, drawn by weight."""
    chosen: list[str] = []
    while len(chosen) < count:
        sku = rng.choices(skus, weights)[0]
        if sku not in chosen:
            chosen.append(sku)
    return chosen


def split(rng: random.Random, total: int, parts: int) -> list[int]:
    """``total`` cut at random into ``parts`` pieces (some may be 0)."""
    if total <= 0:
        return []
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in itertools.pairwise([0, *cuts, total])]
