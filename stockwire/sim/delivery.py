"""How a producer delivers: pacing with a burst, reordering, duplicates, forged copies, retry backoff.

Pure functions of a ``random.Random`` and the :class:`ProducerConfig`; the sender in
:mod:`stockwire.sim.producer` only carries them out.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from libs.backoff import backoff_delay as backoff

from .config import ProducerConfig
from .plan import Webhook

__all__ = ["Copy", "Delivery", "backoff_delay", "delivery_sequence", "retryable", "send_offsets"]


class Copy(enum.Enum):
    ORIGINAL = "original"
    DUPLICATE = "duplicate"
    """The same body again: the producer timed out on the first answer, or simply sends twice."""
    FORGED = "forged"
    """The same body with a wrong signature: someone who does not hold the secret."""


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook: Webhook
    copy: Copy = Copy.ORIGINAL


def delivery_sequence(webhooks: Sequence[Webhook], config: ProducerConfig, rng: random.Random) -> list[Delivery]:
    """The order in which the producer sends ``webhooks``, with its duplicates and forged copies.

    A reordered event is pushed behind up to ``reorder_window`` later ones, so a payment can overtake
    its order; a duplicate follows its original within the window.
    """
    keyed: list[tuple[float, int, Delivery]] = []
    window = max(1, config.reorder_window)
    for index, webhook in enumerate(webhooks):
        key = float(index)
        if rng.random() < config.reorder_rate:
            key += rng.uniform(1.0, window) + 0.5
        keyed.append((key, len(keyed), Delivery(webhook)))
        if rng.random() < config.duplicate_rate:
            keyed.append((key + rng.uniform(0.0, window), len(keyed), Delivery(webhook, Copy.DUPLICATE)))
        if rng.random() < config.forged_rate:
            keyed.append((key + rng.uniform(0.0, window), len(keyed), Delivery(webhook, Copy.FORGED)))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [delivery for _, _, delivery in keyed]


def send_offsets(count: int, config: ProducerConfig) -> list[float]:
    """Planned send time (seconds from the start) of each of ``count`` deliveries, with the burst.

    ``rate == 0`` means no pacing: every offset is 0 and only the connection limit holds the pace.
    """
    if config.rate <= 0:
        return [0.0] * count
    burst_start = int(count * config.burst_at)
    burst_end = burst_start + int(count * config.burst_share)
    offsets = []
    at = 0.0
    for index in range(count):
        offsets.append(at)
        in_burst = burst_start <= index < burst_end
        at += 1.0 / (config.rate * (config.burst_factor if in_burst else 1.0))
    return offsets


def retryable(status: int | None) -> bool:
    """Connection errors (None), 5xx, 408 and 429 may clear up; other 4xx will not."""
    return status is None or status >= 500 or status in (408, 425, 429)


def backoff_delay(attempt: int, config: ProducerConfig, rng: random.Random) -> float:
    """Exponential backoff with equal jitter after the ``attempt``-th failed attempt (1-based)."""
    return backoff(attempt - 1, config.backoff_base_s, config.backoff_max_s, jitter=0.5, rng=rng)
