"""Make an event durable: JetStream first (awaiting the PubAck), the spool when JetStream is away."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.bus import ATOMIC_MIN_BATCH, MAX_ATOMIC_BATCH
from libs.contracts import FirstBody
from libs.outbox import OutboxMessage

from .identity import EventIds, body_digest, conflict_evidence
from .metrics import CONFLICTS, PUBLISH_SECONDS
from .service_layer import handlers
from .spool import Spool
from .webhook import InboundWebhook

__all__ = ["RECORD_BATCH", "Durability", "DurableWriter", "Outcome", "StoreUnavailable"]

log = logging.getLogger("stockwire.ingress")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    SPOOLED = "spooled"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Durability:
    outcome: Outcome
    stream_seq: int | None = None
    first_digest: str | None = None
    """For a conflict: the SHA-256 of the body the id was first received with."""


class StoreUnavailable(RuntimeError):
    """Neither JetStream nor the spool could take the event: the producer must retry (503)."""


# Any answer but a PubAck (no responders, no stream, a timeout, a closed or reconnecting
# connection, an API error) means the event is not known to be durable in JetStream.
_BUS_ERRORS = (nats.errors.Error, js_errors.Error, asyncio.TimeoutError, OSError)
_REMEMBER_BATCH = 500
_MAX_RECORDING = 4000
_RECORD_LINGER_S = 0.25
RECORD_BATCH = 8 * ATOMIC_MIN_BATCH
"""The ``event-ids`` records that send their batch without waiting out the linger. nats-server stages
each atomic batch in a file store of its own, so bigger batches cost it less per record: ``python -m
bench.atomic_batches`` (2 cores, ``sync_interval: always``, 200-byte messages, median of 3) gives
0.03 ms of its CPU a message at 64, 0.01 at 256. At 10,000 orders/min (~1,200 webhooks a second) the
batches fill in ~0.2 s, within the linger, as 64 did in ~50 ms: records wait longer, the 2xx does not."""


class DurableWriter:
    """Writes each event to JetStream, or to the spool when JetStream cannot take it.

    ``startup_wait_s``: for that long after start, an event that arrives before the first NATS
    connection waits for it rather than being spooled at once. A spooled event holds every later one
    behind it until the relay has drained the spool (see :class:`Spool`), so a freshly started ingress
    that spooled its first requests while a healthy JetStream was one connect away would queue the
    whole stream behind the relay. Past that time (NATS really away), events are spooled at once.

    ``record_linger_s``: how long the ``event-ids`` records of accepted webhooks wait for more to join
    their batch, unless enough for a full one (:data:`RECORD_BATCH`) are queued.
    """

    def __init__(
        self,
        spool: Spool,
        publish_timeout_s: float,
        startup_wait_s: float = 0.0,
        record_linger_s: float = _RECORD_LINGER_S,
    ) -> None:
        self.spool = spool
        self.publish_timeout_s = publish_timeout_s
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.ids: EventIds | None = None
        self._remembered_up_to = 0
        self._to_record: list[tuple[str, FirstBody]] = []
        self._recording_ids: set[str] = set()  # queued or being recorded: a re-sent id is not queued twice
        self._recorder: asyncio.Task[None] | None = None
        self._record_batch_full = asyncio.Event()
        self._record_linger_s = record_linger_s
        self._attached = asyncio.Event()
        self._startup_deadline = time.monotonic() + startup_wait_s

    def attach(self, nc: Client, js: JetStreamContext) -> None:
        """Use ``nc``/``js`` from now on (called once the first connection is up)."""
        self.nc, self.js = nc, js
        self.ids = EventIds(nc, js)
        self._attached.set()

    async def _first_connection(self) -> None:
        """Wait, while the start-up window lasts, for the first NATS connection (see the class docstring)."""
        remaining = self._startup_deadline - time.monotonic()
        if remaining > 0 and not self._attached.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attached.wait(), remaining)

    @property
    def bus_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def _must_queue(self) -> bool:
        """Whether events acknowledged earlier still wait in the spool (see :class:`Spool`)."""
        try:
            return await handlers.must_spool(self.spool.unit_of_work(), self.spool.gate)
        except Exception as exc:
            # Rows may wait and cannot be counted: publishing now could overtake them.
            log.warning("cannot tell whether the spool is drained (%s); spooling", exc)
            return True

    async def write(self, event: InboundWebhook) -> Durability:
        """Make ``event`` durable: JetStream (awaiting the PubAck) unless earlier events still wait in the
        spool or JetStream cannot take it, the spool otherwise. Raises :class:`StoreUnavailable` when
        neither can."""
        await self._first_connection()
        digest = body_digest(event.body)
        if self.js is not None and self.ids is not None and self.bus_connected:
            try:
                first = await self.ids.first(event.msg_id)
                if first is not None:
                    return await self._against(event, first, digest)
                if not await self._must_queue():
                    return await self._publish(self.js, event, digest)
            except _BUS_ERRORS as exc:
                log.warning("publish of %s failed (%s: %s); spooling", event.msg_id, type(exc).__name__, exc)
        existing = await self._spool(OutboxMessage(event.subject, event.msg_id, event.body, event.headers()), event)
        if existing is not None and body_digest(existing) != digest:
            return await self._against(event, FirstBody(digest=body_digest(existing)), digest)
        return Durability(Outcome.SPOOLED)

    async def _publish(self, js: JetStreamContext, event: InboundWebhook, digest: str) -> Durability:
        started = time.perf_counter()
        ack = await js.publish(event.subject, event.body, timeout=self.publish_timeout_s, headers=event.headers())
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        if ack.duplicate:
            # Inside the dedup window: the PubAck names the stored message; compare its body.
            stored = await js.get_msg(ack.stream, ack.seq, direct=True)
            first = FirstBody(digest=body_digest(stored.data or b""), stream_seq=ack.seq)
            if event.msg_id not in self._recording_ids:
                # Else the first delivery's record is on its way; a second one written now would make
                # JetStream refuse the whole batch that record is in (its key would exist by then).
                await self._remember(event.msg_id, first)
            return await self._against(event, first, digest)
        # Recorded in the background: the record serves only a reuse that comes after the dedup window
        # (inside it, the duplicate PubAck above catches it), so the answer need not wait for a second
        # JetStream write. A crash in the milliseconds before it lands leaves that one id unrecorded.
        self._record_soon(event.msg_id, FirstBody(digest=digest, stream_seq=ack.seq))
        return Durability(Outcome.ACCEPTED, ack.seq)

    def _record_soon(self, msg_id: str, first: FirstBody) -> None:
        if len(self._to_record) >= _MAX_RECORDING:
            log.warning("%d digests still to be recorded; %s not recorded", len(self._to_record), msg_id)
            return
        self._recording_ids.add(msg_id)
        self._to_record.append((msg_id, first))
        if len(self._to_record) >= RECORD_BATCH:
            self._record_batch_full.set()
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record_queued())

    async def _record_queued(self) -> None:
        """Record what :meth:`_record_soon` queued: together, as one atomic batch of creates where the
        bucket allows it and they are enough for one to pay (one answer and one fsync for the lot),
        otherwise (or when the batch is refused because an id is known already) id by id."""
        try:
            while self._to_record and self.ids is not None:
                if len(self._to_record) < RECORD_BATCH:
                    # A record serves only an id reused after the dedup window (minutes): waiting a moment
                    # gathers the records of the webhooks that arrive meanwhile into one batch, large
                    # enough for the batch to cost the server less than the records one by one.
                    self._record_batch_full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._record_batch_full.wait(), self._record_linger_s)
                batch = self._to_record[:MAX_ATOMIC_BATCH]
                del self._to_record[: len(batch)]
                try:
                    if not await self.ids.remember_all(batch):
                        await asyncio.gather(*(self._record(msg_id, first) for msg_id, first in batch))
                finally:
                    self._recording_ids.difference_update(msg_id for msg_id, _ in batch)
        finally:
            self._recorder = None

    async def flush_records(self, timeout_s: float) -> None:
        """Record what waits for its batch now rather than after the linger, waiting at most ``timeout_s``
        seconds; from then on nothing lingers. For shutdown: a record left queued would leave its id to
        the dedup window alone."""
        self._record_linger_s = 0.0
        self._record_batch_full.set()
        recorder = self._recorder
        if recorder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(recorder), timeout_s)

    async def _record(self, msg_id: str, first: FirstBody) -> None:
        known = await self._remember(msg_id, first)
        if known is not None and known.digest != first.digest:
            # Two bodies of one id published at once after the window: both are in COMMERCE now, and the
            # inbox applies the earlier one. Say so; the producer got a 200 for each.
            log.warning(
                "webhook id %s was published with two different bodies at once (sha256 %s and %s)",
                msg_id,
                known.digest,
                first.digest,
            )

    async def _remember(self, msg_id: str, first: FirstBody) -> FirstBody | None:
        assert self.ids is not None
        try:
            return await self.ids.remember(msg_id, first)
        except _BUS_ERRORS as exc:
            # The event is durable; only a reuse of its id after the window could now go unseen.
            log.warning("could not record the body digest of %s (%s: %s)", msg_id, type(exc).__name__, exc)
            return None

    async def _against(self, event: InboundWebhook, first: FirstBody, digest: str) -> Durability:
        if first.digest == digest:
            return Durability(Outcome.DUPLICATE, first.stream_seq)
        evidence = conflict_evidence(event, first.digest)
        log.warning(
            "webhook id %s reused with a different body (first sha256 %s, now %s): refused, kept in DEADLETTER",
            event.msg_id,
            first.digest,
            digest,
        )
        published = False
        if self.js is not None and self.bus_connected:
            try:
                await self.js.publish(
                    evidence.subject, evidence.payload, timeout=self.publish_timeout_s, headers=evidence.headers
                )
                published = True
            except _BUS_ERRORS as exc:
                log.warning("evidence of %s not published (%s); spooling it", event.msg_id, exc)
        if not published:
            await self._spool(evidence, event)
        return Durability(Outcome.CONFLICT, first.stream_seq, first.digest)

    async def _spool(self, message: OutboxMessage, event: InboundWebhook) -> bytes | None:
        try:
            return await handlers.spool(
                self.spool.unit_of_work(), self.spool.gate, message, event.received_at.timestamp()
            )
        except Exception as exc:
            log.error("spool write of %s failed: %s", message.msg_id, exc)
            raise StoreUnavailable(str(exc)) from exc

    async def remember_relayed(self) -> int:
        """Record the body digests of spooled events the relay has published since the last call, so
        that a reuse of their ids after the dedup window is seen too. Returns how many were looked at."""
        looked = 0
        # Until caught up: a backlog relayed after an outage must be recorded before the dedup window,
        # which covers these ids in the meantime, has passed.
        while self.ids is not None and self.bus_connected:
            rows = await self.spool.published_after(self._remembered_up_to, _REMEMBER_BATCH)
            for row_id, msg_id, payload in rows:
                digest = body_digest(payload)
                known = await self._remember(msg_id, FirstBody(digest=digest))
                if known is not None and known.digest != digest:
                    # Spooled while JetStream was away, against an id whose first body the spool did not
                    # hold: the relay's publish was deduplicated (or ignored by the inbox). Seen late,
                    # but seen; the body stays in the spool table until the relay's retention ends.
                    CONFLICTS.labels(msg_id.partition(":")[0]).inc()
                    log.warning(
                        "spooled webhook %s was first received with another body (first sha256 %s, spooled %s); "
                        "the first stands",
                        msg_id,
                        known.digest,
                        digest,
                    )
                self._remembered_up_to = row_id
            looked += len(rows)
            if len(rows) < _REMEMBER_BATCH:
                break
        return looked
