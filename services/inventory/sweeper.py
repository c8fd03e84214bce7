"""Background work: expire lapsed reservations, give up on events parked too long, refresh gauges.

Every replica may sweep: expiry takes the same locks as any other writer, and an event given up on is
first marked in the store (so it is never applied afterwards), then published to DEADLETTER with a
message id derived from its stream sequence (so two publications are one), then forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from nats.js import JetStreamContext

from libs.contracts import deadletter_headers
from libs.subjects import deadletter_subject
from libs.topology import COMMERCE, INVENTORY_CONSUMER

from .adapters.wire import Envelope
from .domain.workspace import Outcome
from .metrics import APPLIED, CONSUMER_PENDING, EXPIRED, PARKED, event_type_label
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWorkFactory
from .settings import InventorySettings
from .store.repository import InventoryStore

__all__ = ["SweepReport", "Sweeper"]

log = logging.getLogger("stockwire.inventory.sweeper")


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int
    dead_lettered: int


class Sweeper:
    def __init__(
        self,
        store: InventoryStore,
        settings: InventorySettings,
        units: UnitOfWorkFactory,
        js: JetStreamContext | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.units = units
        self.js = js

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; trying again in %.1fs", self.settings.sweep_interval_s)
            await asyncio.sleep(self.settings.sweep_interval_s)

    async def sweep_once(self, now: float | None = None) -> SweepReport:
        now = time.time() if now is None else now
        expired = 0
        while True:
            count, _rows = await handlers.expire_overdue(self.units(), now=now, ttl_s=self.settings.reservation_ttl_s)
            expired += count
            if count < self.store.expire_batch:
                break
        if expired:
            EXPIRED.inc(expired)
            log.info("expired %d reservations", expired)
        await self.store.claim_stale_parked(older_than=now - self.settings.park_limit_s)
        dead = await self._publish_dead_letters()
        PARKED.set(await self.store.parked_count())
        return SweepReport(expired, dead)

    async def _publish_dead_letters(self) -> int:
        if self.js is None:
            return 0
        published = 0
        while rows := await self.store.dead_lettering():
            done = []
            for row in rows:
                reason = f"parked longer than {self.settings.park_limit_s:.0f}s: {row.reason}"
                try:
                    await self.js.publish(
                        deadletter_subject(INVENTORY_CONSUMER, row.subject),
                        row.body,
                        headers=deadletter_headers(
                            row.headers,
                            consumer=INVENTORY_CONSUMER,
                            reason=reason,
                            subject=row.subject,
                            stream=COMMERCE,
                            stream_seq=row.stream_seq,
                            delivery_count=1,
                        ),
                    )
                except Exception as exc:
                    log.warning("could not dead-letter parked event %s: %s; will retry", row.msg_id, exc)
                    break
                log.error("gave up on parked event %s (seq %d): %s", row.msg_id, row.stream_seq, reason)
                event_type = Envelope(row.subject, row.body, row.headers, row.stream_seq).event_type
                APPLIED.labels(event_type_label(event_type), Outcome.DEAD_LETTERED.value).inc()
                done.append(row.msg_id)
            await self.store.forget_parked(done)
            published += len(done)
            if len(done) < len(rows):
                break
        return published

    async def refresh_consumer_pending(self) -> None:
        while True:
            if self.js is not None:
                try:
                    info = await self.js.consumer_info(COMMERCE, INVENTORY_CONSUMER)
                    CONSUMER_PENDING.set(info.num_pending or 0)
                except Exception as exc:
                    log.debug("consumer info unavailable: %s", exc)
            await asyncio.sleep(self.settings.metrics_interval_s)
