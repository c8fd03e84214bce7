"""One outbox: wait for its table, win its lease, then publish epoch after epoch while leader.

Standbys only keep trying the lease and refresh the backlog gauges. The leader also listens for
wake-ups and deletes old published rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs.bus import connect
from libs.config import NatsSettings
from libs.lease import KvLease
from libs.outbox import outbox_nudge_subject
from libs.tasks import stop_tasks

from .acks import BatchOutcome
from .metrics import BACKLOG, DUPLICATES, LEADER, OLDEST_AGE, PUBLISH_ERRORS, PUBLISHED
from .pipeline import AtomicStreams, EpochStats, PublishEpoch, Tuning, close_quietly
from .schedule import ChangeCheck, retry_backoff
from .service_layer import handlers
from .settings import OutboxRelaySettings, OutboxSpec
from .store import OutboxStore, PostgresOutboxStore, SqliteOutboxStore, open_store
from .wakeup import Wakeup, listen_postgres, watch_sqlite

__all__ = ["OutboxRelay", "lease_key"]

log = logging.getLogger("stockwire.outbox_relay")

_CLEANUP_CHUNK = 5000


def lease_key(outbox: str) -> str:
    return f"outbox-relay.{outbox}"


class OutboxRelay:
    def __init__(
        self,
        spec: OutboxSpec,
        settings: OutboxRelaySettings,
        nats: NatsSettings,
        *,
        bucket: Callable[[], Awaitable[KeyValue]],
        holder: str | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.nats = nats
        self.store: OutboxStore = open_store(spec.database_url, spec.table)
        self.wakeup = Wakeup()
        self.atomic_streams = AtomicStreams()
        self.backoff = retry_backoff(settings.retry_initial_s, settings.retry_max_s)
        self.tuning = Tuning(
            batch_size=settings.batch_size,
            max_in_flight=settings.max_in_flight,
            ack_timeout_s=settings.ack_timeout_s,
            idle_poll_s=settings.idle_poll_s,
            sweep_interval_s=settings.sweep_interval_s,
            pause_before_mark_s=settings.debug_pause_before_mark_s,
            stall_s=settings.stall_s,
        )
        self.lease = KvLease(
            bucket, lease_key(spec.name), settings.lease_ttl_s, holder=holder, on_change=self._leader_changed
        )
        self._stopping = False
        self._table_ready = False
        self._nudges: object | None = None
        self.current_epoch: PublishEpoch | None = None
        self._metrics = (
            PUBLISHED.labels(self.name),
            DUPLICATES.labels(self.name),
            PUBLISH_ERRORS.labels(self.name),
        )
        LEADER.labels(self.name).set(0)

    @property
    def table_ready(self) -> bool:
        return self._table_ready

    def _leader_changed(self, leader: bool) -> None:
        LEADER.labels(self.name).set(1 if leader else 0)
        log.info("outbox %s: %s", self.name, "leading" if leader else "standing by")
        self.wakeup.set()

    def _keep_going(self) -> bool:
        return not self._stopping and self.lease.is_leader()

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._wait_for_table()
            tasks.append(asyncio.create_task(self.lease.run(), name=f"outbox-relay.{self.name}.lease"))
            tasks.append(asyncio.create_task(self._refresh_backlog(), name=f"outbox-relay.{self.name}.stats"))
            attempt = 0
            while not self._stopping:
                try:
                    await self._wait_leader()
                    if not self._stopping:
                        await self._lead()
                    attempt = 0
                except Exception:
                    # A bug must not leave a live process that relays nothing: log it, back off, go on.
                    log.exception("outbox %s: relay loop failed", self.name)
                    await self._pause(self.backoff.delay(attempt))
                    attempt += 1
        finally:
            await stop_tasks(tasks, log=log)

    async def _wait_for_table(self) -> None:
        attempt, announced = 0, False
        while not self._stopping:
            try:
                if await self.store.exists():
                    self._table_ready = True
                    log.info("outbox %s: table %s found", self.name, self.spec.table)
                    return
            except Exception as exc:  # the database itself may not be up yet
                log.debug("outbox %s: store not reachable: %s", self.name, exc)
            if not announced:
                log.info("outbox %s: waiting for table %s (its writer creates it)", self.name, self.spec.table)
                announced = True
            await self._pause(min(2.0, self.backoff.delay(attempt)))
            attempt += 1

    async def _wait_leader(self) -> None:
        waiter = asyncio.ensure_future(self.lease.wait_leader())
        try:
            while not waiter.done() and not self._stopping:
                await asyncio.wait([waiter], timeout=0.5)
        finally:
            waiter.cancel()

    async def _lead(self) -> None:
        """Publish while leader: epochs with backoff between failures; wake-up sources and cleanup alongside."""
        helpers = [asyncio.create_task(self._cleanup(), name=f"outbox-relay.{self.name}.cleanup")]
        if isinstance(self.store, SqliteOutboxStore):
            check = ChangeCheck(self.settings.change_check_s, self.settings.change_check_max_s)
            helpers.append(asyncio.create_task(watch_sqlite(self.store, self.wakeup, check)))
        elif isinstance(self.store, PostgresOutboxStore):
            helpers.append(asyncio.create_task(listen_postgres(self.store, self.wakeup, self.backoff)))
        attempt = 0
        try:
            while self._keep_going():
                failure = await self._epoch_failure()
                if failure is None:
                    attempt = 0
                    continue
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning("outbox %s: %s; retrying in %.2fs", self.name, failure, delay)
                await self._pause(delay)
        finally:
            await stop_tasks(helpers, log=log)

    async def _epoch_failure(self) -> BaseException | None:
        """Run one epoch; ``None`` when it ended because leadership or the process did."""
        failure: BaseException | None = None
        try:
            await self._epoch()
        except* Exception as group:
            failure = _first_leaf(group)
        return failure

    async def _epoch(self) -> EpochStats:
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        async def on_disconnected() -> None:
            closed.set()

        nc = await connect(
            self.nats,
            f"stockwire-outbox-relay-{self.name}",
            allow_reconnect=False,
            closed_cb=on_closed,
            disconnected_cb=on_disconnected,
        )
        try:
            js = nc.jetstream(timeout=self.settings.ack_timeout_s, publish_async_max_pending=self.tuning.max_in_flight)
            epoch = PublishEpoch(
                self.name,
                self.store,
                js,
                self.wakeup,
                self.tuning,
                keep_going=self._keep_going,
                closed=closed,
                on_settled=self._count,
                nc=nc,
                atomic=self.atomic_streams,
            )
            self.current_epoch = epoch
            return await epoch.run()
        finally:
            await close_quietly(nc)

    def _count(self, outcome: BatchOutcome) -> None:
        published, duplicates, errors = self._metrics
        if outcome.published:
            published.inc(len(outcome.published))
        if outcome.duplicates:
            duplicates.inc(outcome.duplicates)
        if outcome.failed:
            errors.inc(len(outcome.failed))

    async def _refresh_backlog(self) -> None:
        while True:
            try:
                count, oldest_age_s = await handlers.backlog(self.store, time.time())
            except Exception as exc:
                log.debug("outbox %s: backlog query failed: %s", self.name, exc)
            else:
                BACKLOG.labels(self.name).set(count)
                OLDEST_AGE.labels(self.name).set(oldest_age_s)
            await asyncio.sleep(self.settings.stats_interval_s)

    async def _cleanup(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanup_interval_s)
            before = time.time() - self.settings.retention_s
            try:
                deleted = await handlers.clean_up(self.store, before, _CLEANUP_CHUNK)
                if deleted:
                    log.debug("outbox %s: deleted %d published rows", self.name, deleted)
            except Exception as exc:
                log.warning("outbox %s: cleanup failed: %s", self.name, exc)

    async def subscribe_nudges(self, nc: Client) -> None:
        """A writer may publish to the nudge subject after commit; any message wakes the relay."""

        async def nudge(_msg: object) -> None:
            self.wakeup.nudge()

        self._nudges = await nc.subscribe(outbox_nudge_subject(self.name), cb=nudge)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early to stop."""
        end = time.monotonic() + seconds
        while not self._stopping and (left := end - time.monotonic()) > 0:
            await self.wakeup.wait(min(left, 0.5))

    async def stop(self) -> None:
        """Stop publishing (what is in flight is settled by the running epoch) and release the lease."""
        self._stopping = True
        self.wakeup.set()
        self.lease.stop()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.lease.release()
        LEADER.labels(self.name).set(0)
        await self.store.close()


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
