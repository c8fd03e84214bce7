"""The relay as processes (``python -m services.outbox_relay``), killed with SIGKILL as a crash would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.topology import INVENTORY
from tests.integration.outbox_relay.support import Outbox, message, metric_value, stream_messages
from tests.support import eventually, service_process

pytestmark = pytest.mark.e2e


class RelayProcess:
    def __init__(self, nats_url: str, data_dir: Path, name: str, db: Path, log: Path, **settings: object) -> None:
        self.name = name
        self.port, self.child = service_process(
            "outbox_relay",
            "outbox-relay",
            nats_url=nats_url,
            data_dir=data_dir,
            log=log,
            settings={
                "outboxes": json.dumps([{"name": name, "database_url": f"sqlite:///{db}"}]),
                "lease_ttl_s": 1.0,
                "retry_max_s": 0.3,
                "stats_interval_s": 0.1,
                **settings,
            },
        )

    def start(self) -> RelayProcess:
        self.child.start()
        return self

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as response:
                return response.read().decode()
        except OSError:
            return ""

    async def metric(self, name: str) -> float:
        text = await asyncio.to_thread(self.metrics)
        return metric_value(text, name, self.name)

    async def is_leader(self) -> bool:
        return await self.metric("outbox_relay_leader") == 1.0

    async def ready(self) -> bool:
        return "outbox_relay_leader" in await asyncio.to_thread(self.metrics)


@pytest.fixture
def processes() -> Iterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    try:
        yield started
    finally:
        for relay in started:
            relay.child.kill()


async def test_a_kill_between_publish_and_mark_republishes_as_duplicates_once_in_the_stream(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, processes: list[RelayProcess]
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    db = data_dir / "inventory.db"
    outbox = await Outbox.create(f"sqlite+aiosqlite:///{db}")
    try:
        rows = [message(n) for n in range(300)]
        await outbox.write(rows)
        first = RelayProcess(nats_server.url, data_dir, name, db, data_dir / "first.log", debug_pause_before_mark_s=60)
        processes.append(first.start())
        # Every row is in JetStream and none is marked: the relay sits between publish and mark.
        await eventually(lambda: _stream_count(js, len(rows)), timeout=30, what="rows in the stream")
        await eventually(lambda: _logged(data_dir / "first.log", "before marking"), what="relay paused before marking")
        assert await outbox.unpublished() == len(rows)
        first.child.kill()

        second = RelayProcess(nats_server.url, data_dir, name, db, data_dir / "second.log")
        processes.append(second.start())
        await eventually(lambda: _unpublished_is(outbox, 0), timeout=30, what="rows published again and marked")
        await eventually(lambda: _metric_is(second, "outbox_relay_published_total", len(rows)), what="metrics")
        assert await second.metric("outbox_relay_duplicates_total") == len(rows), "JetStream knew every row"
        stored = [m.msg_id for m in await stream_messages(js, INVENTORY)]
        assert stored == [r.msg_id for r in rows], "each message exactly once, in order"
    finally:
        await outbox.close()


async def test_two_relays_one_leader_and_the_standby_takes_over_when_it_dies(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, processes: list[RelayProcess]
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    db = data_dir / "inventory.db"
    outbox = await Outbox.create(f"sqlite+aiosqlite:///{db}")
    relays = [RelayProcess(nats_server.url, data_dir, name, db, data_dir / f"relay-{i}.log") for i in range(2)]
    for relay in relays:
        processes.append(relay.start())
    written = 0
    stop_writing = asyncio.Event()

    async def write() -> None:
        nonlocal written
        while not stop_writing.is_set():
            await outbox.write([message(written)])
            written += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_writing.wait(), 0.005)

    writer = asyncio.create_task(write())
    try:
        for relay in relays:
            await eventually(relay.ready, timeout=30, what="relay serving metrics")
        await eventually(lambda: _one_leader(relays), timeout=15, what="exactly one leader")
        leader, standby = (relays[0], relays[1]) if await relays[0].is_leader() else (relays[1], relays[0])
        await eventually(lambda: _metric_over(leader, "outbox_relay_published_total", 50), what="leader publishing")
        assert not await standby.is_leader()
        assert await standby.metric("outbox_relay_published_total") == 0, "the standby publishes nothing"

        leader.child.kill()
        await eventually(standby.is_leader, timeout=10, what="standby took over")
        await eventually(lambda: _metric_over(standby, "outbox_relay_published_total", 50), what="standby publishing")
        stop_writing.set()
        await writer
        await eventually(lambda: _unpublished_is(outbox, 0), timeout=20, what="every row marked")
        stored = [m.msg_id for m in await stream_messages(js, INVENTORY)]
        assert stored == [f"m-{n:06d}" for n in range(written)], "nothing lost, duplicated or reordered"
    finally:
        stop_writing.set()
        with contextlib.suppress(Exception):
            await writer
        await outbox.close()


async def _stream_count(js: JetStreamContext, count: int) -> bool:
    return (await js.stream_info(INVENTORY)).state.messages == count


async def _logged(path: Path, text: str) -> bool:
    def read() -> str:
        return path.read_text() if path.is_file() else ""

    return text in await asyncio.to_thread(read)


async def _unpublished_is(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() == count


async def _metric_is(relay: RelayProcess, name: str, value: float) -> bool:
    return await relay.metric(name) == value


async def _metric_over(relay: RelayProcess, name: str, value: float) -> bool:
    return await relay.metric(name) > value


async def _one_leader(relays: list[RelayProcess]) -> bool:
    return [await r.is_leader() for r in relays].count(True) == 1
