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

A batch whose rows all go to one stream that takes atomic batches (``allow_atomic``), and that holds
enough rows for one to pay (:func:`libs.bus.atomic_pays`), is sent as one atomic batch instead
(:func:`libs.bus.publish_atomic`): one answer and one fsync for the batch, all of it stored or none.
JetStream refuses a whole atomic batch that repeats a ``Nats-Msg-Id``, so an epoch publishes message by
message until a batch has settled with no duplicate (a new epoch may be re-sending what an earlier one
stored), and sends an atomic batch only once nothing is in flight: a refused batch then never has a
later one stored ahead of it. A refusal ends the epoch like any failure.
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
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs import tracing
from libs.bus import (
    ATOMIC_DISABLED,
    AtomicAck,
    AtomicBatchRefused,
    atomic_pays,
    publish_atomic,
    stream_allows_atomic,
)
from libs.tasks import stop_tasks

from .acks import Ack, BatchOutcome, settle_batch
from .cursor import ReadRows, ScanCursor
from .rows import OutboxRow, UnpublishableRow, publish_headers
from .schedule import IdlePoll
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWork
from .wakeup import Wakeup

__all__ = ["AtomicStreams", "EpochFailed", "EpochStats", "PublishEpoch", "Tuning"]

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
    stall_s: float = 15.0


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
    atomic: asyncio.Future[AtomicAck] | None = None  # sent as one atomic batch: its commit's answer


class AtomicStreams:
    """Which streams take atomic batches, asked of JetStream once per stream and kept across epochs.

    Keyed by a subject's first token: every declared stream holds ``<token>.>`` (``libs.topology``). A
    stream without ``allow_atomic`` (topology not applied yet, or a nats-server before 2.12, whose
    stream info lacks the field) is published to message by message, as is one that refused a batch
    as disabled."""

    def __init__(self) -> None:
        self._allowed: dict[str, bool] = {}

    async def allows(self, js: JetStreamContext, subject: str) -> bool:
        token = subject.partition(".")[0]
        known = self._allowed.get(token)
        if known is None:
            try:
                stream = await js.find_stream_name_by_subject(subject)
            except (nats.errors.Error, js_errors.Error, TimeoutError) as exc:
                log.warning("no stream found for %s (%s)", subject, exc)
                return False
            known = await stream_allows_atomic(js, stream, f"stream {stream}")
            if known is None:
                return False
            self._allowed[token] = known
        return known

    def disable(self, subject: str) -> None:
        self._allowed[subject.partition(".")[0]] = False


