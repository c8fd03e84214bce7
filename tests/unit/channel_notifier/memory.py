"""The channel-notifier's state in memory: the unit of work the handlers' unit tests run on.

Each (channel, SKU) row is a :class:`PendingDelivery` (the reference model the SQL store is tested
against) plus what the store keeps beside it (the document, the lease's owner, the last answer). A
transaction that raises leaves nothing behind (it is undone from a copy taken when it began) and wakes
nobody; a committed one hands the channels it woke to the after-commit hook.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from services.channel_notifier.domain.channel import Channel
from services.channel_notifier.domain.pending import DeliveryStatus, Offer, PendingDelivery
from services.channel_notifier.domain.records import (
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryRecord,
    DuplicateChannel,
    Settlement,
    attempt_slot,
)
from services.channel_notifier.service_layer.unit_of_work import NewChannel, Transaction

T = TypeVar("T")


@dataclass
class Row:
    id: int
    channel_id: int
    sku: str
    document: bytes
    model: PendingDelivery
    lease_owner: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    updated_at: float = 0.0
    attempt_seq: int = 0
    kept: dict[int, DeliveryAttempt] = field(default_factory=dict)
    """The attempt history: slot -> attempt, as the store's ring keeps it."""

    def record(self) -> DeliveryRecord:
        m = self.model
        return DeliveryRecord(
            self.id,
            self.channel_id,
            self.sku,
            m.version,
            m.delivered_version,
            m.status.value,
            m.attempts,
            m.next_attempt_at,
            m.pending_since,
            self.last_status,
            self.last_error,
            self.delivered_at,
            self.updated_at,
        )


@dataclass
class State:
    channels: dict[int, Channel] = field(default_factory=dict)
    rows: dict[int, Row] = field(default_factory=dict)
    last_id: int = 0

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id


