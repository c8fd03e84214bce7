"""libs.server.HttpProtocol: what uvicorn's parser refuses is answered with the JSON error shape, and a
request that does not arrive whole in time is answered 408 and its connection closed. A real uvicorn
server on 127.0.0.1, real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.server import HttpProtocol
from tests.support import eventually, service_ready, started_service

_TIMEOUT_S = 0.3


class _QuickProtocol(HttpProtocol):
    request_timeout_s = _TIMEOUT_S


@dataclass
class _App:
    """Reads the whole body and answers its length; notes how each body read ended."""

    endings: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.endings.append("disconnect")
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.endings.append("body")
        body = json.dumps({"size": size}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _now(probe: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return probe()

    return check


@dataclass
class _Server:
    app: _App
    port: int


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    app = _App()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=_QuickProtocol, lifespan="off", log_config=None, timeout_keep_alive=60)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    await eventually(_now(lambda: running.started), timeout=10, what="uvicorn started")
    try:
        yield _Server(app, sock.getsockname()[1])
    finally:
        running.should_exit = True
        await asyncio.wait_for(task, 10)


async def _exchange(port: int, *parts: bytes, pause_s: float = 0.0) -> tuple[bytes, bool]:
    """Send ``parts`` (with ``pause_s`` between them) while reading what comes back until the server closes
    or 5 s pass: (what came back, whether the connection was closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = bytearray()

    async def read_all() -> bool:
        try:
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    answer.extend(chunk)
        except TimeoutError:
            return False
        except ConnectionError:
            pass  # reset after the server's answer and close, while this client was still sending
        return True

    reading = asyncio.create_task(read_all())
    try:
        for i, part in enumerate(parts):
            if i and pause_s:
                await asyncio.wait([reading], timeout=pause_s)  # the client's own pace
            if reading.done():
                break
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break
        closed = await reading
    finally:
        writer.close()
    return bytes(answer), closed


def _parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    "lengths",
    [
        b"content-length: +77\r\n",
        b"content-length: 5\r\ncontent-length: 6\r\n",
        b"content-length: 99999999999999999999999\r\n",
        b"content-length: 0x10\r\n",
    ],
)
async def test_what_the_parser_refuses_is_answered_with_the_json_error(server: _Server, lengths: bytes) -> None:
    answer, closed = await _exchange(server.port, b"POST /x HTTP/1.1\r\nhost: a\r\n" + lengths + b"\r\nhello")
    status, headers, body = _parse(answer)
    assert status == 400 and closed
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body["error"] == "bad_request" and "not valid HTTP/1.1" in body["detail"]
    assert server.app.endings == []  # the app never saw it


async def test_a_body_that_stops_coming_is_answered_408_and_the_app_stops_waiting(server: _Server) -> None:
    answer, closed = await _exchange(server.port, b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\nx")
    status, headers, body = _parse(answer)
    assert (status, body["error"], closed) == (408, "request_timeout", True)
    assert headers["connection"] == "close"
    await eventually(_now(lambda: server.app.endings == ["disconnect"]), timeout=5, what="the app's read ended")


async def test_headers_sent_a_little_at_a_time_are_cut_off_too(server: _Server) -> None:
    parts = [b"POST /x HTTP/1.1\r\n", b"host: a\r\n", b"x-a: 1\r\n", b"x-b: 2\r\n", b"x-c: 3\r\n", b"x-d: 4\r\n"]
    answer, closed = await _exchange(server.port, *parts, pause_s=_TIMEOUT_S / 3)
    status, _, body = _parse(answer)
    assert (status, body["error"], closed) == (408, "request_timeout", True)


async def test_requests_that_arrive_in_time_on_a_kept_alive_connection_are_served(server: _Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for size in (3, 5):
            writer.write(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n" % size + b"y" * size)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:])
            assert head.startswith(b"HTTP/1.1 200") and json.loads(await reader.readexactly(length)) == {"size": size}
            # Idle between requests is keep-alive's to bound, not the request timeout's: nothing comes.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), _TIMEOUT_S * 3)
    finally:
        writer.close()
    assert server.app.endings == ["body", "body"]


async def test_a_service_process_answers_a_malformed_length_with_the_json_error(
    nats_server: NatsServer, js: JetStreamContext, tmp_path: Path
) -> None:
    with started_service("ingress", "ingress", nats_url=nats_server.url, tmp_path=tmp_path, env={}) as port:
        await eventually(lambda: asyncio.to_thread(service_ready, port), timeout=30, what="ingress ready")
        request = b"POST /webhooks/shop HTTP/1.1\r\nhost: a\r\ncontent-length: +2\r\n\r\n{}"
        status, headers, body = _parse((await _exchange(port, request))[0])
    assert status == 400 and headers["content-type"] == "application/json" and body["error"] == "bad_request"


async def test_a_service_process_answers_head_as_get_without_the_content(
    nats_server: NatsServer, js: JetStreamContext, tmp_path: Path
) -> None:
    with started_service("ingress", "ingress", nats_url=nats_server.url, tmp_path=tmp_path, env={}) as port:
        await eventually(lambda: asyncio.to_thread(service_ready, port), timeout=30, what="ingress ready")
        answers = {}
        for method in ("GET", "HEAD"):
            request = f"{method} /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".encode()
            answer, closed = await _exchange(port, request)
            head, _, body = answer.partition(b"\r\n\r\n")
            answers[method] = (head.split(b"\r\n")[0], _header(head, b"content-length"), body, closed)
    got, head = answers["GET"], answers["HEAD"]
    assert got[0] == head[0] == b"HTTP/1.1 200 OK"
    assert head[1] == got[1] == str(len(got[2])).encode()  # the length the GET's content has...
    assert got[2] == b'{"status":"ok"}' and head[2] == b""  # ...and none of it on the wire
    assert got[3] and head[3]


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b": ")
        if key.lower() == name:
            return value
    return None