_SEND_ERRORS = (UnpublishableRow, nats.errors.Error, OSError)
_NOT_SENT = EpochFailed("not sent: JetStream refused an earlier row of the epoch")
_IDLE = "waiting for rows"
_WAITING_FOR_A_BATCH = "waiting for a batch"
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
        nc: Client | None = None,
        atomic: AtomicStreams | None = None,
    ) -> None:
        """``nc`` (the connection under ``js``) and ``atomic`` turn atomic batches on (see the module)."""
        self.name = name
        self.store = store
        self.js = js
        self.wakeup = wakeup
        self.tuning = tuning
        self.keep_going = keep_going
        self.closed = closed
        self.on_settled = on_settled
        self.nc = nc
        self.atomic = atomic
        self._atomic_ready = False  # a batch settled with no duplicate in this epoch (see the module)
        self.cursor = ScanCursor(commit_ordered=store.commit_ordered, limit=tuning.batch_size)
        self.idle = IdlePoll(maximum_s=tuning.idle_poll_s)
        self.stats = EpochStats()
        self._queue: asyncio.Queue[_Batch | None] = asyncio.Queue()
        self._outstanding = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._last_sweep = time.monotonic()
        # JetStream refused a row of this epoch: nothing more is sent (see _answered).
        self._refused = False
        # Per task: what it does now and since when (see _watch).
        self._doing: dict[str, tuple[str, float]] = {
            "publisher": ("starting", time.monotonic()),
            "settler": (_WAITING_FOR_A_BATCH, time.monotonic()),
        }

    def _progress(self, task: str, stage: str) -> None:
        self._doing[task] = (stage, time.monotonic())

    async def run(self) -> EpochStats:
        """Returns when ``keep_going()`` turns false (after settling what is in flight). Raises on the
        first failure: :class:`EpochFailed`, alone or in an ``ExceptionGroup`` with what else failed."""
        closed_waiter = asyncio.ensure_future(self.closed.wait())
        settled = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish(), name=f"outbox-relay.{self.name}.publish")
                group.create_task(self._settle(closed_waiter, settled), name=f"outbox-relay.{self.name}.settle")
                group.create_task(self._watch(settled), name=f"outbox-relay.{self.name}.watch")
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
                if self.closed.is_set() or self._refused:
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
                    self._progress("publisher", "reading rows")
                    batch_rows = await self._next_rows()
                self._progress("publisher", "rows read")
                if batch_rows is None:
                    continue
                if batch_rows:
                    self.idle.found_rows()
                    # Read the next batch while this one goes out (the read runs in the driver's thread).
                    step = self.cursor.next_step()
                    if not self.cursor.caught_up and isinstance(step, ReadRows) and not self._sweep_due():
                        prefetch = asyncio.create_task(self.store.read(step.after_id, step.up_to, step.limit))
                    self._progress("publisher", "sending rows")
                    if not await self._send(batch_rows):
                        return
                    self._progress("publisher", "rows sent")
                    continue
                if self.cursor.caught_up:
                    if self._outstanding == 0:
                        # Nothing in flight: the next read may sweep from the start at no risk.
                        self.cursor.rewind()
                        self._last_sweep = time.monotonic()
                    self._progress("publisher", _IDLE)
                    await self.wakeup.wait(self.idle.found_nothing())
        finally:
            if prefetch is not None:
                await stop_tasks([prefetch], log=log)
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
        traced = tracing.enabled()
        if not traced and await self._atomic_fits(rows):
            return await self._send_atomic(rows)
        return await self._send_each(rows, traced=traced)

    async def _send_each(self, rows: list[OutboxRow], *, traced: bool) -> bool:
        batch = _Batch(rows, sent_at=time.monotonic())
        publish = self.js.publish_async
        for row in rows:
            if self._refused:
                batch.error = _NOT_SENT
                break
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
            if future.done():
                self._answered(future)
            else:
                future.add_done_callback(self._answered)
        self._outstanding += 1
        self._drained.clear()
        await self._queue.put(batch)
        return batch.error is None

    def _answered(self, future: asyncio.Future[Any]) -> None:
        """A refusal stops the sending at once: were JetStream to refuse a row and take rows sent after it
        (a clustered stream electing a leader answers "no responders" and then stores again), each row
        sent on would be stored ahead of the refused one. The settler then fails the epoch as ever."""
        if not future.cancelled() and future.exception() is not None:
            self._refused = True

    async def _atomic_fits(self, rows: list[OutboxRow]) -> bool:
        if self.nc is None or self.atomic is None or not self._atomic_ready or not atomic_pays(len(rows)):
            return False
        token = rows[0].subject.partition(".")[0]
        if any(row.subject.partition(".")[0] != token for row in rows):
            return False
        return await self.atomic.allows(self.js, rows[0].subject)

    async def _send_atomic(self, rows: list[OutboxRow]) -> bool:
        assert self.nc is not None
        await self._drained.wait()  # nothing in flight: see the module docstring
        if not self._atomic_ready:  # what was in flight settled with duplicates
            return await self._send_each(rows, traced=False)
        batch = _Batch(rows, sent_at=time.monotonic())
        try:
            messages = [(row.subject, row.payload, publish_headers(row)) for row in rows]
            batch.atomic = await publish_atomic(self.nc, messages, timeout_s=self.tuning.ack_timeout_s)
        except _SEND_ERRORS as exc:
            batch.error = exc
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

    async def _watch(self, settled: asyncio.Event) -> None:
        """End the epoch as failed once it has got nowhere for ``stall_s`` (plus a deliberate pause before
        marking), naming what it waited on; returns when the settler has finished."""
        limit = self.tuning.stall_s + self.tuning.pause_before_mark_s
        while not settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(settled.wait(), timeout=min(limit / 4, 1.0))
            now = time.monotonic()
            for task, (stage, since) in self._doing.items():
                # Waiting for a wake-up or for a batch to settle is no stall: there is nothing to do.
                if stage not in (_IDLE, _WAITING_FOR_A_BATCH) and now - since > limit and not settled.is_set():
                    raise EpochFailed(f"no progress for {now - since:.1f}s: the {task} is {stage}")

    async def _settle(self, closed_waiter: asyncio.Future[Any], settled: asyncio.Event) -> None:
        try:
            await self._settle_batches(closed_waiter)
        finally:
            settled.set()

    async def _settle_batches(self, closed_waiter: asyncio.Future[Any]) -> None:
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
                self._progress("settler", "waiting for PubAcks")
                if queued.atomic is not None:
                    results = await self._collect_atomic(queued, queued.atomic, closed_waiter)
                else:
                    results = await self._collect(queued, closed_waiter)
                # Rows after a send error never left: they fail with that error.
                results += [queued.error] * (len(queued.rows) - len(results))
                outcomes.append(settle_batch([row.id for row in queued.rows], results))
                if not outcomes[-1].ok:
                    break  # later batches are read and published again by the next epoch
            self._progress("settler", "marking rows published")
            await self._mark([row_id for outcome in outcomes for row_id in outcome.published])
            self._progress("settler", _WAITING_FOR_A_BATCH)
            self._atomic_ready = all(outcome.ok and not outcome.duplicates for outcome in outcomes)
            for outcome in outcomes:
                self._account(outcome)
            self._outstanding -= len(batches)
            if not outcomes[-1].ok:
                # Before anything in flight counts as drained: a publisher waiting to send an atomic batch
                # must never send it once the epoch is failing.
                self._fail(outcomes[-1])
            if self._outstanding == 0:
                self._drained.set()
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

    async def _collect_atomic(
        self, batch: _Batch, commit: asyncio.Future[AtomicAck], closed_waiter: asyncio.Future[Any]
    ) -> list[Ack | BaseException | None]:
        """One answer for the whole batch: every row acknowledged, or every row failed."""
        remaining = batch.sent_at + self.tuning.ack_timeout_s - time.monotonic()
        if not commit.done() and remaining > 0:
            await asyncio.wait([commit, closed_waiter], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if not commit.done():
            commit.cancel()
            return [None] * len(batch.rows)
        if commit.cancelled():
            return [None] * len(batch.rows)
        error = commit.exception()
        if isinstance(error, AtomicBatchRefused) and error.err_code == ATOMIC_DISABLED and self.atomic is not None:
            self.atomic.disable(batch.rows[0].subject)
        if error is not None:
            return [error] * len(batch.rows)
        ack = commit.result()
        if ack.count != len(batch.rows):
            mismatch = RuntimeError(f"atomic batch of {len(batch.rows)} rows acknowledged with count {ack.count}")
            return [mismatch] * len(batch.rows)
        return [Ack(ack.stream, seq) for seq in ack.seqs()]


async def close_quietly(nc: object, timeout_s: float = 5.0) -> None:
    close = getattr(nc, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), timeout_s)
