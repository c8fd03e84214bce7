"""The channel-notifier's use cases, each a function of a unit of work.

Each runs one transaction: it loads what the use case touches, lets the domain decide (which channel
wants which SKU, which version wins, what a settlement does to a row) and writes; the channels that got
work are woken once it commits. What needs the network (the KV bucket, JetStream consumers, resolving a
channel's URL) is done by the caller before or after, never inside a transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..domain.channel import Channel
from ..domain.pending import fan_out
from ..domain.records import ClaimedDelivery, DeliveryAttempt, DeliveryRecord, Settlement
from .unit_of_work import NewChannel, Transaction, UnitOfWork

__all__ = [
    "attempts_of",
    "change_channel",
    "claim_due",
    "create_channel",
    "delete_channel",
    "deliveries_of",
    "drop_unwanted",
    "next_due",
    "record_updates",
    "replay",
    "resend_channel",
    "retry",
    "settle",
]

Newest = Mapping[str, tuple[int, bytes]]
"""SKU -> (version, document): the newest update per SKU of a batch, a bucket or a stream."""


async def record_updates(
    uow: UnitOfWork,
    newest: Newest,
    channels: Sequence[Channel],
    now: float,
    contexts: Mapping[tuple[str, int], str] | None = None,
) -> int:
    """Offer each SKU's newest update to every channel in ``channels`` that wants it (INVENTORY batches,
    and a new or re-filtered channel seeded from the bucket); returns the offers made. ``contexts``
    (tracing on): the trace context of updates, by (SKU, version), kept with the rows that take them.

    Only a newer version replaces what a (channel, SKU) row holds, so a redelivered batch changes nothing.
    """
    offers = fan_out(newest, channels)
    if not offers:
        return 0
    traced = [
        (channel_id, sku, version, contexts[sku, version])
        for channel_id, sku, version, _ in offers
        if contexts and (sku, version) in contexts
    ]

    def work(tx: Transaction) -> None:
        tx.offer(offers, now)
        if traced:
            tx.set_trace_context(traced)
        tx.wake({channel_id for channel_id, *_ in offers})

    await uow.run(work)
    return len(offers)


async def replay(uow: UnitOfWork, channel: Channel, newest: Newest, now: float) -> int:
    """Send ``channel`` again what ``newest`` holds for the SKUs it wants, even what it already has."""
    offers = [(sku, version, document) for _, sku, version, document in fan_out(newest, [channel])]
    if offers:

        def work(tx: Transaction) -> None:
            tx.replay(channel.id, offers, now)
            tx.wake({channel.id})

        await uow.run(work)
    return len(offers)


async def retry(uow: UnitOfWork, delivery_id: int, now: float) -> DeliveryRecord | None:
    """Send a delivery's newest version again from a fresh schedule; None when there is no such row."""

    def work(tx: Transaction) -> DeliveryRecord | None:
        record = tx.resend(delivery_id, now)
        if record is not None:
            tx.wake({record.channel_id})
        return record

    return await uow.run(work)


Attempts = dict[int, list[DeliveryAttempt]]
"""Delivery row id -> its kept attempts, newest first."""


async def deliveries_of(
    uow: UnitOfWork, channel_id: int, status: str | None, limit: int, after_id: int, per_delivery: int
) -> tuple[list[DeliveryRecord], Attempts]:
    """A page of the channel's rows (ids above ``after_id``, of ``status`` if given) and the newest
    ``per_delivery`` attempts of each (none asked: none read), read in one transaction."""

    def work(tx: Transaction) -> tuple[list[DeliveryRecord], Attempts]:
        records = tx.deliveries(channel_id, status, limit, after_id)
        if per_delivery <= 0 or not records:
            return records, {}
        return records, tx.attempts([r.id for r in records], per_delivery)

    return await uow.run(work)


async def attempts_of(uow: UnitOfWork, channel_id: int, delivery_id: int, limit: int) -> list[DeliveryAttempt] | None:
    """The newest ``limit`` kept attempts of one of the channel's rows; None when it has no such row."""

    def work(tx: Transaction) -> list[DeliveryAttempt] | None:
        found = tx.deliveries(channel_id, None, 1, after_id=delivery_id - 1)
        if not found or found[0].id != delivery_id:
            return None
        return tx.attempts([delivery_id], limit).get(delivery_id, [])

    return await uow.run(work)


async def create_channel(uow: UnitOfWork, new: NewChannel, now: float) -> Channel:
    """Raises :class:`..domain.records.DuplicateChannel` when the name is taken."""
    return await uow.run(lambda tx: tx.add_channel(new, now))


async def delete_channel(uow: UnitOfWork, channel_id: int) -> None:
    """The channel and its deliveries."""
    await uow.run(lambda tx: tx.remove_channel(channel_id))


async def change_channel(uow: UnitOfWork, channel: Channel, values: Mapping[str, Any], now: float) -> Channel | None:
    """Apply ``values`` (column -> value) to ``channel``; None when it is gone meanwhile."""
    return await uow.run(lambda tx: tx.change_channel(channel.id, dict(values), now))


async def drop_unwanted(uow: UnitOfWork, channel: Channel) -> int:
    """Delete the channel's rows of SKUs its filters leave out; returns how many. Run it once the batch
    handler has the channel's new filters, or it may record such rows again behind it."""

    def work(tx: Transaction) -> int:
        unwanted = [row_id for row_id, sku in tx.channel_skus(channel.id) if not channel.wants(sku)]
        if unwanted:
            tx.delete_deliveries(unwanted)
        return len(unwanted)

    return await uow.run(work)


async def resend_channel(uow: UnitOfWork, channel_id: int, now: float) -> int:
    """Every row of the channel pending again (its buffer changed, so what each SKU showed is stale);
    returns how many. Run it once the workers have the channel's new buffer, or they send the old one."""

    def work(tx: Transaction) -> int:
        tx.wake({channel_id})
        return tx.resend_channel(channel_id, now)

    return await uow.run(work)


async def claim_due(
    uow: UnitOfWork, channel_id: int, owner: str, limit: int, now: float, lease_s: float
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` of the channel's due deliveries to ``owner`` for ``lease_s`` seconds."""
    if limit <= 0:
        return []
    return await uow.run(lambda tx: tx.claim(channel_id, owner, limit, now, lease_s))


async def next_due(uow: UnitOfWork, channel_id: int) -> float | None:
    """When the channel's earliest pending delivery may be claimed; None when it has none."""
    return await uow.run(lambda tx: tx.next_due(channel_id))


async def settle(uow: UnitOfWork, results: Sequence[tuple[int, Settlement]]) -> None:
    """Write a batch of ``(channel id, settlement)``; the channels are woken (a row may be due again, and
    a worker that waited for its in-flight deliveries may claim more)."""
    if not results:
        return

    def work(tx: Transaction) -> None:
        tx.settle([s for _, s in results])
        tx.wake({channel_id for channel_id, _ in results})

    await uow.run(work)
