"""The five services' real apps in process, on the session's nats-server: what tests of what every service
shares ask them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.config import NatsSettings, StockwireSettings
from libs.natsserver import NatsServer
from services.channel_notifier.app import build_app as build_notifier
from services.channel_notifier.settings import ChannelNotifierSettings
from services.console.app import build_app as build_console
from services.console.settings import ConsoleSettings
from services.ingress.app import build_app as build_ingress
from services.ingress.settings import IngressSettings
from services.inventory.app import build_app as build_inventory
from services.inventory.settings import InventorySettings
from services.outbox_relay.app import build_app as build_relay
from services.outbox_relay.settings import OutboxRelaySettings, OutboxSpec

TOKEN = "every-service-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _shared(nats_url: str, data_dir: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        admin_token=TOKEN,
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
    )


def _apps(nats_url: str, data_dir: Path) -> dict[str, Litestar]:
    shared = _shared(nats_url, data_dir)
    relayed = OutboxSpec(f"t{uuid.uuid4().hex[:8]}", f"sqlite+aiosqlite:///{data_dir / 'relayed.db'}")
    # Nothing listens there: the console's pages say what they could not read.
    nowhere = "http://127.0.0.1:9"
    console = ConsoleSettings(
        request_timeout_s=0.5,
        ingress_url=nowhere,
        inventory_url=nowhere,
        channel_notifier_url=nowhere,
        outbox_relay_url=nowhere,
    )
    return {
        "ingress": build_ingress(shared, IngressSettings()),
        "inventory": build_inventory(shared, InventorySettings(consume=False, sweep_interval_s=3600.0)),
        "channel-notifier": build_notifier(shared, ChannelNotifierSettings()),
        "outbox-relay": build_relay(shared, OutboxRelaySettings(outboxes=[relayed])),
        "console": build_console(shared, console),
    }


@pytest.fixture
async def services(js: JetStreamContext, nats_server: NatsServer, data_dir: Path) -> AsyncIterator[dict[str, Any]]:
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(AsyncTestClient(app=app))
            for name, app in _apps(nats_server.url, data_dir).items()
        }
