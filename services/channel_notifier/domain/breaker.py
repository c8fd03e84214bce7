"""A circuit breaker per channel: stop knocking on a door that keeps failing, probe it now and then.

closed --(``failure_threshold`` consecutive failures)--> open --(``open_s`` passes)--> half-open
half-open: one probe at a time; its success closes the circuit, its failure opens it again for twice
as long (up to ``open_max_s``). The clock is passed in, so the machine is tested without waiting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    open_s: float = 5.0
    open_max_s: float = 60.0
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _open_for: float = field(default=0.0, init=False)
    _probing: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.open_s <= 0 or self.open_max_s < self.open_s:
            raise ValueError("circuit breaker: need threshold >= 1 and 0 < open_s <= open_max_s")
        self._open_for = self.open_s

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now >= self._opened_at + self._open_for:
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        return self._state

    def is_open(self, now: float) -> bool:
        return self.state(now) is BreakerState.OPEN

    def retry_at(self) -> float:
        """When an open circuit lets a probe through."""
        return self._opened_at + self._open_for

    def allowance(self, now: float, concurrency: int) -> int:
        """How many deliveries may start now, given ``concurrency`` free slots."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return concurrency
        if state is BreakerState.HALF_OPEN and not self._probing:
            return min(1, concurrency)
        return 0

    def started(self, now: float) -> None:
        """A delivery was started; in half-open it is the probe."""
        if self.state(now) is BreakerState.HALF_OPEN:
            self._probing = True

    def record_success(self, now: float) -> None:
        self.state(now)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_for = self.open_s
        self._probing = False

    def record_failure(self, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._open(now, min(self.open_max_s, self._open_for * 2))
            return
        if state is BreakerState.OPEN:
            return  # a delivery started before the circuit opened; it says nothing new
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open(now, self.open_s)

    def release(self, now: float) -> None:
        """A started delivery ended without a verdict on the channel (e.g. it was not attempted)."""
        if self.state(now) is BreakerState.HALF_OPEN:
            self._probing = False

    def _open(self, now: float, duration: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._open_for = duration
        self._failures = 0
        self._probing = False
