"""The notifier as a real process, SIGKILLed in the middle of a burst and started again."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from libs.contracts import AvailabilityChanged
from libs.natsserver import NatsServer, free_port
from libs.processes import spawn, stop_processes
from libs.signing import generate_standard_secret
from stockwire.demo.sinks import ChannelSink, SinkServer
from tests.integration.channel_notifier.support import availability, converged, publish, until
from tests.support import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
BUFFERS = {"storefront": 0, "marketplace": 2, "b2b": 5}


class NotifierProcess:
    def __init__(self, config: Path, nats_url: str, data_dir: Path, port: int, log: Path) -> None:
        self.env = {
            **os.environ,
            "STOCKWIRE_CONFIG": str(config),
            "STOCKWIRE_NATS_URL": nats_url,
            "STOCKWIRE_DATA_DIR": str(data_dir),
            "STOCKWIRE_ADMIN_TOKEN": "e2e-token",
            "STOCKWIRE__CHANNEL_NOTIFIER__PORT": str(port),
        }
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = spawn(
                [sys.executable, "-m", "services.channel_notifier"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def probe() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    response = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(probe, timeout=30, interval=0.1, what="notifier process ready")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process], 15)


async def _ack_floor(js: JetStreamContext) -> int:
    return (await js.consumer_info("INVENTORY", "channel-notifier")).ack_floor.stream_seq


@pytest.fixture
async def sink_servers() -> AsyncIterator[dict[str, SinkServer]]:
    servers = {}
    for name in BUFFERS:
        servers[name] = await SinkServer(ChannelSink(name, [generate_standard_secret()])).start()
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
def notifier_process(
    tmp_path: Path, nats_server: NatsServer, sink_servers: dict[str, SinkServer]
) -> Iterator[NotifierProcess]:
    config = tmp_path / "stockwire.toml"
    channels = "".join(
        f"""
[[channel-notifier.channels]]
name = "{name}"
url = "{server.url}"
secret = "{server.sink.secrets[0]}"
buffer = {BUFFERS[name]}
"""
        for name, server in sink_servers.items()
    )
    config.write_text(
        f"""
[channel-notifier]
retry_base_s = 0.05
retry_cap_s = 0.5
connect_timeout_s = 0.5
request_timeout_s = 1.0
lease_margin_s = 0.5
poll_interval_s = 0.2
breaker_open_s = 0.2
breaker_open_max_s = 1.0
{channels}"""
    )
    process = NotifierProcess(config, nats_server.url, tmp_path / "data", free_port(), tmp_path / "notifier.log")
    try:
        yield process
    finally:
        process.stop()


async def test_sigkill_mid_burst_then_restart_converges_without_going_back(
    js: JetStreamContext, notifier_process: NotifierProcess, sink_servers: dict[str, SinkServer]
) -> None:
    notifier_process.start()
    await notifier_process.ready()
    sinks = {name: server.sink for name, server in sink_servers.items()}
    rng = random.Random(3)
    final: dict[str, AvailabilityChanged] = {}
    history: list[AvailabilityChanged] = []

    async def burst(versions: range) -> None:
        for version in versions:
            for n in range(40):
                update = availability(f"K-{n}", version, rng.randint(0, 30))
                history.append(update)
                final[update.sku] = update
                await publish(js, update)
            await asyncio.sleep(0)

    await burst(range(1, 6))
    await until(lambda: sum(s.delivered for s in sinks.values()) >= 100, timeout=20, what="deliveries under way")
    publishing = asyncio.create_task(burst(range(6, 16)))
    await until(lambda: len(history) >= 400, what="the burst goes on")
    notifier_process.kill()
    floor_at_kill = await _ack_floor(js)
    await publishing
    # While it is down: duplicates and stale versions arrive too (at-least-once, outages).
    for update in rng.sample(history, 150):
        await publish(js, update)
    delivered_while_down = {name: sink.delivered for name, sink in sinks.items()}

    notifier_process.start()
    await notifier_process.ready()
    ready_at = time.monotonic()

    async def resumed() -> bool:
        return await _ack_floor(js) > floor_at_kill

    await eventually(resumed, timeout=60, interval=0.05, what="consumption resumed")
    # What the dead process held waits out ack_wait (4 s), not the former 30 s.
    assert time.monotonic() - ready_at < 10.0
    for name, sink in sinks.items():
        await until(lambda s=sink, b=BUFFERS[name]: converged(s, final, b), timeout=30, what=f"{name} converged")
    for name, sink in sinks.items():
        assert sink.backwards() == {}, name
        assert sink.bad_signatures == 0
        assert sink.delivered > delivered_while_down[name]
    assert all(s.cache["K-0"][0] == 15 for s in sinks.values())
