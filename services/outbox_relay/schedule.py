"""When to try again: the retry backoff after a failure and the poll interval of an idle relay. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from libs.backoff import Backoff

__all__ = ["ChangeCheck", "IdlePoll", "retry_backoff"]


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


@dataclass
class ChangeCheck:
    """How long to pause between looks at an SQLite outbox's file for commits of other processes.

    A look costs the event loop a wake-up (about 70 µs of CPU on a two-core VM, most of an idle relay's
    CPU at 50 looks a second per outbox), so it is worth taking only when it may be the first news of a
    commit. A commit seen without a nudge (a writer that does not nudge, like the ingress spool) brings
    the pause back to ``shortest_s``; a look that finds nothing new, or only what a nudge has already
    announced, doubles it up to ``longest_s``.
    """

    shortest_s: float = 0.02
    longest_s: float = 0.25
    pause_s: float = 0.0

    def __post_init__(self) -> None:
        self.pause_s = self.shortest_s

    def looked(self, *, changed: bool, nudged: bool) -> float:
        """Record a look (whether the file changed since the last, whether a nudge came meanwhile);
        returns the pause before the next."""
        if changed and not nudged:
            self.pause_s = self.shortest_s
        else:
            self.pause_s = max(self.shortest_s, min(self.longest_s, self.pause_s * 2.0))
        return self.pause_s
