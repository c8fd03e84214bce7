"""The inventory service: the COMMERCE consumer, the sweeper and the HTTP API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from nats.aio.client import Client

from libs.bus import close_connection, connect, jetstream
from libs.config import StockwireSettings
from libs.consumer import PullConsumer
from libs.http import create_service_app
from libs.profiles import SourceProfiles
from libs.server import service_app
from libs.store import ConsumerFloors, database_url
from libs.tasks import stop_tasks
from libs.topology import COMMERCE, INVENTORY_CONSUMER, consumer_spec

from .adapters.wire import read_event
from .api import route_handlers
from .consumer import EventHandler
from .deadletters import deadletter_router, deadletter_schemas
from .nudge import RelayNudge
from .settings import InventorySettings
from .store.reads import InventoryReader
from .store.repository import InventoryStore
from .store.unit_of_work import SqlUnitOfWork
from .sweeper import Sweeper

__all__ = ["build_app", "create_app", "store_url"]

log = logging.getLogger("stockwire.inventory")


def store_url(shared: StockwireSettings, settings: InventorySettings) -> str:
    return database_url(settings.database_url, shared.data_dir, "inventory")


def build_app(shared: StockwireSettings, settings: InventorySettings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        profiles = SourceProfiles(shared.sources)
        log.info("sources and their profiles: %s", profiles.names() or "none configured")
        store = await InventoryStore.open(
            store_url(shared, settings),
            durable_commits=settings.durable_commits,
            pool_size=settings.pool_size,
            expire_batch=settings.expire_batch,
            reader=lambda envelope: read_event(envelope, profiles),
        )
        nudge = RelayNudge()

        def units() -> SqlUnitOfWork:
            return SqlUnitOfWork(store, after_commit=nudge)

        sweeper = Sweeper(store, settings, units)
        app.state.store = store
        app.state.units = units
        app.state.reader = InventoryReader(store.engine)
        app.state.consumer = None
        app.state.nc = None

        async def run_bus() -> None:
            nc = await connect(shared.nats, "stockwire-inventory")
            js = jetstream(nc)
            app.state.nc = nudge.nc = nc
            sweeper.js = js
            if settings.consume:
                consumer = PullConsumer(
                    js,
                    COMMERCE,
                    INVENTORY_CONSUMER,
                    EventHandler(
                        units,
                        max_deliver=shared.topology.max_deliver,
                        ttl_s=settings.reservation_ttl_s,
                        profiles=profiles,
                    ),
                    batch_size=settings.batch_size,
                    fetch_timeout_s=settings.fetch_timeout_s,
                    linger_s=settings.fetch_linger_s,
                    watchdog_s=settings.watchdog_s,
                    max_deliver=shared.topology.max_deliver,
                    heartbeat_s=settings.heartbeat_s,
                    spec=consumer_spec(shared.topology, COMMERCE, INVENTORY_CONSUMER),
                    floors=ConsumerFloors(store.engine),
                )
                app.state.consumer = consumer
                await consumer.run()

        bus = asyncio.create_task(run_bus(), name="inventory-consumer")
        background = [
            asyncio.create_task(sweeper.run(), name="inventory-sweeper"),
            asyncio.create_task(sweeper.refresh_consumer_pending(), name="inventory-pending-gauge"),
        ]
        try:
            yield
        finally:
            consumer = app.state.consumer
            if consumer is not None:
                consumer.stop()
                # Let the batch in hand commit and be acknowledged; anything unacknowledged is redelivered.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(bus), settings.fetch_timeout_s + 10)
            await stop_tasks([bus, *background], log=log)
            if app.state.nc is not None:
                await close_connection(app.state.nc)
            await store.close()

    async def nats_connected() -> bool:
        nc: Client | None = app.state.nc
        return nc is not None and nc.is_connected

    async def store_writable() -> bool:
        store: InventoryStore = app.state.store
        return await store.writable()

    async def consumer_bound() -> bool:
        return not settings.consume or (app.state.consumer is not None and app.state.consumer.bound)

    app = create_service_app(
        "inventory",
        [*route_handlers(settings, shared.admin_token), deadletter_router(shared.admin_token)],
        readiness={
            "nats_connected": nats_connected,
            "store_writable": store_writable,
            "consumer_bound": consumer_bound,
        },
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        plugins=[deadletter_schemas()],
        description="An append-only stock ledger fed by COMMERCE: reservations, stock levels and audit trails.",
    )
    return app


def create_app() -> Litestar:
    """The uvicorn factory: reads configuration from the file and the environment."""
    return service_app("inventory", InventorySettings, build_app)
