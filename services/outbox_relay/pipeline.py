"""One publishing epoch: read rows in id order, publish them pipelined, mark them after their PubAcks.

An epoch owns one NATS connection that never reconnects. That is what keeps the stream in id order:
on one connection the server receives, and stores, messages in the order they were sent, so when the
connection breaks what JetStream holds of the epoch is a prefix of it. A client that reconnected would
instead flush its buffered publishes into the new connection while earlier ones were lost with the old
one. So any failure (a publish refused, a PubAck not back in time, the connection gone) ends the epoch;
the relay backs off, opens a new connection and starts again from the oldest unpublished row, and
JetStream answers ``duplicate`` for whatever had been stored without its PubAck reaching us.

Two tasks share the work: the *publisher* reads batches and sends them with ``publish_async``
(``max_in_flight`` unacknowledged at most) and the *settler* waits for each batch's PubAcks in order,
marks the acknowledged rows published, and ends the epoch at the first failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs import tracing

from .acks import Ack, BatchOutcome, settle_batch
from .cursor import ReadRows, ScanCursor
from .rows import OutboxRow, UnpublishableRow, publish_headers
from .schedule import IdlePoll
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWork
from .wakeup import Wakeup

__all__ = ["EpochFailed", "EpochStats", "PublishEpoch", "Tuning"]

log = logging.getLogger("stockwire.outbox_relay")


class EpochFailed(Exception):
    """The epoch ended on a failure; rows not acknowledged are published again by the next one."""


@dataclass(frozen=True)
class Tuning:
    batch_size: int = 500
    max_in_flight: int = 4000
    ack_timeout_s: float = 5.0
    idle_poll_s: float = 1.0
    sweep_interval_s: float = 30.0
    pause_before_mark_s: float = 0.0


@dataclass
class EpochStats:
    published: int = 0
    duplicates: int = 0
    errors: int = 0
    horizon_waits: int = 0  # PostgreSQL: reads held back because a transaction below the bound was open


@dataclass
class _Batch:
    rows: list[OutboxRow]
    futures: list[asyncio.Future[js_api.PubAck]] = field(default_factory=list)
    sent_at: float = 0.0
    error: BaseException | None = None  # raised while sending rows[len(futures)]; later rows not sent


_SEND_ERRORS = (UnpublishableRow, nats.errors.Error, OSError)
_MAX_BATCHES_PER_MARK = 8


class PublishEpoch:
    def __init__(
        self,
        name: str,
        store: UnitOfWork,
        js: JetStreamContext,
        wakeup: Wakeup,
        tuning: Tuning,
        *,
        keep_going: Callable[[], bool],
        closed: asyncio.Event,
        on_settled: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.js = js
        self.wakeup = wakeup
        self.tuning = tuning
        self.keep_going = keep_going
        self.closed = closed
        self.on_settled = on_settled
        self.cursor = ScanCursor(commit_ordered=store.commit_ordered, limit=tuning.batch_size)
        self.idle = IdlePoll(maximum_s=tuning.idle_poll_s)
        self.stats = EpochStats()
        self._queue: asyncio.Queue[_Batch | None] = asyncio.Queue()
        self._outstanding = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._last_sweep = time.monotonic()

    async def run(self) -> EpochStats:
        """Returns when ``keep_going()`` turns false (after settling what is in flight). Raises on the
        first failure: :class:`EpochFailed`, alone or in an ``ExceptionGroup`` with what else failed."""
        closed_waiter = asyncio.ensure_future(self.closed.wait())
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish(), name=f"outbox-relay.{self.name}.publish")
                group.create_task(self._settle(closed_waiter), name=f"outbox-relay.{self.name}.settle")
        finally:
            closed_waiter.cancel()
        if self.closed.is_set():
            raise EpochFailed("the NATS connection closed")
        return self.stats

    # --- publisher -----------------------------------------------------------------------------

    async def _publish(self) -> None:
        prefetch: asyncio.Task[list[OutboxRow]] | None = None
        try:
            while self.keep_going():
                if self.closed.is_set():
                    return  # the settler fails what was in flight
                batch_rows: list[OutboxRow] | None
                if prefetch is not None:
                    batch_rows = prefetched = await prefetch
                    prefetch = None
                    self.cursor.rows_read([row.id for row in prefetched])
                else:
                    if self._sweep_due():
                        await self._drained.wait()
                        self.cursor.rewind()
                        self._last_sweep = time.monotonic()
                    batch_rows = await self._next_rows()
                if batch_rows is None:
                    continue
                if batch_rows:
                    self.idle.found_rows()
                    # Read the next batch while this one goes out (the read runs in the driver's thread).
                    step = self.cursor.next_step()
                    if not self.cursor.caught_up and isinstance(step, ReadRows) and not self._sweep_due():
                        prefetch = asyncio.create_task(self.store.read(step.after_id, step.up_to, step.limit))
                    if not await self._send(batch_rows):
                        return
                    continue
                if self.cursor.caught_up:
                    if self._outstanding == 0:
                        # Nothing in flight: the next read may sweep from the start at no risk.
                        self.cursor.rewind()
                        self._last_sweep = time.monotonic()
                    await self.wakeup.wait(self.idle.found_nothing())
        finally:
            if prefetch is not None:
                prefetch.cancel()
                await asyncio.gather(prefetch, return_exceptions=True)
            await self._queue.put(None)

    def _sweep_due(self) -> bool:
        return time.monotonic() - self._last_sweep >= self.tuning.sweep_interval_s

    async def _next_rows(self) -> list[OutboxRow] | None:
        """The next batch to publish, ``[]`` when caught up, ``None`` when a PostgreSQL bound is not final yet."""
        rows = await handlers.next_rows(self.store, self.cursor)
        if rows is handlers.NotYet.HORIZON_OPEN:
            self.stats.horizon_waits += 1
            await self.wakeup.wait(min(self.idle.found_nothing(), 0.05))
        return None if isinstance(rows, handlers.NotYet) else rows

    async def _send(self, rows: list[OutboxRow]) -> bool:
        batch = _Batch(rows, sent_at=time.monotonic())
        publish = self.js.publish_async
        traced = tracing.enabled()
        for row in rows:
            try:
                headers = publish_headers(row)
                if traced and tracing.has_context(headers):
                    future = await self._traced_publish(row, headers)
                else:
                    future = await publish(row.subject, row.payload, headers=headers)
            except _SEND_ERRORS as exc:
                batch.error = exc
                break
            batch.futures.append(future)
        self._outstanding += 1
        self._drained.clear()
        await self._queue.put(batch)
        return batch.error is None

    async def _traced_publish(self, row: OutboxRow, headers: dict[str, str]) -> asyncio.Future[js_api.PubAck]:
        """Publish ``row`` in an ``outbox-relay publish`` span, the child of the context its writer stored in
        the row's headers; the message carries the span's context on instead."""
        attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": row.subject,
            "messaging.message.id": row.msg_id,
            "stockwire.outbox": self.name,
            "stockwire.outbox_row": row.id,
        }
        with tracing.span("outbox-relay publish", parent=headers, kind="producer", attributes=attributes) as span:
            tracing.inject(headers, of=span)
            return await self.js.publish_async(row.subject, row.payload, headers=headers)

    # --- settler -------------------------------------------------------------------------------

    async def _settle(self, closed_waiter: asyncio.Future[Any]) -> None:
        while (batch := await self._queue.get()) is not None:
            # Batches already waiting are settled together: one mark for all of them.
            batches, ending = [batch], False
            while len(batches) < _MAX_BATCHES_PER_MARK and not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued is None:
                    ending = True
                    break
                batches.append(queued)
            outcomes = []
            for queued in batches:
                results = await self._collect(queued, closed_waiter)
                # Rows after a send error never left: they fail with that error.
                results += [queued.error] * (len(queued.rows) - len(results))
                outcomes.append(settle_batch([row.id for row in queued.rows], results))
                if not outcomes[-1].ok:
                    break  # later batches are read and published again by the next epoch
            await self._mark([row_id for outcome in outcomes for row_id in outcome.published])
            for outcome in outcomes:
                self._account(outcome)
            self._outstanding -= len(batches)
            if self._outstanding == 0:
                self._drained.set()
            if not outcomes[-1].ok:
                self._fail(outcomes[-1])
            if ending:
                return

    async def _mark(self, ids: list[int]) -> None:
        if not ids:
            return
        if self.tuning.pause_before_mark_s > 0:
            log.warning(
                "outbox %s: %d rows acknowledged; pausing %.1fs before marking them (debug setting)",
                self.name,
                len(ids),
                self.tuning.pause_before_mark_s,
            )
            await asyncio.sleep(self.tuning.pause_before_mark_s)
        await handlers.mark_published(self.store, ids, time.time())

    def _account(self, outcome: BatchOutcome) -> None:
        self.stats.published += len(outcome.published)
        self.stats.duplicates += outcome.duplicates
        self.stats.errors += len(outcome.failed)
        if self.on_settled is not None:
            self.on_settled(outcome)

    def _fail(self, outcome: BatchOutcome) -> None:
        if outcome.stored_after_failure:
            log.error(
                "outbox %s: row %d failed (%s) while %d later rows of its batch were stored; unless JetStream "
                "stored it too (then it answers duplicate), it lands after them",
                self.name,
                outcome.failed[0],
                outcome.first_error,
                outcome.stored_after_failure,
            )
        raise EpochFailed(
            f"row {outcome.failed[0]} not published ({outcome.first_error}); "
            f"{len(outcome.failed)} rows of the batch to retry"
        )

    async def _collect(self, batch: _Batch, closed_waiter: asyncio.Future[Any]) -> list[Ack | BaseException | None]:
        """Wait for the batch's PubAcks until its deadline or until the connection closes."""
        deadline = batch.sent_at + self.tuning.ack_timeout_s
        pending = [f for f in batch.futures if not f.done()]
        while pending and not closed_waiter.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # PubAcks come back in order: once the last one is in, the others nearly always are.
            waiters: list[asyncio.Future[Any]] = [pending[-1], closed_waiter]
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            pending = [f for f in pending if not f.done()]
        results: list[Ack | BaseException | None] = []
        for future in batch.futures:
            if not future.done():
                future.cancel()  # frees its in-flight slot
                results.append(None)
            elif future.cancelled():
                results.append(None)
            elif (error := future.exception()) is not None:
                results.append(error)
            else:
                ack = future.result()
                results.append(Ack(ack.stream, ack.seq, bool(ack.duplicate)))
        return results


async def close_quietly(nc: object, timeout_s: float = 5.0) -> None:
    close = getattr(nc, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), timeout_s)
