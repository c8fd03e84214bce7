"""When to try again: the retry backoff after a failure and the poll interval of an idle relay. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from libs.backoff import Backoff

__all__ = ["IdlePoll", "retry_backoff"]


def retry_backoff(initial_s: float = 0.1, maximum_s: float = 5.0) -> Backoff:
    """The relay's retry schedule: ``initial * 2**attempt`` capped at ``maximum``, then up to a quarter of it
    taken off at random, so replicas that failed together do not retry together, yet never retry at once."""
    return Backoff(initial_s, maximum_s, jitter=0.25)


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
        wait = min(self.maximum_s, self.minimum_s * 2.0 ** min(self._empty_reads, 32))
        self._empty_reads += 1
        return wait
