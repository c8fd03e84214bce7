"""The channel-notifier HTTP app: the admin API plus health, readiness, metrics and the OpenAPI schema."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from libs.config import StockwireSettings
from libs.http import create_service_app
from libs.server import service_app
from libs.urlpolicy import Resolver, system_resolver

from .admin import admin_router, channel_schemas
from .runtime import NotifierRuntime
from .settings import ChannelNotifierSettings

__all__ = ["build_app", "create_app"]


def build_app(
    shared: StockwireSettings, settings: ChannelNotifierSettings, *, resolve: Resolver = system_resolver
) -> Litestar:
    runtime = NotifierRuntime(shared, settings, resolve=resolve)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = create_service_app(
        "channel-notifier",
        [admin_router(shared.admin_token)],
        readiness={
            "nats_connected": runtime.nats_connected,
            "store_writable": runtime.store_writable,
            "consumer_bound": runtime.consumer_bound,
            "channels_valid": runtime.channels_valid,
        },
        lifespan=[lifespan],
        request_max_body_size=settings.max_request_bytes,
        plugins=[channel_schemas(settings.allow_hosts)],
        description="Fans availability out from the INVENTORY stream to every sales channel (design §6).",
    )
    app.state.runtime = runtime
    return app


def create_app() -> Litestar:
    """The uvicorn factory: reads configuration from the file and the environment."""
    return service_app("channel-notifier", ChannelNotifierSettings, build_app)
