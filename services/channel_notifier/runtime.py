"""The running notifier: store, NATS, the consumer, the registry and the workers, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from libs.backoff import backoff_delay
from libs.bus import close_connection, connect, jetstream
from libs.config import StockwireSettings
from libs.consumer import PullConsumer
from libs.store import ConsumerFloors, database_url
from libs.tasks import stop_tasks
from libs.topology import INVENTORY, KV_AVAILABILITY, NOTIFIER_CONSUMER, consumer_spec
from libs.urlpolicy import Resolver, UrlPolicy, system_resolver

from .dispatcher import Dispatcher
from .domain.channel import Channel, ChannelError
from .ingest import AvailabilityIngest
from .jetstream import AckFloors, keep_channel_consumers, reconcile_channel_consumers
from .kv import AvailabilityKv
from .metrics import PENDING
from .registry import ChannelRegistry
from .settings import ChannelNotifierSettings
from .store import NotifierStore
from .worker import WorkerConfig

__all__ = ["NotifierRuntime"]

log = logging.getLogger("stockwire.channel_notifier")
_STARTUP_ATTEMPTS = 20


def _instance_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class NotifierRuntime:
    def __init__(
        self,
        shared: StockwireSettings,
        settings: ChannelNotifierSettings,
        *,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.shared = shared
        self.settings = settings
        self.resolve = resolve
        self.policy = UrlPolicy.from_hosts(settings.allow_hosts)
        self.owner = _instance_id()
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.consumer: PullConsumer | None = None
        self.config_error: str | None = None
        self.channel_floors = AckFloors()
        self._store: NotifierStore | None = None
        self._registry: ChannelRegistry | None = None
        self._dispatcher: Dispatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def store(self) -> NotifierStore:
        if self._store is None:
            raise RuntimeError("the notifier has not started")
        return self._store

    @property
    def registry(self) -> ChannelRegistry:
        if self._registry is None:
            raise RuntimeError("the notifier has not started")
        return self._registry

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("the notifier has not started")
        return self._dispatcher

    async def start(self) -> None:
        url = database_url(self.settings.database_url, self.shared.data_dir, "channel-notifier")
        self._store = await NotifierStore.open(url)
        self._dispatcher = Dispatcher(
            self._store, WorkerConfig.from_settings(self.settings), self.policy, self.owner, self._on_gone, self.resolve
        )
        self._registry = ChannelRegistry(
            self._dispatcher.uow,
            self.policy,
            self.resolve,
            replay_max_messages=self.settings.replay_max_messages,
            reseed_after_s=self.settings.registry_refresh_s + 1.0,
            on_change=self._dispatcher.apply,
        )
        self._dispatcher.start()
        await self._registry.refresh()
        self._tasks = [
            asyncio.create_task(self._bootstrap(), name="notifier-bootstrap"),
            asyncio.create_task(self._refresh_loop(), name="notifier-registry-refresh"),
            asyncio.create_task(self._pending_loop(), name="notifier-pending-gauge"),
        ]

    async def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
            # Let the batch in hand be recorded and acknowledged rather than redelivered.
            await asyncio.wait(self._tasks[:1], timeout=5.0)
        await stop_tasks(self._tasks, log=log)
        if self._registry is not None:
            await self._registry.close()
        if self._dispatcher is not None:
            await self._dispatcher.close()
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._store.unit_of_work().run(lambda tx: tx.release_leases(self.owner))
        if self.nc is not None:
            await close_connection(self.nc)
        if self._store is not None:
            await self._store.close()

    # -- readiness ----------------------------------------------------------------------------------

    async def nats_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def store_writable(self) -> bool:
        return await self.store.writable()

    async def consumer_bound(self) -> bool:
        return self.consumer is not None and self.consumer.bound

    async def channels_valid(self) -> bool:
        return self.config_error is None

    # -- background -----------------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        self.nc = await connect(self.shared.nats, "stockwire-channel-notifier")
        self.js = jetstream(self.nc)
        self.registry.js = self.js
        kv = await self._bucket(self.js)
        await self._declare_channels()
        await self._reconcile_consumers()
        ingest = AvailabilityIngest(
            self.dispatcher.uow,
            AvailabilityKv(kv, nc=self.nc, bucket=KV_AVAILABILITY),
            lambda: self.registry.channels,
            kv_concurrency=self.settings.kv_concurrency,
        )
        self.consumer = PullConsumer(
            self.js,
            INVENTORY,
            NOTIFIER_CONSUMER,
            ingest.handle,
            batch_size=self.settings.fetch_batch,
            fetch_timeout_s=self.settings.fetch_wait_s,
            linger_s=self.settings.fetch_linger_s,
            max_deliver=self.shared.topology.max_deliver,
            spec=consumer_spec(self.shared.topology, INVENTORY, NOTIFIER_CONSUMER),
            floors=ConsumerFloors(self.store.engine),
        )
        # Everything built so far lives as long as the process: keep it out of the collector's full
        # passes, which otherwise pause the loop for tens of milliseconds (seen in the latency tail).
        gc.freeze()
        await self.consumer.run()

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        attempt = 0
        while True:
            try:
                return await js.key_value(KV_AVAILABILITY)
            except (js_errors.BucketNotFoundError, js_errors.Error, TimeoutError) as exc:
                delay = backoff_delay(attempt, 0.25, 5.0)
                log.warning("kv bucket %s not available (%s); retrying in %.1fs", KV_AVAILABILITY, exc, delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _declare_channels(self) -> None:
        for attempt in range(_STARTUP_ATTEMPTS):
            try:
                await self.registry.declare(self.settings.channels)
                return
            except ChannelError as exc:
                # The configuration is wrong: say so, stay unready, keep serving the channels that are fine.
                self.config_error = exc.detail
                log.error("declared channels: %s", exc.detail)
                return
            except Exception as exc:
                log.warning("declared channels: %s: %s; retrying", type(exc).__name__, exc)
                await asyncio.sleep(backoff_delay(attempt, 0.25, 5.0))
        self.config_error = "the declared channels could not be applied; see the log"
        log.error("declared channels: %s", self.config_error)

    async def _reconcile_consumers(self) -> None:
        assert self.js is not None
        for attempt in range(_STARTUP_ATTEMPTS):
            try:
                await reconcile_channel_consumers(self.js, self.registry.channels, self.channel_floors)
                return
            except Exception as exc:
                log.warning("channel consumers: reconcile failed (%s); retrying", exc)
                await asyncio.sleep(backoff_delay(attempt, 0.25, 5.0))
        log.error("channel consumers: could not reconcile with JetStream; jetstream channels may lack consumers")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            try:
                await self.registry.refresh()
            except Exception as exc:
                log.warning("channel registry refresh failed: %s", exc)
                continue
            if self.js is not None:
                # Orphans are removed at start only: another replica's list may be newer than ours.
                try:
                    await keep_channel_consumers(self.js, self.registry.channels, self.channel_floors)
                except Exception as exc:
                    log.warning("channel consumers: %s: %s", type(exc).__name__, exc)

    async def _pending_loop(self) -> None:
        while True:
            try:
                counts = await self.dispatcher.uow.run(lambda tx: tx.pending_counts())
                for channel in self.registry.channels:
                    if channel.is_webhook:
                        PENDING.labels(channel.name).set(counts.get(channel.id, 0))
            except Exception as exc:
                log.warning("pending gauge: %s", exc)
            await asyncio.sleep(self.settings.pending_gauge_interval_s)

    async def _on_gone(self, channel: Channel, status: int) -> None:
        log.warning("channel %s answered HTTP %d Gone: disabled until an operator enables it", channel.name, status)
        await self.registry.set_enabled(channel, False, f"HTTP {status} Gone from the channel's URL")
