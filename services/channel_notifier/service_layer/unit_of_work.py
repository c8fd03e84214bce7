"""The unit of work: one transaction over the notifier's channels and deliveries, whatever stores them.

A transaction's body is a plain (synchronous) function of a :class:`Transaction`: the SQL unit of work
runs it in one hand-off to the store's writer thread (SQLite) or one ``run_sync`` (PostgreSQL), which is
what keeps the hot path at one hand-off per transaction rather than one per statement. It is committed
when the body returns and rolled back when it raises. The channels the body named with
:meth:`Transaction.wake` are handed to the after-commit hook once the commit is durable (the nudge that
wakes their delivery workers), never before, so a worker cannot look for work that is not there yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..domain.channel import Channel, ChannelFilters
from ..domain.pending import Offer
from ..domain.records import ClaimedDelivery, DeliveryAttempt, DeliveryRecord, Settlement

__all__ = ["AfterCommit", "NewChannel", "Transaction", "UnitOfWork"]

T = TypeVar("T")

AfterCommit = Callable[[set[int]], None]
"""Called after a commit with the ids of the channels that have new work."""


@dataclass(frozen=True, slots=True)
class NewChannel:
    """What a new channel is made of (validated by the caller)."""

    name: str
    kind: str
    url: str | None
    secrets: Sequence[str]
    filters: ChannelFilters
    buffer: int
    enabled: bool


class Transaction(Protocol):
    """The operations of one open transaction, in the notifier's terms."""

    # -- channels ----------------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        """Every channel, by name."""
        ...

    def channel(self, name: str) -> Channel | None: ...

    def add_channel(self, new: NewChannel, now: float) -> Channel:
        """Raises :class:`..domain.records.DuplicateChannel` when the name is taken."""
        ...

    def change_channel(self, channel_id: int, values: dict[str, Any], now: float) -> Channel | None:
        """Set ``values`` (column -> value; ``secrets`` a list, ``filters`` a :class:`ChannelFilters`)."""
        ...

    def remove_channel(self, channel_id: int) -> None:
        """The channel and every delivery row of it."""
        ...

    # -- deliveries ----------------------------------------------------------------------------------
    def offer(self, offers: Sequence[Offer], now: float) -> None:
        """Offer updates; only a newer version replaces a (channel, SKU) row's (see ``PendingDelivery.offer``)."""
        ...

    def replay(self, channel_id: int, offers: Sequence[tuple[str, int, bytes]], now: float) -> None:
        """Make ``(sku, version, document)`` pending again, even if delivered or given up; never older."""
        ...

    def set_trace_context(self, contexts: Sequence[tuple[int, str, int, str]]) -> None:
        """``(channel id, sku, version, context)``: the trace context (JSON headers) of the row that holds
        that version; a row holding another version is left as it is."""
        ...

    def claim(self, channel_id: int, owner: str, limit: int, now: float, lease_s: float) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of a channel, in due order then id; returned by id."""
        ...

    def next_due(self, channel_id: int) -> float | None:
        """When the channel's earliest pending delivery may be claimed (its backoff or its lease ending)."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Write results, and the attempts they carry into their rows' attempt history (the newest
        ``ATTEMPTS_KEPT`` of a row are kept); a row whose lease another owner took meanwhile is left alone,
        its attempt not recorded."""
        ...

    def attempts(self, delivery_ids: Sequence[int], per_delivery: int) -> dict[int, list[DeliveryAttempt]]:
        """The newest ``per_delivery`` kept attempts of each of these rows, newest first; rows with none
        (or gone) left out."""
        ...

    def resend(self, delivery_id: int, now: float) -> DeliveryRecord | None:
        """The row's newest version pending again from a fresh schedule; the row as it now is."""
        ...

    def resend_channel(self, channel_id: int, now: float) -> int:
        """Every row of the channel pending again; how many."""
        ...

    def deliveries(self, channel_id: int, status: str | None, limit: int, after_id: int = 0) -> list[DeliveryRecord]:
        """The channel's rows with ids above ``after_id``, by id, of ``status`` if given."""
        ...

    def channel_skus(self, channel_id: int) -> list[tuple[int, str]]:
        """(row id, SKU) of every row of the channel."""
        ...

    def delete_deliveries(self, ids: Sequence[int]) -> None: ...

    def pending_counts(self) -> dict[int, int]:
        """Pending rows per channel id (channels with none are left out)."""
        ...

    def release_leases(self, owner: str) -> None:
        """Every lease ``owner`` holds handed back."""
        ...

    # -- after commit ----------------------------------------------------------------------------
    def wake(self, channel_ids: Iterable[int]) -> None:
        """These channels have new work once this transaction commits."""
        ...


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one transaction: committed when it returns, rolled back when it raises; then
        the after-commit hook gets the channels ``work`` woke. The store's errors propagate."""
        ...
