from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.config import NatsSettings, StockwireSettings
from libs.natsserver import NatsServer
from libs.signing import generate_standard_secret
from libs.urlpolicy import Resolver, system_resolver
from services.channel_notifier.app import build_app
from services.channel_notifier.runtime import NotifierRuntime
from services.channel_notifier.settings import ChannelNotifierSettings
from stockwire.demo.sinks import ChannelSink, SinkBehaviour, SinkServer
from tests.support import eventually

from .support import ADMIN_TOKEN, AUTH

# Fast schedules so failure paths play out in a second or two, not minutes.
FAST = {
    "retry_base_s": 0.05,
    "retry_cap_s": 0.3,
    "max_attempts": 1000,
    "give_up_after_s": 600.0,
    "connect_timeout_s": 0.5,
    "request_timeout_s": 2.0,
    "lease_margin_s": 0.5,
    "breaker_failure_threshold": 3,
    "breaker_open_s": 0.2,
    "breaker_open_max_s": 0.8,
    "concurrency": 8,
    "poll_interval_s": 0.2,
    "registry_refresh_s": 1.0,
    "pending_gauge_interval_s": 0.2,
}


def notifier_settings(**overrides: Any) -> ChannelNotifierSettings:
    return ChannelNotifierSettings(**{**FAST, **overrides})


def shared_settings(nats_url: str, data_dir: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        admin_token=ADMIN_TOKEN,
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
    )


@dataclass
class Notifier:
    client: AsyncTestClient[Litestar]
    app: Litestar

    @property
    def runtime(self) -> NotifierRuntime:
        return self.app.state.runtime  # type: ignore[no-any-return]

    async def create_channel(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/channels", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def channel(self, name: str) -> dict[str, Any]:
        response = await self.client.get(f"/channels/{name}", headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def deliveries(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        response = await self.client.get(f"/channels/{name}/deliveries", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()["deliveries"]  # type: ignore[no-any-return]


NotifierFactory = Callable[..., AbstractAsyncContextManager[Notifier]]


@pytest.fixture
def notifier_factory(js: JetStreamContext, nats_server: NatsServer, data_dir: Path) -> NotifierFactory:
    @contextlib.asynccontextmanager
    async def make(
        *, resolve: Resolver = system_resolver, database_url: str = "", **overrides: Any
    ) -> AsyncIterator[Notifier]:
        settings = notifier_settings(database_url=database_url, **overrides)
        app = build_app(shared_settings(nats_server.url, data_dir), settings, resolve=resolve)
        async with AsyncTestClient(app=app) as client:
            notifier = Notifier(client, app)
            await eventually(notifier.runtime.consumer_bound, timeout=15, what="notifier consumer bound")
            yield notifier

    return make


@pytest.fixture
async def notifier(notifier_factory: NotifierFactory) -> AsyncIterator[Notifier]:
    async with notifier_factory() as running:
        yield running


@dataclass
class RunningSink:
    sink: ChannelSink
    server: SinkServer
    secret: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., Any]]:
    started: list[SinkServer] = []

    async def make(name: str, *, secrets: Sequence[str] | None = None, **behaviour: Any) -> RunningSink:
        secret = generate_standard_secret()
        sink = ChannelSink(name, list(secrets) if secrets else [secret], SinkBehaviour(**behaviour))
        server = await SinkServer(sink).start()
        started.append(server)
        return RunningSink(sink, server, secret)

    yield make
    for server in started:
        await server.stop()
