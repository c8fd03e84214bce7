"""A durable pull-consumer runner: fetch in batches, hand them to a handler, settle each message.

What comes with it, so a consumer is a handler and nothing more:
- a watchdog around ``fetch`` (a stalled fetch is abandoned and the subscription re-bound);
- ``in_progress`` heartbeats while a slow batch is being handled, so the server does not redeliver it;
- ownership of the durable (with a :class:`libs.topology.ConsumerSpec`): created, updated, and
  re-created from its ack floor when it goes missing;
- one retry schedule (:func:`retry_delay_s`);
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
from nats.js import api as js_api
from nats.js import errors as js_errors
from prometheus_client import Counter, Histogram

from libs.backoff import backoff_ceiling
from libs.contracts import deadletter_headers
from libs.metrics import LATENCY_BUCKETS
from libs.pull import PullRequests
from libs.store import ConsumerFloors
from libs.subjects import deadletter_subject
from libs.topology import DEADLETTER, ConsumerSpec, apply_consumer

__all__ = [
    "BatchHandler",
    "Decision",
    "Disposition",
    "PullConsumer",
    "dead_letter",
    "per_message",
    "retry_delay_s",
    "retry_schedule",
]

log = logging.getLogger("stockwire.consumer")

_handled = Counter(
    "stockwire_consumer_messages_total", "Messages settled by a consumer runner", ["consumer", "outcome"]
)
_recreated = Counter(
    "stockwire_consumer_recreated_total",
    "Durable consumers re-created by their runner after they went missing",
    ["consumer"],
)
_batch_size = Histogram(
    "stockwire_consumer_batch_size",
    "Messages in one fetched batch, as handed to the handler",
    ["consumer"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
# How long a top-up fetch waits when nothing more has arrived by the end of the linger.
_TOP_UP_WAIT_S = 0.002
_batch_seconds = Histogram(
    "stockwire_consumer_batch_duration_seconds",
    "Time to handle one fetched batch",
    ["consumer"],
    buckets=LATENCY_BUCKETS,
)


class Disposition(enum.Enum):
    """How the runner settles a message: acknowledge, retry later (nak with a delay), or dead-letter."""

    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Decision:
    """A handler's verdict on one message: its disposition, why (for logs and dead letters), and for a
    retry an explicit delay in seconds (default: the retry schedule, :func:`retry_delay_s`)."""

    disposition: Disposition
    reason: str = ""
    delay_s: float | None = None

    @classmethod
    def ack(cls) -> Decision:
        """Done with it: acknowledge."""
        return _ACK

    @classmethod
    def retry(cls, reason: str, delay_s: float | None = None) -> Decision:
        """Deliver it again later (dead-lettered at the consumer's ``max_deliver``)."""
        return cls(Disposition.RETRY, reason, delay_s)

    @classmethod
    def dead_letter(cls, reason: str) -> Decision:
        """It can never succeed: publish it to DEADLETTER with ``reason``, then terminate it."""
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
    headers = deadletter_headers(
        msg.headers or {},
        consumer=consumer,
        reason=reason,
        subject=msg.subject,
        stream=meta.stream,
        stream_seq=meta.sequence.stream,
        delivery_count=meta.num_delivered,
    )
    await js.publish(deadletter_subject(consumer, msg.subject), msg.data, headers=headers)


def retry_delay_s(delivered: int) -> float:
    """The retry schedule, in seconds: how long after its ``delivered``-th failed delivery (1-based) a
    message is delivered again: 0.5 s doubling (0.5, 1, 2, 4, 8, 16, 32 …), capped at 60 s.

    This is the one schedule of every consumer the runner serves: the runner naks with these delays
    and the declared consumers carry no ``backoff`` list (nats-server would apply one to naks too and
    override these). With ``max_deliver`` 8 a message that always fails reaches DEADLETTER about
    63.5 s after its first delivery, inside the streams' 2-minute duplicate window.
    """
    # No jitter: the schedule is documented and measured end to end; nak delays are per message anyway.
    return backoff_ceiling(delivered - 1, 0.5, 60.0)


def retry_schedule(max_deliver: int, delay_s: Callable[[int], float] = retry_delay_s) -> list[float]:
    """The waits between the deliveries of a message that always fails: ``max_deliver - 1`` entries."""
    return [delay_s(n) for n in range(1, max_deliver)]


@dataclass
class PullConsumer:
    """Runs one durable pull consumer until :meth:`stop`.

    With ``spec`` the runner owns the durable: at every (re)bind it creates it, or brings it to the
    spec; when it disappears (deleted by hand, lost with a server) it is re-created to resume after
    the last stream sequence known to be acknowledged (:attr:`ack_floor`), never from the start, so
    what is redelivered is only what may not have been settled (the handler's idempotency absorbs it).
    With ``floors`` the ack floor is also recorded in the service's store (every ``floor_save_s`` at
    most), so a durable lost while the service was down resumes there too.

    Timing: a live batch is kept from redelivery by ``in_progress`` heartbeats every third of the
    consumer's ``ack_wait`` (at most ``heartbeat_s``), so a short ``ack_wait`` bounds how long the
    batch of a process that died waits. Failed messages are retried on :func:`retry_delay_s`. A
    handler that raises (its store cannot write, say) fails the batch as a whole: the runner keeps
    the batch, retries it in place and reports not bound, without using up the messages' deliveries.

    Batching: a fetch returns as soon as one message is there, so a consumer that keeps up hands its
    handler batches of one or two, and pays each batch's fixed cost (a transaction, a pull request, its
    "no messages" answer) per message. With ``linger_s`` a batch shorter than ``batch_size`` waits that
    long and takes what arrived meanwhile: at most ``linger_s`` more latency, far fewer batches
    (bench/README.md, CPU per order).
    """

    js: JetStreamContext
    stream: str
    durable: str
    handler: BatchHandler
    batch_size: int = 256
    fetch_timeout_s: float = 1.0
    linger_s: float = 0.0
    watchdog_s: float = 15.0
    max_deliver: int = 8
    heartbeat_s: float = 10.0
    retry_delay_s: Callable[[int], float] = retry_delay_s
    spec: ConsumerSpec | None = None
    floors: ConsumerFloors | None = None
    floor_poll_s: float = 1.0
    floor_save_s: float = 5.0
    max_handler_retry_s: float = 5.0

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()
        self._bound = asyncio.Event()
        self.ack_floor = 0
        """Highest stream sequence at and below which every message of this consumer is settled."""
        self.failing: str | None = None
        """Why the handler failed the batch in hand as a whole; None while it succeeds."""
        self._ack_wait_s = 30.0
        self._floor_checked = 0.0
        self._window_checked = False
        self._stream_created: str | None = None
        self._saved: tuple[str | None, int] = (None, 0)
        self._saved_at = 0.0

    @property
    def bound(self) -> bool:
        """True while the durable exists, the last fetch reached it and the handler is not failing."""
        return self._bound.is_set() and self.failing is None

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand is settled."""
        self._stopping.set()

    async def run(self) -> None:
        """Bind (creating the durable from its spec where one is given), then fetch, handle and settle
        batches until :meth:`stop`, re-binding after a stalled fetch or a deleted durable."""
        while not self._stopping.is_set():
            try:
                sub = await self._bind()
            except Exception as exc:
                log.warning("consumer %s: cannot bind to %s (%s); retrying", self.durable, self.stream, exc)
                await self._pause(1.0)
                continue
            if self._stopping.is_set():
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                break
            self._bound.set()
            log.info("consumer %s: bound to stream %s", self.durable, self.stream)
            try:
                await self._loop(sub)
            finally:
                self._bound.clear()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        # Stopping: the floor as the server has it now, for the next start.
        with contextlib.suppress(Exception):
            self._note(await self.js.consumer_info(self.stream, self.durable))
            await self._save_floor(now_or_never=True)

    async def _bind(self) -> PullRequests:
        if self.spec is not None:
            await self._resume_point()
            action = await apply_consumer(self.js, self.spec, resume_after=self.ack_floor)
            if action.startswith("created") and self.ack_floor > 0:
                _recreated.labels(self.durable).inc()
                log.warning("consumer %s: the durable was missing; %s", self.durable, action)
            elif not action.endswith("up to date"):
                log.info("consumer %s: %s", self.durable, action)
            await self._check_dedup_window()
        # Raises NotFoundError when the durable is missing: binding alone would not notice.
        self._note(await self.js.consumer_info(self.stream, self.durable))
        return await PullRequests.bind(self.js, self.stream, self.durable)

    async def _resume_point(self) -> None:
        """Where a re-created durable starts: the floor known for this very stream (a stream deleted and
        created again starts over), from memory or, after a restart, from :attr:`floors`."""
        info = await self.js.stream_info(self.stream)
        created = info.created.isoformat() if info.created else ""
        if created == self._stream_created:
            return
        if self._stream_created is not None:
            log.warning("consumer %s: stream %s was created anew; its floor starts over", self.durable, self.stream)
        self._stream_created = created
        self.ack_floor = 0
        if self.floors is not None:
            self.ack_floor = await self.floors.load(self._key, created)

    @property
    def _key(self) -> str:
        return f"{self.stream}/{self.durable}"

    async def _save_floor(self, *, now_or_never: bool = False) -> None:
        if self.floors is None or self._stream_created is None:
            return
        now = time.monotonic()
        if (self._stream_created, self.ack_floor) == self._saved:
            return
        if now - self._saved_at < self.floor_save_s and not now_or_never:
            return
        self._saved_at = now
        try:
            await self.floors.save(self._key, self._stream_created, self.ack_floor)
        except Exception as exc:
            log.warning("consumer %s: could not record the ack floor: %s", self.durable, exc)
            return
        self._saved = (self._stream_created, self.ack_floor)

    async def _check_dedup_window(self) -> None:
        """A re-created durable redelivers what was settled since the ack floor, which a message being
        retried holds back for up to the schedule's total; a dead letter published again then must
        still fall inside DEADLETTER's duplicate window to be dropped as a duplicate."""
        if self._window_checked:
            return
        try:
            window = (await self.js.stream_info(DEADLETTER)).config.duplicate_window or 0.0
        except Exception as exc:
            log.warning("consumer %s: cannot read %s's duplicate window: %s", self.durable, DEADLETTER, exc)
            return
        self._window_checked = True
        staleness = max(self.floor_poll_s, self.floor_save_s if self.floors is not None else 0.0)
        span = sum(retry_schedule(self.max_deliver, self.retry_delay_s)) + staleness
        if span >= window:
            log.warning(
                "consumer %s: retries span %.0fs, not under DEADLETTER's %.0fs duplicate window: a durable "
                "re-created after a loss may publish a dead letter twice",
                self.durable,
                span,
                window,
            )

    def _note(self, info: js_api.ConsumerInfo) -> None:
        self._floor_checked = time.monotonic()
        if info.ack_floor is not None:
            self.ack_floor = info.ack_floor.stream_seq or 0
        if info.config.ack_wait:
            self._ack_wait_s = float(info.config.ack_wait)

    async def _check_floor(self) -> bool:
        """Refresh :attr:`ack_floor` now and then; False when the durable has gone."""
        if time.monotonic() - self._floor_checked < self.floor_poll_s:
            return True
        try:
            self._note(await self.js.consumer_info(self.stream, self.durable))
        except js_errors.NotFoundError:
            log.warning("consumer %s: the durable has gone; re-binding", self.durable)
            return False
        except Exception as exc:
            self._floor_checked = time.monotonic()
            log.debug("consumer %s: consumer info failed: %s", self.durable, exc)
        await self._save_floor()
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _loop(self, sub: PullRequests) -> None:
        while not self._stopping.is_set():
            if not await self._check_floor():
                return
            try:
                batch = await asyncio.wait_for(
                    sub.fetch(self.batch_size, timeout=self.fetch_timeout_s), self.fetch_timeout_s + self.watchdog_s
                )
            except TimeoutError:
                # An empty fetch returns []: only one that outlived the watchdog raises this, a stall.
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
                # A durable that was deleted answers 503 here; re-binding re-creates it (with a spec).
                log.warning("consumer %s: fetch failed (%s); re-binding", self.durable, exc)
                await self._pause(0.5)
                return
            if batch:
                if self.linger_s > 0 and len(batch) < self.batch_size:
                    batch += await self._top_up(sub, self.batch_size - len(batch))
                _batch_size.labels(self.durable).observe(len(batch))
                await self._handle(batch)

    async def _top_up(self, sub: PullRequests, room: int) -> list[Msg]:
        """What arrived within ``linger_s`` of a short batch, up to ``room`` messages (none on any error:
        the batch in hand goes on as it is)."""
        # The messages in hand are not yet covered by heartbeats: well inside their ack_wait.
        await self._pause(min(self.linger_s, self._ack_wait_s / 3))
        if self._stopping.is_set():
            return []
        try:
            # The first pull asks without waiting; the wait given only bounds an empty answer.
            return await asyncio.wait_for(sub.fetch(room, timeout=_TOP_UP_WAIT_S), _TOP_UP_WAIT_S + self.watchdog_s)
        except Exception:
            return []

    async def _handle(self, batch: list[Msg]) -> None:
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._heartbeat(batch))
        try:
            decisions = await self._decide(batch)
        finally:
            heartbeat.cancel()
        _batch_seconds.labels(self.durable).observe(time.perf_counter() - started)
        if decisions is None:
            # Stopping with a batch the handler could not take: hand it back for another process now.
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.nak()
            return
        if len(decisions) != len(batch):
            raise RuntimeError(f"handler returned {len(decisions)} decisions for {len(batch)} messages")
        outcomes: dict[str, int] = {}
        for msg, decision in zip(batch, decisions, strict=True):
            outcome = await self._settle(msg, decision)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # Counted once per outcome and batch rather than per message: a label lookup and a locked
        # update each, on the hot path.
        for outcome, count in outcomes.items():
            _handled.labels(self.durable, outcome).inc(count)

    async def _decide(self, batch: list[Msg]) -> Sequence[Decision] | None:
        """The handler's decisions; a handler that raises is retried in place (heartbeats keep the
        batch ours) until it answers, or None once the runner is stopping."""
        attempt = 0
        while True:
            try:
                decisions = await self.handler(batch)
            except Exception as exc:
                attempt += 1
                self.failing = f"{type(exc).__name__}: {exc}"
                _handled.labels(self.durable, "handler_failed").inc(len(batch))
                log.exception(
                    "consumer %s: batch handler failed (attempt %d); retrying the batch", self.durable, attempt
                )
                if self._stopping.is_set():
                    return None
                await self._pause(min(self.max_handler_retry_s, self.retry_delay_s(attempt)))
                if self._stopping.is_set():
                    return None
                continue
            if self.failing is not None:
                log.info("consumer %s: batch handler recovered after %d failed attempts", self.durable, attempt)
            self.failing = None
            return decisions

    async def _heartbeat(self, batch: list[Msg]) -> None:
        while True:
            await asyncio.sleep(min(self.heartbeat_s, self._ack_wait_s / 3))
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _settle(self, msg: Msg, decision: Decision) -> str:
        """Ack, nak or dead-letter ``msg``; returns the outcome (the ``stockwire_consumer_messages_total`` label)."""
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
        return outcome
