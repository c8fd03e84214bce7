"""Delivery workers: one per webhook channel, so a slow or dead channel only ever delays itself.

A :class:`ChannelWorker` claims due deliveries of its channel (leases in the store, so at most one per
(channel, SKU) is in flight, across replicas too), sends each with bounded concurrency through the
channel's own connection pool, and hands the results to a :class:`SettlementQueue`, which writes them in
batches. The circuit breaker and ``Retry-After`` pause the channel as a whole; the retry schedule
spaces out each delivery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from libs import tracing
from libs.contracts import decode_availability
from libs.tasks import stop_tasks
from libs.urlpolicy import Resolver, UrlPolicy, system_resolver

from .domain.breaker import CircuitBreaker
from .domain.channel import Channel
from .domain.outcome import AttemptOutcome
from .domain.payload import signed_headers, webhook_body, webhook_id
from .domain.pending import DeliveryStatus, plan_failure
from .domain.records import AttemptRecord, ClaimedDelivery, Settlement
from .domain.retry import RetrySchedule
from .metrics import CIRCUIT_OPEN, DELIVERIES, DELIVERY_LATENCY
from .sender import Attempt, WebhookSender
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWork
from .settings import ChannelNotifierSettings

__all__ = ["ChannelWorker", "GoneHandler", "SettlementQueue", "WorkerConfig"]

log = logging.getLogger("stockwire.channel_notifier.worker")


class SettlementQueue(Protocol):
    """Where a worker leaves the outcome of each delivery; the dispatcher's writer stores them in batches."""

    def put(self, channel_id: int, settlement: Settlement) -> None: ...


GoneHandler = Callable[[Channel, int], Coroutine[Any, Any, None]]
_PREFETCH_ROUNDS = 4
_CLAIM_SPACING_S = 0.01
_background: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class WorkerConfig:
    schedule: RetrySchedule
    concurrency: int
    prefetch: int
    """Deliveries claimed ahead (in flight plus waiting locally), so claims are batches, not one per delivery."""
    lease_s: float
    poll_interval_s: float
    connect_timeout_s: float
    request_timeout_s: float
    max_response_bytes: int
    breaker_failure_threshold: int
    breaker_open_s: float
    breaker_open_max_s: float

    @classmethod
    def from_settings(cls, settings: ChannelNotifierSettings) -> WorkerConfig:
        return cls(
            schedule=RetrySchedule(
                base_s=settings.retry_base_s,
                cap_s=settings.retry_cap_s,
                max_attempts=settings.max_attempts,
                give_up_after_s=settings.give_up_after_s,
                retry_after_max_s=settings.retry_after_max_s,
            ),
            concurrency=max(1, settings.concurrency),
            prefetch=max(1, settings.concurrency) * _PREFETCH_ROUNDS,
            # A claimed delivery may wait for the ones ahead of it (at most _PREFETCH_ROUNDS rounds).
            lease_s=(settings.connect_timeout_s + settings.request_timeout_s) * _PREFETCH_ROUNDS
            + settings.lease_margin_s,
            poll_interval_s=settings.poll_interval_s,
            connect_timeout_s=settings.connect_timeout_s,
            request_timeout_s=settings.request_timeout_s,
            max_response_bytes=settings.max_response_bytes,
            breaker_failure_threshold=settings.breaker_failure_threshold,
            breaker_open_s=settings.breaker_open_s,
            breaker_open_max_s=settings.breaker_open_max_s,
        )