class MemoryTransaction:
    def __init__(self, state: State, woken: set[int]) -> None:
        self.s = state
        self.woken = woken

    def wake(self, channel_ids: Iterable[int]) -> None:
        self.woken.update(channel_ids)

    # -- channels ---------------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        return sorted(self.s.channels.values(), key=lambda c: c.name)

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.s.channels.values() if c.name == name), None)

    def add_channel(self, new: NewChannel, now: float) -> Channel:
        if self.channel(new.name) is not None:
            raise DuplicateChannel(new.name)
        channel = Channel(
            self.s.next_id(),
            new.name,
            new.kind,
            new.url,
            tuple(new.secrets),
            new.filters,
            new.buffer,
            new.enabled,
            None,
            now,
            now,
        )
        self.s.channels[channel.id] = channel
        return channel

    def change_channel(self, channel_id: int, values: dict[str, Any], now: float) -> Channel | None:
        current = self.s.channels.get(channel_id)
        if current is None:
            return None
        changes = {k: tuple(v) if k == "secrets" else v for k, v in values.items()}
        changes.setdefault("updated_at", now)
        self.s.channels[channel_id] = replace(current, **changes)
        return self.s.channels[channel_id]

    def remove_channel(self, channel_id: int) -> None:
        self.s.channels.pop(channel_id, None)
        self.delete_deliveries([r.id for r in self._rows(channel_id)])

    # -- deliveries ---------------------------------------------------------------------------------
    def _rows(self, channel_id: int) -> list[Row]:
        return [r for r in self.s.rows.values() if r.channel_id == channel_id]

    def _row(self, channel_id: int, sku: str) -> Row | None:
        return next((r for r in self._rows(channel_id) if r.sku == sku), None)

    def offer(self, offers: Sequence[Offer], now: float) -> None:
        for channel_id, sku, version, document in offers:
            row = self._row(channel_id, sku)
            if row is None:
                row_id = self.s.next_id()
                self.s.rows[row_id] = Row(
                    row_id, channel_id, sku, document, PendingDelivery.first(version, now), updated_at=now
                )
            elif row.model.offer(version, now):
                row.document, row.updated_at = document, now

    def replay(self, channel_id: int, offers: Sequence[tuple[str, int, bytes]], now: float) -> None:
        for sku, version, document in offers:
            row = self._row(channel_id, sku)
            if row is None:
                self.offer([(channel_id, sku, version, document)], now)
                continue
            if version > row.model.version:
                row.model.version, row.document = version, document
            row.model.resend(now)
            row.updated_at = now

    def set_trace_context(self, contexts: Sequence[tuple[int, str, int, str]]) -> None:
        pass  # traces are not modelled here (tests/integration/channel_notifier/test_store.py keeps them)

    def claim(self, channel_id: int, owner: str, limit: int, now: float, lease_s: float) -> list[ClaimedDelivery]:
        due = sorted(
            (r for r in self._rows(channel_id) if r.model.claimable(now)),
            key=lambda r: (r.model.next_attempt_at, r.id),
        )[:limit]
        claimed = []
        for row in due:
            version = row.model.claim(now, lease_s)
            row.lease_owner = owner
            since = row.model.pending_since if row.model.pending_since is not None else now
            claimed.append(
                ClaimedDelivery(row.id, channel_id, row.sku, version, row.document, row.model.attempts, since)
            )
        return sorted(claimed, key=lambda c: c.id)

    def next_due(self, channel_id: int) -> float | None:
        due = [
            max(r.model.next_attempt_at, r.model.lease_until or r.model.next_attempt_at)
            for r in self._rows(channel_id)
            if r.model.status is DeliveryStatus.PENDING
        ]
        return min(due, default=None)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        for s in settlements:
            row = self.s.rows.get(s.delivery_id)
            if row is None or row.lease_owner != s.owner:
                continue  # another owner's lease now (or gone): not ours to settle
            row.lease_owner = None
            row.updated_at = s.now
            if s.attempt is not None and not s.dropped:
                row.attempt_seq += 1
                row.kept[attempt_slot(row.attempt_seq)] = DeliveryAttempt(
                    row.id, row.channel_id, row.attempt_seq, s.attempt
                )
            if s.dropped:
                del self.s.rows[row.id]
            elif s.succeeded:
                row.model.succeeded(s.sent_version, s.now)
                row.last_status, row.last_error, row.delivered_at = s.status_code, None, s.now
            elif s.failure is not None:
                row.model.failed(s.failure)
                row.last_status, row.last_error = s.status_code, s.error
            else:
                row.model.lease_until = None
                row.model.next_attempt_at = max(row.model.next_attempt_at, s.now, s.not_before or s.now)
                row.last_error = s.error if s.error is not None else row.last_error

    def attempts(self, delivery_ids: Sequence[int], per_delivery: int) -> dict[int, list[DeliveryAttempt]]:
        found: dict[int, list[DeliveryAttempt]] = {}
        for row_id in delivery_ids:
            row = self.s.rows.get(row_id)
            if row is not None and row.kept and per_delivery > 0:
                found[row_id] = sorted(row.kept.values(), key=lambda a: -a.seq)[:per_delivery]
        return found

    def resend(self, delivery_id: int, now: float) -> DeliveryRecord | None:
        row = self.s.rows.get(delivery_id)
        if row is None:
            return None
        row.model.resend(now)
        row.updated_at = now
        return row.record()

    def resend_channel(self, channel_id: int, now: float) -> int:
        rows = self._rows(channel_id)
        for row in rows:
            self.resend(row.id, now)
        return len(rows)

    def deliveries(self, channel_id: int, status: str | None, limit: int, after_id: int = 0) -> list[DeliveryRecord]:
        rows = sorted(self._rows(channel_id), key=lambda r: r.id)
        return [r.record() for r in rows if r.id > after_id and (not status or r.model.status.value == status)][:limit]

    def channel_skus(self, channel_id: int) -> list[tuple[int, str]]:
        return [(r.id, r.sku) for r in self._rows(channel_id)]

    def delete_deliveries(self, ids: Sequence[int]) -> None:
        for row_id in ids:
            self.s.rows.pop(row_id, None)

    def pending_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for row in self.s.rows.values():
            if row.model.status is DeliveryStatus.PENDING:
                counts[row.channel_id] = counts.get(row.channel_id, 0) + 1
        return counts

    def release_leases(self, owner: str) -> None:
        for row in self.s.rows.values():
            if row.lease_owner == owner:
                row.lease_owner, row.model.lease_until = None, None


@dataclass
class MemoryUnitOfWork:
    """The unit of work of the unit tests; ``woken`` is what each committed transaction woke, in order."""

    state: State = field(default_factory=State)
    woken: list[set[int]] = field(default_factory=list)
    after_commit: Callable[[set[int]], None] | None = None
    commits: int = 0

    async def run(self, work: Callable[[Transaction], T]) -> T:
        before = copy.deepcopy(self.state)
        woken: set[int] = set()
        try:
            result = work(MemoryTransaction(self.state, woken))
        except BaseException:
            self.state = before
            raise
        self.commits += 1
        if woken:
            self.woken.append(woken)
            if self.after_commit is not None:
                self.after_commit(woken)
        return result

    def rows(self) -> dict[tuple[int, str], Row]:
        return {(r.channel_id, r.sku): r for r in self.state.rows.values()}
