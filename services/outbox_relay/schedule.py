"""When to try again: the retry backoff after a failure and the poll interval of an idle relay. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["IdlePoll", "RetryBackoff"]


@dataclass(frozen=True)
class RetryBackoff:
    """Exponential backoff with jitter: ``initial * 2**attempt`` capped at ``maximum``, then up to
    ``jitter`` of it taken off at random, so replicas that failed together do not retry together."""

    initial_s: float = 0.1
    maximum_s: float = 5.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.maximum_s, self.initial_s * 2 ** min(max(attempt, 0), 32))
        return ceiling * (1.0 - self.jitter * (rng or random).random())


@dataclass
class IdlePoll:
    """How long to wait for a wake-up before reading again.

    A read that found rows means more may be coming: read again at once. Each empty read doubles the
    pause from ``minimum_s`` up to ``maximum_s``, so an idle relay costs next to nothing while the
    wake-ups (a commit notification, a NATS nudge, a changed SQLite file) keep latency low.
    """

    minimum_s: float = 0.005
    maximum_s: float = 1.0
    _empty_reads: int = 0

    def found_rows(self) -> None:
        self._empty_reads = 0

    def found_nothing(self) -> float:
        """Record an empty read; returns how long to wait for a wake-up before the next one."""
        wait = min(self.maximum_s, self.minimum_s * 2 ** min(self._empty_reads, 32))
        self._empty_reads += 1
        return wait
