"""Exponential backoff with jitter: the one schedule every retry loop in Stockwire draws its waits from.

Retry number ``attempt`` (0 for the first) has the ceiling ``min(cap, base * 2**attempt)``; the wait is
that ceiling less a random share of it. ``jitter`` says how large that share may be:

- ``1.0`` is "full jitter" (uniform in ``[0, ceiling]``), the choice of AWS's architecture note
  "Exponential Backoff And Jitter" (2015) for clients that failed together and must not retry together;
- ``0.5`` is "equal jitter" (uniform in ``[ceiling/2, ceiling]``), which keeps a floor under the wait;
- ``0.0`` is no jitter (the ceiling itself), for schedules that must be predictable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff", "backoff_ceiling", "backoff_delay"]

# 2**62 seconds is far past any cap; bounding the exponent keeps math.pow finite for any attempt count.
_MAX_EXPONENT = 62


def backoff_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """The longest wait before retry ``attempt`` (0-based; negative counts as 0): ``min(cap, base * 2**attempt)``.

    Seconds in, seconds out. Never raises for any integer ``attempt``.
    """
    return min(cap_s, base_s * math.pow(2, min(max(attempt, 0), _MAX_EXPONENT)))


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, *, jitter: float = 1.0, rng: random.Random | None = None
) -> float:
    """The wait in seconds before retry ``attempt``: the ceiling less up to ``jitter`` of it, at random.

    ``jitter`` is in ``[0, 1]`` (1 = full jitter, 0.5 = equal jitter, 0 = none); ``rng`` makes it
    reproducible in tests. Raises ``ValueError`` for a ``jitter`` outside ``[0, 1]``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"backoff jitter must be within [0, 1], not {jitter}")
    ceiling = backoff_ceiling(attempt, base_s, cap_s)
    if jitter == 0.0:
        return ceiling
    return ceiling * (1.0 - jitter * (rng or random).random())


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff schedule as configuration: ``base_s`` doubling per attempt up to ``cap_s``, with ``jitter``.

    Raises ``ValueError`` at construction unless ``0 < base_s <= cap_s`` and ``0 <= jitter <= 1``.
    """

    base_s: float
    cap_s: float
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff: need 0 < base ({self.base_s}) <= cap ({self.cap_s})")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"backoff jitter must be within [0, 1], not {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt`` (0-based), in seconds."""
        return backoff_ceiling(attempt, self.base_s, self.cap_s)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry ``attempt`` (0-based), in seconds, drawn with this schedule's jitter."""
        return backoff_delay(attempt, self.base_s, self.cap_s, jitter=self.jitter, rng=rng)
