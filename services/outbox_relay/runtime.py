"""The relay process minus HTTP: one control connection (lease KV, nudges) and one relay per outbox."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs.bus import close_connection, connect
from libs.config import StockwireSettings
from libs.tasks import stop_tasks
from libs.topology import KV_LEASES

from .relay import OutboxRelay
from .settings import OutboxRelaySettings, resolve_outboxes

__all__ = ["RelayRuntime"]

log = logging.getLogger("stockwire.outbox_relay")


class RelayRuntime:
    def __init__(self, shared: StockwireSettings, settings: OutboxRelaySettings, *, holder: str | None = None) -> None:
        self.shared = shared
        self.settings = settings
        self.nc: Client | None = None
        self._connected = asyncio.Event()
        self._kv: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.relays = [
            OutboxRelay(spec, settings, shared.nats, bucket=self._bucket, holder=holder)
            for spec in resolve_outboxes(settings, shared.data_dir)
        ]
        if settings.lease_ttl_s > shared.topology.lease_ttl_s:
            log.warning(
                "[outbox-relay] lease_ttl_s %.1f is longer than the leases bucket's ttl ([topology] lease_ttl_s %.1f): "
                "an idle key may expire between renewals",
                settings.lease_ttl_s,
                shared.topology.lease_ttl_s,
            )

    @property
    def nats_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def running(self) -> bool:
        """Every relay loop is alive (they only end on stop)."""
        return bool(self._tasks) and all(not task.done() for task in self._tasks[1:])

    def relay(self, name: str) -> OutboxRelay:
        return next(r for r in self.relays if r.name == name)

    async def start(self) -> None:
        log.info("outbox-relay serving %s", ", ".join(repr(r.spec) for r in self.relays))
        self._tasks.append(asyncio.create_task(self._connect(), name="outbox-relay.control"))
        self._tasks += [asyncio.create_task(r.run(), name=f"outbox-relay.{r.name}") for r in self.relays]

    async def _connect(self) -> None:
        self.nc = await connect(self.shared.nats, "stockwire-outbox-relay")
        for relay in self.relays:
            await relay.subscribe_nudges(self.nc)
        self._connected.set()

    async def _bucket(self) -> KeyValue:
        await self._connected.wait()
        if self._kv is None:
            assert self.nc is not None
            timeout = max(0.5, min(2.0, self.settings.lease_ttl_s / 4))
            self._kv = await self.nc.jetstream(timeout=timeout).key_value(KV_LEASES)
        return self._kv

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish what is in flight, give the leases up, close everything."""
        for relay in self.relays:
            await relay.stop()
        relay_tasks = self._tasks[1:]
        if relay_tasks:
            await asyncio.wait(relay_tasks, timeout=grace_s)  # stopped relays end once what is in flight is settled
        # The control task's first connect may lose a cancel (libs.tasks): cancelled until it ends.
        await stop_tasks(self._tasks, log=log)
        for relay in self.relays:
            await relay.close()
        if self.nc is not None:
            await close_connection(self.nc, drain=False)
