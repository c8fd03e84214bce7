"""A durable pull-consumer runner: fetch in batches, hand them to a handler, settle each message.

What comes with it, so a consumer is a handler and nothing more:
- a watchdog around ``fetch`` (a stalled fetch is abandoned and the subscription re-bound);
- ``in_progress`` heartbeats while a slow batch is being handled, so the server does not redeliver it;
- dead letters: a message the handler gives up on, or one that keeps failing until ``max_deliver``,
  is published to ``deadletter.<consumer>.<subject>`` (durably, with the reason in headers), then
  terminated, so it never blocks the stream;
- metrics per outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram

from libs.bus import HEADER_MSG_ID
from libs.metrics import LATENCY_BUCKETS
from libs.subjects import deadletter_subject

__all__ = [
    "BatchHandler",
    "Decision",
    "Disposition",
    "PullConsumer",
    "dead_letter",
    "per_message",
]

log = logging.getLogger("stockwire.consumer")

_handled = Counter(
    "stockwire_consumer_messages_total", "Messages settled by a consumer runner", ["consumer", "outcome"]
)
_batch_seconds = Histogram(
    "stockwire_consumer_batch_duration_seconds",
    "Time to handle one fetched batch",
    ["consumer"],
    buckets=LATENCY_BUCKETS,
)


class Disposition(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Decision:
    disposition: Disposition
    reason: str = ""
    delay_s: float | None = None

    @classmethod
    def ack(cls) -> Decision:
        return _ACK

    @classmethod
    def retry(cls, reason: str, delay_s: float | None = None) -> Decision:
        return cls(Disposition.RETRY, reason, delay_s)

    @classmethod
    def dead_letter(cls, reason: str) -> Decision:
        return cls(Disposition.DEAD_LETTER, reason)


_ACK = Decision(Disposition.ACK)

BatchHandler = Callable[[Sequence[Msg]], Awaitable[Sequence[Decision]]]
MessageHandler = Callable[[Msg], Awaitable[Decision | None]]


def per_message(handler: MessageHandler) -> BatchHandler:
    """Adapt a one-message handler (None means ack; an exception means retry)."""

    async def handle(batch: Sequence[Msg]) -> list[Decision]:
        decisions = []
        for msg in batch:
            try:
                decisions.append(await handler(msg) or _ACK)
            except Exception as exc:
                log.warning("handler failed on %s: %s", msg.subject, exc, exc_info=True)
                decisions.append(Decision.retry(f"{type(exc).__name__}: {exc}"))
        return decisions

    return handle


async def dead_letter(js: JetStreamContext, consumer: str, msg: Msg, reason: str) -> None:
    """Publish ``msg`` to DEADLETTER with why, awaiting the ack; idempotent per stream sequence."""
    meta = msg.metadata
    headers = dict(msg.headers or {})
    headers.pop(HEADER_MSG_ID, None)
    headers.update(
        {
            "Stockwire-Consumer": consumer,
            "Stockwire-Error": reason[:1000],
            "Stockwire-Original-Subject": msg.subject,
            "Stockwire-Original-Stream": meta.stream,
            "Stockwire-Original-Seq": str(meta.sequence.stream),
            "Stockwire-Delivery-Count": str(meta.num_delivered),
            HEADER_MSG_ID: f"deadletter:{consumer}:{meta.stream}:{meta.sequence.stream}",
        }
    )
    await js.publish(deadletter_subject(consumer, msg.subject), msg.data, headers=headers)


@dataclass
class PullConsumer:
    """Runs one bound durable consumer until :meth:`stop`."""

    js: JetStreamContext
    stream: str
    durable: str
    handler: BatchHandler
    batch_size: int = 256
    fetch_timeout_s: float = 1.0
    watchdog_s: float = 15.0
    max_deliver: int = 8
    heartbeat_s: float = 10.0
    retry_delay_s: Callable[[int], float] = lambda delivered: min(60.0, 0.5 * 2 ** max(0, delivered - 1))

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()
        self._bound = asyncio.Event()

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
            except Exception as exc:
                log.warning("consumer %s: cannot bind to %s (%s); retrying", self.durable, self.stream, exc)
                await self._pause(1.0)
                continue
            self._bound.set()
            log.info("consumer %s: bound to stream %s", self.durable, self.stream)
            try:
                await self._loop(sub)
            finally:
                self._bound.clear()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _loop(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            fetch_started = time.monotonic()
            try:
                batch = await asyncio.wait_for(
                    sub.fetch(self.batch_size, timeout=self.fetch_timeout_s), self.fetch_timeout_s + self.watchdog_s
                )
            except nats.errors.TimeoutError:
                continue
            except TimeoutError:
                # nats-py also raises a bare asyncio.TimeoutError when an empty fetch runs out of time;
                # only a fetch that outlived the watchdog is a stall.
                if time.monotonic() - fetch_started < self.fetch_timeout_s + self.watchdog_s * 0.9:
                    continue
                log.warning("consumer %s: fetch stalled past the watchdog; re-binding", self.durable)
                return
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
                nats.errors.NoRespondersError,
            ) as exc:
                log.warning("consumer %s: %s; waiting for the connection", self.durable, type(exc).__name__)
                await self._pause(0.5)
                continue
            except Exception as exc:
                log.warning("consumer %s: fetch failed (%s); re-binding", self.durable, exc)
                await self._pause(0.5)
                return
            if batch:
                await self._handle(batch)

    async def _handle(self, batch: list[Msg]) -> None:
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._heartbeat(batch))
        try:
            decisions = await self.handler(batch)
        except Exception as exc:
            log.exception("consumer %s: batch handler failed; the batch will be redelivered", self.durable)
            decisions = [Decision.retry(f"{type(exc).__name__}: {exc}")] * len(batch)
        finally:
            heartbeat.cancel()
        _batch_seconds.labels(self.durable).observe(time.perf_counter() - started)
        if len(decisions) != len(batch):
            raise RuntimeError(f"handler returned {len(decisions)} decisions for {len(batch)} messages")
        for msg, decision in zip(batch, decisions, strict=True):
            await self._settle(msg, decision)

    async def _heartbeat(self, batch: list[Msg]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _settle(self, msg: Msg, decision: Decision) -> None:
        try:
            if decision.disposition is Disposition.ACK:
                await msg.ack()
                outcome = "ack"
            elif decision.disposition is Disposition.RETRY and msg.metadata.num_delivered < self.max_deliver:
                delay = decision.delay_s
                if delay is None:
                    delay = self.retry_delay_s(msg.metadata.num_delivered)
                await msg.nak(delay=delay)
                outcome = "retry"
            else:
                reason = decision.reason or "gave up"
                if decision.disposition is Disposition.RETRY:
                    reason = f"failed {msg.metadata.num_delivered} deliveries: {reason}"
                await dead_letter(self.js, self.durable, msg, reason)
                await msg.term()
                log.error(
                    "consumer %s: dead-lettered %s seq %d: %s",
                    self.durable,
                    msg.subject,
                    msg.metadata.sequence.stream,
                    reason,
                )
                outcome = "dead_letter"
        except Exception as exc:
            # Unsettled: the server redelivers after ack_wait, and the handler's idempotency absorbs it.
            log.warning("consumer %s: could not settle %s: %s", self.durable, msg.subject, exc)
            outcome = "unsettled"
        _handled.labels(self.durable, outcome).inc()
