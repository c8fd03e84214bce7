from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from libs.config import NatsSettings, SourceSettings, StockwireSettings
from libs.natsserver import NatsServer
from libs.signing import generate_standard_secret
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings
from tests.support import eventually

CE_SECRET = "ce-secret-current"
SW_SECRET = generate_standard_secret()

ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient]]


def shared_settings(nats_url: str, data_dir: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
        sources={
            "ce": SourceSettings(scheme="commerce-engine", secrets=["ce-secret-old", CE_SECRET]),
            "sw": SourceSettings(scheme="standard-webhooks", secrets=[SW_SECRET]),
        },
    )


@pytest.fixture
def ingress_factory(data_dir: Path) -> ClientFactory:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(
        nats_url: str, *, wait_connected: bool = True, **overrides: object
    ) -> AsyncIterator[AsyncTestClient]:
        settings = IngressSettings(**{"publish_timeout_s": 1.0, **overrides})  # type: ignore[arg-type]
        app = build_app(shared_settings(nats_url, data_dir), settings)
        async with AsyncTestClient(app=app) as client:
            if wait_connected:
                await eventually(lambda: _connected(app), what="ingress connected to NATS")
            yield client

    return make


async def _connected(app) -> bool:  # type: ignore[no-untyped-def]
    return bool(app.state.writer.bus_connected)


@pytest.fixture
async def ingress(js, nats_server: NatsServer, ingress_factory: ClientFactory) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    async with ingress_factory(nats_server.url) as client:
        yield client
