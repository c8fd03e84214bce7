"""A service's NATS connection ends at shutdown within its bound, whatever state the server is in:
``libs.bus.close_connection``."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from libs.bus import close_connection
from libs.natsserver import NatsServer


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own: it is frozen and stopped here."""
    server = NatsServer(store_dir=tmp_path / "store").start()
    try:
        yield server
    finally:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


async def test_a_drain_delivers_what_was_published_and_closes(own_server: NatsServer) -> None:
    nc = await nats.connect(own_server.url)
    received: list[bytes] = []

    async def keep(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    await nc.subscribe("probe", cb=keep)
    await nc.publish("probe", b"one")
    await asyncio.wait_for(close_connection(nc, timeout_s=5.0), 15)
    assert nc.is_closed
    assert received == [b"one"]


async def test_a_server_that_stopped_answering_does_not_leave_the_connection_open(own_server: NatsServer) -> None:
    nc = await nats.connect(own_server.url, max_reconnect_attempts=-1)
    await nc.subscribe("probe")
    assert own_server.process is not None
    os.kill(own_server.process.pid, signal.SIGSTOP)
    # nats-py's drain alone waits 10 s for its flush, raises, and leaves the connection open.
    await asyncio.wait_for(close_connection(nc, timeout_s=1.0), 8)
    assert nc.is_closed
