"""From INVENTORY to the channels: the batch handler of the ``channel-notifier`` consumer.

Per fetched batch: decode the availability changes (the durable is filtered to them; ledger events
are for jetstream channels, which pull them on their own, and any that come are acknowledged and
skipped), keep the newest per SKU, bring the ``availability`` KV bucket up to date, then record one
pending delivery per (channel, SKU) in one transaction (the unit of work wakes the workers once it
commits). A message is acknowledged only once both are done; on redelivery both steps are no-ops for
what already happened (a KV failure retries the message on the runner's schedule but does not hold
its deliveries back). A store that cannot record fails the batch as a
whole: the runner holds it and retries it in place, so a full disk uses up no message's deliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from nats.aio.msg import Msg

from libs import tracing
from libs.consumer import Decision
from libs.contracts import TRACE_HEADERS, AvailabilityChanged, decode_availability
from libs.subjects import encode_token

from .domain.channel import AVAILABILITY, Channel
from .domain.pending import newest_per_sku
from .kv import AvailabilityKv
from .metrics import UPDATES
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWork

__all__ = ["AvailabilityIngest"]

log = logging.getLogger("stockwire.channel_notifier.ingest")


class AvailabilityIngest:
    def __init__(
        self,
        uow: UnitOfWork,
        kv: AvailabilityKv,
        channels: Callable[[], Sequence[Channel]],
        *,
        kv_concurrency: int = 64,
    ) -> None:
        self.uow = uow
        self.kv = kv
        self.channels = channels
        self._kv_slots = asyncio.Semaphore(kv_concurrency)

    async def handle(self, batch: Sequence[Msg]) -> list[Decision]:
        decisions: list[Decision] = [Decision.ack()] * len(batch)
        updates: list[tuple[int, AvailabilityChanged, bytes]] = []
        traced = tracing.enabled()
        contexts: dict[tuple[str, int], str] = {}
        for index, msg in enumerate(batch):
            parts = msg.subject.split(".", 2)
            if len(parts) != 3 or parts[1] != AVAILABILITY:
                continue
            try:
                update = decode_availability(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                UPDATES.labels("invalid").inc()
                decisions[index] = Decision.dead_letter(f"not an AvailabilityChanged document: {exc}")
                continue
            if not update.sku or encode_token(update.sku) != parts[2]:
                UPDATES.labels("invalid").inc()
                decisions[index] = Decision.dead_letter(f"SKU {update.sku!r} does not match subject {msg.subject}")
                continue
            updates.append((index, update, msg.data))
            if traced and msg.headers:
                context = {name: msg.headers[name] for name in TRACE_HEADERS if name in msg.headers}
                if context:
                    contexts[update.sku, update.version] = json.dumps(context, separators=(",", ":"))
        if not updates:
            return decisions
        documents = {id(u): raw for _, u, raw in updates}
        newest = newest_per_sku(u for _, u, _ in updates)
        # The bucket first, the channel list after: a channel registered meanwhile either is in the list
        # or seeds itself from a bucket that already holds these updates, so it cannot miss them.
        failed = await self._update_kv(newest, documents)
        versions = {sku: (update.version, documents[id(update)]) for sku, update in newest.items()}
        await handlers.record_updates(self.uow, versions, self.channels(), time.time(), contexts)
        for index, update, _ in updates:
            if update.sku in failed:
                decisions[index] = Decision.retry(f"kv: {failed[update.sku]}")
        return decisions

    async def _update_kv(self, newest: dict[str, AvailabilityChanged], documents: dict[int, bytes]) -> dict[str, str]:
        failed: dict[str, str] = {}
        updates = list(newest.values())
        results = await self.kv.offer_many([(update, documents[id(update)]) for update in updates], self._kv_slots)
        for update, result in zip(updates, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("kv update of a SKU failed: %s: %s", type(result).__name__, result)
                failed[update.sku] = f"{type(result).__name__}: {result}"
            else:
                UPDATES.labels(result.value).inc()
        return failed
