"""The COMMERCE batch handler: apply a fetched batch in one transaction, then settle each message.

:class:`libs.consumer.PullConsumer` does the fetching (with its watchdog), the ``in_progress``
heartbeats while a batch is applied, and dead-lettering. Batches are applied one at a time, in
stream order, so the events of one order and of one SKU are applied in the order they were
fetched; several replicas on PostgreSQL share the work, serialised per order and per SKU by the
store's locks. Messages are acknowledged only after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from nats.aio.msg import Msg

from libs import tracing
from libs.consumer import Decision
from libs.profiles import SourceProfiles
from libs.profiles.canonical import Unmapped

from .adapters.wire import Envelope, MalformedEvent, read_event
from .domain.events import CommerceEvent
from .domain.workspace import Outcome
from .metrics import APPLIED, APPLY_SECONDS, OVERSELL_REJECTIONS, UNMAPPED, event_type_label, unmapped_label
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWorkFactory

__all__ = ["EventHandler", "envelope_of", "incoming"]

log = logging.getLogger("stockwire.inventory")


def envelope_of(msg: Msg) -> Envelope:
    return Envelope(msg.subject, msg.data, dict(msg.headers or {}), msg.metadata.sequence.stream)


def incoming(envelope: Envelope, profiles: SourceProfiles) -> handlers.Incoming:
    """One message read through its source's profile, or the reason it can never apply."""
    try:
        return handlers.Incoming(read_event(envelope, profiles))
    except MalformedEvent as exc:
        keys = CommerceEvent(
            envelope.msg_id,
            envelope.event_type,
            Unmapped(event_type=envelope.event_type),
            envelope.stream_seq,
            envelope=envelope,
            replay=envelope.replay,
        )
        return handlers.Incoming(keys, str(exc))


class EventHandler:
    """The consumer's batch handler: ``units`` opens a unit of work per batch; ``ttl_s`` is the lifetime of
    an order's reservation; ``max_deliver`` tells the last delivery of a failing event (then dead-lettered)."""

    def __init__(
        self, units: UnitOfWorkFactory, *, max_deliver: int, ttl_s: float, profiles: SourceProfiles | None = None
    ) -> None:
        self.units = units
        self.max_deliver = max_deliver
        self.ttl_s = ttl_s
        self.profiles = profiles or SourceProfiles({})

    async def __call__(self, batch: Sequence[Msg]) -> list[Decision]:
        envelopes = [envelope_of(msg) for msg in batch]
        started = time.perf_counter()
        items = [incoming(envelope, self.profiles) for envelope in envelopes]
        if tracing.enabled():
            return await self._traced(batch, envelopes, items, started)
        applied = await handlers.apply_batch(self.units(), items, now=time.time(), ttl_s=self.ttl_s)
        return self._settle(batch, envelopes, items, applied, started)

    async def _traced(
        self, batch: Sequence[Msg], envelopes: list[Envelope], items: list[handlers.Incoming], started: float
    ) -> list[Decision]:
        """The batch with an ``inventory apply`` span per event (the child of its COMMERCE message's context),
        whose context the event's outbox messages carry, and the ledger effect as its attributes."""
        spans = [
            tracing.start_span(
                "inventory apply",
                parent=envelope.headers,
                kind="consumer",
                attributes={
                    "messaging.system": "nats",
                    "messaging.message.id": envelope.msg_id,
                    "stockwire.source": envelope.source,
                    "stockwire.event_type": item.event.event_type,
                    "stockwire.stream_seq": envelope.stream_seq,
                },
            )
            for envelope, item in zip(envelopes, items, strict=True)
        ]
        trace = {item.event.msg_id: dict(tracing.inject({}, of=span)) for item, span in zip(items, spans, strict=True)}
        try:
            applied = await handlers.apply_batch(self.units(), items, now=time.time(), ttl_s=self.ttl_s, trace=trace)
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.end()
            raise
        for item, span, result in zip(items, spans, applied.results, strict=True):
            span.set_attribute("stockwire.outcome", result.outcome.value)
            span.set_attribute("stockwire.kinds", sorted(applied.kinds.get(item.event.msg_id, ())))
            span.set_attribute("stockwire.skus", sorted(item.event.skus))
            span.end()
        return self._settle(batch, envelopes, items, applied, started)

    def _settle(
        self,
        batch: Sequence[Msg],
        envelopes: list[Envelope],
        items: list[handlers.Incoming],
        applied: handlers.BatchResult,
        started: float,
    ) -> list[Decision]:
        APPLY_SECONDS.observe(time.perf_counter() - started)
        if applied.oversell_rejections:
            OVERSELL_REJECTIONS.labels("event").inc(applied.oversell_rejections)
        for event_type, outcome in applied.settled:
            APPLIED.labels(event_type_label(event_type), outcome.value).inc()
        for envelope, item, result in zip(envelopes, items, applied.results, strict=True):
            # Unmapped is visible: kept in COMMERCE, counted by source and type (design §3).
            unmapped = item.malformed is None and isinstance(item.event.payload, Unmapped)
            if unmapped and result.outcome is Outcome.IGNORED:
                UNMAPPED.labels(envelope.source, unmapped_label(envelope.source, item.event.event_type)).inc()
        return [
            self._decide(msg, envelope, result.outcome, result.detail)
            for msg, envelope, result in zip(batch, envelopes, applied.results, strict=True)
        ]

    def _decide(self, msg: Msg, envelope: Envelope, outcome: Outcome, detail: str) -> Decision:
        label = event_type_label(envelope.event_type)
        if outcome is Outcome.FAILED:
            last = msg.metadata.num_delivered >= self.max_deliver
            APPLIED.labels(label, Outcome.DEAD_LETTERED.value if last else "failed").inc()
            return Decision.retry(detail)
        if outcome is Outcome.DEAD_LETTERED or (outcome is Outcome.DUPLICATE and detail == Outcome.DEAD_LETTERED):
            # A duplicate of a dead-lettered event: publish it again (DEADLETTER de-duplicates) in case
            # the first publication was lost before the ack.
            if outcome is Outcome.DEAD_LETTERED:
                APPLIED.labels(label, outcome.value).inc()
                log.warning(
                    "event %s (seq %d) cannot be applied: %s",
                    envelope.msg_id,
                    envelope.stream_seq,
                    detail,
                    extra=tracing.event_log_ids(envelope.headers),
                )
            return Decision.dead_letter(detail if outcome is Outcome.DEAD_LETTERED else "cannot be applied")
        APPLIED.labels(label, outcome.value).inc()
        return Decision.ack()
