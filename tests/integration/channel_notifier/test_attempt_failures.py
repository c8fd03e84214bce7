"""Whatever goes wrong inside a delivery attempt is a failed attempt: backoff, breaker, give-up; never a hot loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.support import eventually

from .conftest import Notifier, NotifierFactory
from .support import AUTH, availability, publish


class RawSink:
    """A loopback HTTP/1.1 server answering every request with the same raw bytes; counts requests."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                writer.write(self.answer)
                await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"


@pytest.fixture
async def raw_sink() -> AsyncIterator[Any]:
    started: list[asyncio.Server] = []

    async def start(answer: bytes) -> RawSink:
        sink = RawSink(answer)
        sink.server = await asyncio.start_server(sink._serve, "127.0.0.1", 0)
        started.append(sink.server)
        return sink

    yield start
    for server in started:
        server.close()
        await server.wait_closed()


async def _row(notifier: Notifier, channel: str) -> dict[str, Any] | None:
    rows = await notifier.deliveries(channel)
    return rows[0] if rows else None


async def test_an_unreadable_retry_after_is_a_failed_attempt_under_backoff_and_breaker(
    js: JetStreamContext, notifier_factory: NotifierFactory, raw_sink: Any
) -> None:
    """503 with ``Retry-After: ²`` (the byte 0xB2): every request the channel sees is a recorded attempt."""
    sink = await raw_sink(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n")
    async with notifier_factory(breaker_failure_threshold=3) as notifier:
        await notifier.create_channel(name="hot", url=sink.url)
        await publish(js, availability("H", 1, 1))

        async def several_attempts_recorded() -> dict[str, Any] | None:
            row = await _row(notifier, "hot")
            return row if row and row["attempts"] >= 6 else None

        row = await eventually(several_attempts_recorded, timeout=20, what="attempts recorded on the delivery")
        assert row["status"] == "pending" and row["last_status"] == 503
        assert row["last_error"] == "HTTP 503"

        async def circuit_open() -> bool:
            metrics = (await notifier.client.get("/metrics")).text
            return 'channel_notifier_circuit_open{channel="hot"} 1.0' in metrics

        await eventually(circuit_open, what="the breaker opened for the failing channel")
        # Each request the sink answered was counted as an attempt (one may be in flight, not yet written).
        for _ in range(3):
            seen = sink.requests
            row = await _row(notifier, "hot")
            assert row is not None
            assert seen <= row["attempts"] + 1, (seen, row)
            attempts = row["attempts"]

            async def another_attempt(attempts: int = attempts) -> bool:
                current = await _row(notifier, "hot")
                return current is not None and current["attempts"] > attempts

            await eventually(another_attempt, timeout=20, what="the next attempt after the backoff")


async def test_an_unexpected_error_while_attempting_is_a_failed_attempt_and_gives_up(
    js: JetStreamContext, notifier_factory: NotifierFactory, raw_sink: Any, data_dir: Path
) -> None:
    """A stored update that cannot be read any more (a damaged row) makes the attempt raise: the attempt
    fails, is retried under backoff, and the delivery is given up after max_attempts, not retried at once forever."""
    sink = await raw_sink(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    async with notifier_factory(max_attempts=4, breaker_failure_threshold=100) as notifier:
        await notifier.create_channel(name="odd", url=sink.url, enabled=False)
        await publish(js, availability("U", 1, 1))

        async def recorded() -> dict[str, Any] | None:
            return await _row(notifier, "odd")

        await eventually(recorded, what="the update kept for the disabled channel")
        with contextlib.closing(sqlite3.connect(data_dir / "channel-notifier.db")) as db, db:
            db.execute("UPDATE channel_deliveries SET document = ?", (b"\x00 not an availability document",))
        enabled = await notifier.client.patch("/channels/odd", json={"enabled": True}, headers=AUTH)
        assert enabled.status_code == 200, enabled.text

        async def given_up() -> dict[str, Any] | None:
            row = await _row(notifier, "odd")
            return row if row and row["status"] == "failed" else None

        row = await eventually(given_up, timeout=20, what="the delivery given up after max_attempts")
        assert row["attempts"] == 4
        assert row["last_error"].startswith("unexpected error: "), row
        assert sink.requests == 0

        async def settled() -> bool:
            return await _row(notifier, "odd") == row  # no attempt after giving up

        await eventually(settled, what="no attempt after giving up")


async def test_an_unexpected_error_at_connect_time_is_a_failed_attempt(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    """The resolver fails in a way nobody planned for: each attempt fails, under backoff, until given up."""
    answers: dict[str, Any] = {"shop.example": ["93.184.216.34"]}

    async def resolve(host: str, _port: int) -> list[str]:
        answer = answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    async with notifier_factory(resolve=resolve, max_attempts=3, breaker_failure_threshold=100) as notifier:
        await notifier.create_channel(name="flaky", url="https://shop.example/hook")
        answers["shop.example"] = RuntimeError("resolver bug")
        await publish(js, availability("F", 1, 1))

        async def given_up() -> dict[str, Any] | None:
            row = await _row(notifier, "flaky")
            return row if row and row["status"] == "failed" else None

        row = await eventually(given_up, timeout=20, what="the delivery given up after max_attempts")
        assert row["attempts"] == 3
        assert row["last_error"] == "unexpected error: RuntimeError: resolver bug"
