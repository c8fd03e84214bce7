"""Ingress says at start when JetStream may acknowledge a webhook before it is on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from libs.config import NatsSettings, StockwireSettings
from libs.natsserver import NatsServer, free_port
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings
from tests.support import eventually


async def test_ingress_warns_at_start_when_nats_does_not_sync(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="stockwire.ingress")
    with NatsServer(store_dir=tmp_path / "nats", sync_interval="2m", monitor_port=free_port()) as server:
        shared = StockwireSettings(
            data_dir=str(tmp_path / "data"), nats=NatsSettings(servers=[server.url], monitor_url=server.monitor_url)
        )
        async with AsyncTestClient(app=build_app(shared, IngressSettings())):

            async def warned() -> bool:
                return "does not fsync before acknowledging" in caplog.text

            await eventually(warned, what="ingress warned about JetStream durability")