def _occurred_at(text: str) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class ChannelWorker:
    def __init__(
        self,
        channel: Channel,
        *,
        uow: UnitOfWork,
        results: SettlementQueue,
        config: WorkerConfig,
        policy: UrlPolicy,
        owner: str,
        on_gone: GoneHandler,
        resolve: Resolver = system_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self.channel = channel
        self.uow = uow
        self.results = results
        self.config = config
        self.owner = owner
        self.on_gone = on_gone
        self.rng = rng or random.Random()
        self.breaker = CircuitBreaker(
            config.breaker_failure_threshold, config.breaker_open_s, config.breaker_open_max_s
        )
        self.sender = WebhookSender(
            policy,
            connect_timeout_s=config.connect_timeout_s,
            request_timeout_s=config.request_timeout_s,
            max_connections=config.concurrency,
            max_response_bytes=config.max_response_bytes,
            resolve=resolve,
        )
        self._wake = asyncio.Event()
        self._more = True
        """Something may have become due since the last claim came back short."""
        self._last_claim = 0.0
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._queue: collections.deque[ClaimedDelivery] = collections.deque()
        self._paused_until = 0.0
        self._last_refusal: str | None = None
        self._task: asyncio.Task[None] | None = None
        CIRCUIT_OPEN.labels(channel.name).set(0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"channel-worker-{self.channel.name}")

    def wake(self) -> None:
        """New work may be due (recorded updates, written results, an operator's action)."""
        self._more = True
        self._wake.set()

    def update(self, channel: Channel) -> None:
        self.channel = channel
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_tasks([self._task], log=log)
        self._release_queued()
        if self._inflight:
            # In-flight requests finish (bounded by the request timeout) so their results are kept.
            await asyncio.wait(self._inflight, timeout=self.config.request_timeout_s + 1.0)
        await stop_tasks(list(self._inflight), log=log)
        await self.sender.close()

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel %s: worker step failed", self.channel.name)
                await self._sleep(1.0)

    async def _step(self) -> None:
        channel = self.channel
        mono = time.monotonic()
        if not channel.delivers or mono < self._paused_until or self.breaker.is_open(mono):
            # Nothing may be sent now: what waits locally goes back, for whoever may send it when allowed.
            if not channel.delivers:
                self._release_queued()
            elif mono < self._paused_until:
                self._release_queued(self._paused_until)
            else:
                self._release_queued(self.breaker.retry_at())
            CIRCUIT_OPEN.labels(channel.name).set(1 if self.breaker.is_open(mono) else 0)
            if not channel.delivers:
                wait = self.config.poll_interval_s
            elif mono < self._paused_until:
                wait = self._paused_until - mono
            else:
                wait = self.breaker.retry_at() - mono
            await self._idle(wait)
            return
        CIRCUIT_OPEN.labels(channel.name).set(0)
        self._start_queued(channel, mono)
        wanted = self.config.prefetch - len(self._queue) - len(self._inflight)
        half_open = self.breaker.allowance(mono, self.config.concurrency) < self.config.concurrency
        if half_open:
            wanted = min(wanted, 1 - len(self._queue))
        # Claim in batches (a transaction each): when what waits locally runs low, top it up to the prefetch;
        # after a claim came back short, only once something new may be due, and not more often than
        # every _CLAIM_SPACING_S (rows arriving meanwhile are taken together).
        batch_ready = wanted > 0 and (half_open or len(self._queue) <= self.config.concurrency // 2)
        if not batch_ready or not self._more:
            await self._idle(self.config.poll_interval_s)  # a finishing delivery or new work wakes us
            return
        spacing = self._last_claim + _CLAIM_SPACING_S - time.monotonic()
        if spacing > 0 and self._inflight:
            await asyncio.sleep(spacing)
        self._more = False
        self._last_claim = time.monotonic()
        claimed = await handlers.claim_due(self.uow, channel.id, self.owner, wanted, time.time(), self.config.lease_s)
        if len(claimed) == wanted:
            self._more = True  # there may be more behind these
        if claimed:
            self._queue.extend(claimed)
            self._start_queued(channel, time.monotonic())
            return
        if self._inflight or self._queue:
            await self._idle(self.config.poll_interval_s)
            return
        due = await handlers.next_due(self.uow, channel.id)
        if due is None:
            await self._idle(self.config.poll_interval_s)
        else:
            # Sleep until the earliest backoff (or someone else's lease) ends; a due row we could not
            # claim is leased elsewhere or just settled: look again shortly.
            await self._idle(min(self.config.poll_interval_s, max(0.02, due - time.time())))

    async def _idle(self, seconds: float) -> None:
        """Sleep until woken or ``seconds`` pass; in the latter case, look for due work again."""
        await self._sleep(seconds)
        if not self._wake.is_set():
            self._more = True

    def _start_queued(self, channel: Channel, mono: float) -> None:
        while self._queue:
            free = self.config.concurrency - len(self._inflight)
            if self.breaker.allowance(mono, free) <= 0:
                return
            row = self._queue.popleft()
            self.breaker.started(mono)
            task = asyncio.create_task(self._deliver(channel, row))
            self._inflight.add(task)

    def _release_queued(self, not_before_mono: float = 0.0) -> None:
        """Give back what waits locally, due when this channel may be called again (``not_before_mono``)."""
        now = time.time()
        not_before = now + max(0.0, not_before_mono - time.monotonic()) if not_before_mono else None
        while self._queue:
            row = self._queue.popleft()
            self.results.put(row.channel_id, Settlement.released(row.id, self.owner, now, not_before=not_before))

    async def _deliver(self, channel: Channel, row: ClaimedDelivery) -> None:
        try:
            await self._attempt(channel, row)
        except Exception as exc:
            # A failed attempt like any other: released without one, the row would be claimed again at
            # once, forever (a hot loop). Backoff, the breaker and the give-up rules apply.
            log.exception("channel %s: delivery %d failed unexpectedly", channel.name, row.id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"[:500]
            failure, now = Attempt(AttemptOutcome.ERROR, error=error), time.time()
            record = _record(channel, row, failure, now, 0.0)
            self._failed(channel, row, failure, now, time.monotonic(), record)
        finally:
            current_task = asyncio.current_task()
            if current_task is not None:
                self._inflight.discard(current_task)
            self._wake.set()

    async def _attempt(self, channel: Channel, row: ClaimedDelivery) -> None:
        current = self.channel
        if not current.delivers:
            self.breaker.release(time.monotonic())
            self.results.put(channel.id, Settlement.released(row.id, self.owner, time.time()))
            return
        if not current.wants(row.sku):
            self.breaker.release(time.monotonic())
            self.results.put(channel.id, Settlement.drop(row.id, self.owner, time.time()))
            return
        update = decode_availability(row.document)
        body = webhook_body(update, current.buffer)
        headers = signed_headers(
            current.secrets, webhook_id(current.name, row.sku, row.version), body, int(time.time())
        )
        started, sent_mono = time.time(), time.monotonic()
        if tracing.enabled():
            attempt = await self._traced_send(current, row, body, headers)
        else:
            attempt = await self.sender.send(current.url, body, headers)
        now, mono = time.time(), time.monotonic()
        record = _record(current, row, attempt, started, mono - sent_mono)
        if attempt.outcome is AttemptOutcome.DELIVERED:
            self.breaker.record_success(mono)
            DELIVERIES.labels(current.name, attempt.outcome.value).inc()
            occurred = _occurred_at(update.occurred_at)
            if occurred is not None:
                DELIVERY_LATENCY.labels(current.name).observe(max(0.0, now - occurred))
            self.results.put(
                channel.id,
                Settlement.success(row.id, self.owner, row.version, attempt.status_code or 200, now, record),
            )
            return
        if attempt.outcome is AttemptOutcome.GONE:
            self.breaker.release(mono)
            DELIVERIES.labels(current.name, attempt.outcome.value).inc()
            self.channel = _disabled(current)
            self.results.put(
                channel.id, Settlement.released(row.id, self.owner, now, "HTTP 410: channel disabled", attempt=record)
            )
            # Disabling stops this worker, which waits for its deliveries: not from inside one of them.
            task = asyncio.create_task(self.on_gone(current, attempt.status_code or 410))
            _background.add(task)
            task.add_done_callback(_background.discard)
            return
        self._failed(current, row, attempt, now, mono, record)

    async def _traced_send(
        self, channel: Channel, row: ClaimedDelivery, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        """One attempt in a ``channel-notifier deliver`` span, the child of the context the update's INVENTORY
        message came with (kept in the delivery row), whose own context the webhook carries to the channel."""
        attributes = {
            "stockwire.channel": channel.name,
            "stockwire.sku": row.sku,
            "stockwire.version": row.version,
            "stockwire.attempt": row.attempts + 1,
            "http.request.method": "POST",
        }
        parent = _context(row.trace_context)
        with tracing.span("channel-notifier deliver", parent=parent, kind="client", attributes=attributes) as span:
            attempt = await self.sender.send(channel.url, body, dict(tracing.inject(dict(headers), of=span)))
            span.set_attribute("stockwire.delivery.outcome", attempt.outcome.value)
            if attempt.status_code is not None:
                span.set_attribute("http.response.status_code", attempt.status_code)
            if attempt.outcome is not AttemptOutcome.DELIVERED:
                tracing.mark_error(span, attempt.error or attempt.outcome.value)
            return attempt

    def _failed(
        self, channel: Channel, row: ClaimedDelivery, attempt: Attempt, now: float, mono: float, record: AttemptRecord
    ) -> None:
        self.breaker.record_failure(mono)
        if attempt.retry_after_s is not None:
            pause = min(attempt.retry_after_s, self.config.schedule.retry_after_max_s)
            self._paused_until = max(self._paused_until, mono + pause)
        plan = plan_failure(
            self.config.schedule,
            attempts_before=row.attempts,
            pending_since=row.pending_since,
            now=now,
            retry_after_s=attempt.retry_after_s,
            jitter=self.rng.random(),
        )
        gave_up = plan.status is DeliveryStatus.FAILED
        outcome = AttemptOutcome.GAVE_UP if gave_up else attempt.outcome
        DELIVERIES.labels(channel.name, outcome.value).inc()
        CIRCUIT_OPEN.labels(channel.name).set(1 if self.breaker.is_open(mono) else 0)
        if gave_up:
            log.warning(
                "channel %s: gave up delivery %d (version %d) after %d attempts: %s; kept for replay",
                channel.name,
                row.id,
                row.version,
                plan.attempts,
                attempt.error,
            )
        elif attempt.outcome is AttemptOutcome.REFUSED and attempt.error != self._last_refusal:
            self._last_refusal = attempt.error
            log.warning("channel %s: destination refused by the URL policy: %s", channel.name, attempt.error)
        self.results.put(
            channel.id,
            Settlement.failed(
                row.id, self.owner, plan, attempt.status_code, attempt.error or outcome.value, now, record
            ),
        )


def _record(
    channel: Channel, row: ClaimedDelivery, attempt: Attempt, started: float, latency_s: float
) -> AttemptRecord:
    """What the attempt did, for the row's attempt history (its error without the channel's secrets)."""
    return AttemptRecord.of(
        row.attempts + 1,
        started,
        latency_s,
        attempt.outcome.value,
        attempt.status_code,
        attempt.error,
        channel.secrets,
    )


def _context(stored: str | None) -> dict[str, str] | None:
    """The trace context headers a delivery row keeps (JSON), or None (none kept, or unreadable)."""
    if not stored:
        return None
    try:
        headers = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(headers, dict):
        return None
    return {str(k): str(v) for k, v in headers.items()}


def _disabled(channel: Channel) -> Channel:
    return replace(channel, enabled=False, disabled_reason="HTTP 410 Gone")
