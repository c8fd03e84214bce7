"""The outbox-relay HTTP app: health and metrics only (port 8083); the relaying runs in its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from libs.config import StockwireSettings
from libs.http import create_service_app
from libs.server import service_app

from .runtime import RelayRuntime
from .settings import OutboxRelaySettings

__all__ = ["build_app", "create_app"]


def build_app(shared: StockwireSettings, settings: OutboxRelaySettings, *, holder: str | None = None) -> Litestar:
    runtime = RelayRuntime(shared, settings, holder=holder)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    async def relaying() -> bool:
        return runtime.running

    app = create_service_app(
        "outbox-relay",
        [],
        # Neither NATS nor the outbox tables are readiness conditions: as a sidecar the relay shares its
        # pod's readiness with ingress, which must stay in rotation (spooling) while JetStream is away.
        # The metrics say what the relay is waiting for (leader, backlog, age of the oldest row).
        readiness={"relaying": relaying},
        lifespan=[lifespan],
        description="Publishes every committed outbox row to JetStream, once, in order. Health and metrics only.",
    )
    app.state.runtime = runtime
    return app


def create_app() -> Litestar:
    """The uvicorn factory: reads configuration from the file and the environment."""
    return service_app("outbox-relay", OutboxRelaySettings, build_app)
