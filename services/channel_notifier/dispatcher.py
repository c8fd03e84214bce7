"""The dispatcher: one :class:`.worker.ChannelWorker` per enabled webhook channel, and their results writer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from libs.tasks import stop_tasks
from libs.urlpolicy import Resolver, UrlPolicy, system_resolver

from .domain.channel import Channel
from .domain.records import Settlement
from .metrics import CIRCUIT_OPEN
from .service_layer import handlers
from .service_layer.unit_of_work import UnitOfWork
from .store import NotifierStore
from .worker import ChannelWorker, GoneHandler, WorkerConfig

__all__ = ["Dispatcher", "ResultWriter"]

log = logging.getLogger("stockwire.channel_notifier.dispatcher")
_FLUSH_S = 10.0
"""The longest the shutdown waits for the delivery results still queued to be written."""


class ResultWriter:
    """Collects settlements and writes whatever has accumulated in one transaction (the unit of work
    wakes their channels' workers once it commits)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._queue: list[tuple[int, Settlement]] = []
        self._ready = asyncio.Event()
        self._stopping = False

    def put(self, channel_id: int, settlement: Settlement) -> None:
        self._queue.append((channel_id, settlement))
        self._ready.set()

    async def run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._ready.wait()
                self._ready.clear()
                continue
            batch, self._queue = self._queue, []
            try:
                await handlers.settle(self.uow, batch)
            except Exception:
                # The leases stay until written or expired, so nothing is sent twice in the meantime.
                log.exception("writing %d delivery results failed; retrying", len(batch))
                self._queue[:0] = batch
                await asyncio.sleep(0.5)
                self._ready.set()
                continue

    async def flush_and_stop(self, task: asyncio.Task[None]) -> None:
        self._stopping = True
        self._ready.set()
        # Not wait_for: on its timeout it waits, without a bound, for the task it cancelled.
        done, _ = await asyncio.wait([task], timeout=_FLUSH_S)
        if not done or task.cancelled():
            log.warning("delivery results not written at shutdown: %d; their leases will expire", len(self._queue))
        await stop_tasks([task], log=log)  # ends it if it still runs; what it raised is retrieved either way


class Dispatcher:
    """Keeps exactly one worker per enabled webhook channel, and wakes them when work arrives."""

    def __init__(
        self,
        store: NotifierStore,
        config: WorkerConfig,
        policy: UrlPolicy,
        owner: str,
        on_gone: GoneHandler,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.uow = store.unit_of_work(self.wake)
        """Transactions on the store that wake the channels they gave work to, once committed."""
        self.config = config
        self.policy = policy
        self.owner = owner
        self.on_gone = on_gone
        self.resolve = resolve
        self.results = ResultWriter(self.uow)
        self.workers: dict[int, ChannelWorker] = {}
        self._results_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._results_task = asyncio.create_task(self.results.run(), name="delivery-results")

    async def apply(self, channels: Iterable[Channel]) -> None:
        async with self._lock:
            wanted = {c.id: c for c in channels if c.delivers}
            for channel_id in [i for i in self.workers if i not in wanted]:
                worker = self.workers.pop(channel_id)
                await worker.stop()
                CIRCUIT_OPEN.labels(worker.channel.name).set(0)
            for channel_id, channel in wanted.items():
                running = self.workers.get(channel_id)
                if running is None:
                    worker = ChannelWorker(
                        channel,
                        uow=self.uow,
                        results=self.results,
                        config=self.config,
                        policy=self.policy,
                        owner=self.owner,
                        on_gone=self.on_gone,
                        resolve=self.resolve,
                    )
                    self.workers[channel_id] = worker
                    worker.start()
                else:
                    running.update(channel)

    def wake(self, channel_ids: Iterable[int] | None = None) -> None:
        targets = self.workers.values() if channel_ids is None else (self.workers.get(i) for i in channel_ids)
        for worker in targets:
            if worker is not None:
                worker.wake()

    async def close(self) -> None:
        async with self._lock:
            for worker in list(self.workers.values()):
                await worker.stop()
            self.workers.clear()
        if self._results_task is not None:
            await self.results.flush_and_stop(self._results_task)
