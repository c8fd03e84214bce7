"""JetStream stops while rows keep arriving, then comes back: every row arrives, once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import nats
from prometheus_client import generate_latest

from libs.config import TopologySettings
from libs.natsserver import NatsServer
from libs.topology import INVENTORY, apply_topology
from services.outbox_relay.settings import OutboxSpec
from tests.support import eventually

from .support import Outbox, message, metric_value, running_relay, stream_messages


class Writer:
    """Commits one row at a time, as a service would, until stopped."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.written = 0
        self.burst = 0  # set to commit that many rows in the next transaction
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            size, self.burst = (self.burst or 1), 0
            await self.outbox.write([message(n) for n in range(self.written, self.written + size)])
            self.written += size
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.004)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def wrote_more_than(self, count: int) -> bool:
        return self.written > count


async def test_rows_written_while_jetstream_is_down_arrive_in_order(
    own_nats_server: NatsServer, data_dir: Path
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(own_nats_server.url)
    await apply_topology(nc.jetstream(), TopologySettings())
    await nc.close()
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    writer = Writer(outbox)
    try:
        async with running_relay(own_nats_server.url, data_dir, [OutboxSpec(name, url)]):
            writer.start()
            await eventually(lambda: writer.wrote_more_than(30), what="rows flowing")
            await eventually(lambda: _published_some(name), what="relay publishing")

            # A burst, so that JetStream goes away with hundreds of publishes in flight.
            writer.burst = 4000
            await eventually(lambda: writer.wrote_more_than(4030), what="burst committed")
            await eventually(lambda: _backlog_under(outbox, 3000), what="burst being published")
            own_nats_server.stop()
            stopped_at = writer.written
            await eventually(lambda: writer.wrote_more_than(stopped_at + 60), what="rows written meanwhile")
            await eventually(lambda: _backlog_over(outbox, 50), what="rows piling up unpublished")

            own_nats_server.start()
            resumed_at = writer.written
            await eventually(lambda: writer.wrote_more_than(resumed_at + 30), timeout=20, what="rows after restart")
            await writer.stop()
            await eventually(lambda: _all_marked(outbox), timeout=20, what="every row marked published")

        nc = await nats.connect(own_nats_server.url)
        try:
            stored = await stream_messages(nc.jetstream(), INVENTORY)
        finally:
            await nc.close()
        expected = [f"m-{n:06d}" for n in range(writer.written)]
        assert len(stored) == len(expected), "each row exactly once"
        assert [m.msg_id for m in stored] == expected, "in id order, across the outage"
    finally:
        await outbox.close()


async def _published_some(name: str) -> bool:
    return metric_value(generate_latest().decode(), "outbox_relay_published_total", name) > 0


async def _backlog_under(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() < count


async def _backlog_over(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() > count


async def _all_marked(outbox: Outbox) -> bool:
    return await outbox.unpublished() == 0
