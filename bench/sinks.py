"""Local sales-channel sinks: HTTP servers that receive availability webhooks like a real channel would.

Each sink verifies the Standard Webhooks signature with the official ``standardwebhooks`` package
(any of its secrets may match, for rotation), keeps an availability cache (sku -> (version,
available)) that ignores older versions, and records every version it was sent per SKU, so a test can
check that none went backwards. Its behaviour can be changed while it runs: answer an error status
(optionally with ``Retry-After``), answer slowly, or stop listening altogether and come back.

In-process use (tests)::

    sink = AvailabilitySink("storefront", [secret])
    server = await SinkServer(sink).start()        # 127.0.0.1, a free port
    ...; sink.behaviour.status = 500; ...; await server.stop(); await server.start()  # down, back

As a process (benchmarks, demos): ``python -m bench.sinks --sink storefront:0:whsec_...`` prints one
JSON line with the ports once listening; ``GET /stats`` (everything), ``GET /count`` (just the counts),
``POST /control`` (behaviour) and ``POST /reset`` on each sink.
Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["AvailabilitySink", "SinkBehaviour", "SinkServer", "free_port", "main"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SinkBehaviour:
    status: int = 200
    """What to answer to a correctly signed webhook."""
    retry_after: str | None = None
    """``Retry-After`` to send with a non-2xx answer."""
    delay_s: float = 0.0
    """Wait this long before answering."""


def _occurred_at(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


@dataclass
class AvailabilitySink:
    name: str
    secrets: Sequence[str]
    behaviour: SinkBehaviour = field(default_factory=SinkBehaviour)
    cache: dict[str, tuple[int, int]] = field(default_factory=dict)
    """sku -> (version, available), from 2xx-answered webhooks; an older version never replaces a newer."""
    versions: dict[str, list[int]] = field(default_factory=dict)
    """sku -> every version answered with 2xx, in arrival order."""
    offered: dict[str, list[int]] = field(default_factory=dict)
    """sku -> every version received with a valid signature, whatever the answer."""
    requests: list[tuple[float, int]] = field(default_factory=list)
    """(time.time() at arrival, status answered) for every request."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from the event's occurred_at to the moment a 2xx answer was decided."""
    bad_signatures: int = 0
    webhook_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._verifiers = [Webhook(secret) for secret in self.secrets]

    # -- what tests ask ------------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        return len(self.latencies)

    def available(self, sku: str) -> int | None:
        entry = self.cache.get(sku)
        return entry[1] if entry else None

    def version(self, sku: str) -> int | None:
        entry = self.cache.get(sku)
        return entry[0] if entry else None

    def backwards(self) -> dict[str, list[int]]:
        """SKUs whose versions went down at some point, in what was accepted or in what was offered."""
        out: dict[str, list[int]] = {}
        for record in (self.versions, self.offered):
            for sku, seen in record.items():
                if any(b < a for a, b in itertools.pairwise(seen)):
                    out[sku] = seen
        return out

    def statuses(self) -> list[int]:
        return [status for _, status in self.requests]

    def reset(self) -> None:
        self.cache.clear()
        self.versions.clear()
        self.offered.clear()
        self.requests.clear()
        self.latencies.clear()
        self.webhook_ids.clear()
        self.bad_signatures = 0

    def stats(self, include_latencies: bool = True) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": len(self.requests),
            "delivered": self.delivered,
            "bad_signatures": self.bad_signatures,
            "skus": len(self.cache),
            "cache": {sku: list(entry) for sku, entry in self.cache.items()},
            "backwards": self.backwards(),
            "latencies": self.latencies if include_latencies else [],
        }

    # -- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body = await _read_body(receive)
        if method == "GET" and path == "/stats":
            return await _answer(send, 200, json.dumps(self.stats()).encode())
        if method == "GET" and path == "/count":
            counts = {"requests": len(self.requests), "delivered": self.delivered, "skus": len(self.cache)}
            return await _answer(send, 200, json.dumps(counts).encode())
        if method == "POST" and path == "/control":
            return await self._control(body, send)
        if method == "POST" and path == "/reset":
            self.reset()
            return await _answer(send, 204, b"")
        if method != "POST":
            return await _answer(send, 405, b'{"error":"method_not_allowed"}')
        await self._webhook(scope, body, send)

    async def _webhook(self, scope: Scope, body: bytes, send: Send) -> None:
        arrived = time.time()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self._verified(body, headers):
            self.bad_signatures += 1
            self.requests.append((arrived, 401))
            return await _answer(send, 401, b'{"error":"invalid_signature"}')
        try:
            document = json.loads(body)
            sku, version, available = document["sku"], int(document["version"]), int(document["available"])
        except (ValueError, KeyError, TypeError):
            self.requests.append((arrived, 400))
            return await _answer(send, 400, b'{"error":"bad_payload"}')
        self.offered.setdefault(sku, []).append(version)
        behaviour = self.behaviour
        if behaviour.delay_s > 0:
            await asyncio.sleep(behaviour.delay_s)
        status = behaviour.status
        if not 200 <= status < 300:
            self.requests.append((arrived, status))
            extra = [(b"retry-after", behaviour.retry_after.encode())] if behaviour.retry_after else []
            return await _answer(send, status, b'{"error":"refused by the test sink"}', extra)
        self.requests.append((arrived, status))
        self.webhook_ids.add(headers.get("webhook-id", ""))
        self.versions.setdefault(sku, []).append(version)
        cached = self.cache.get(sku)
        if cached is None or version >= cached[0]:
            self.cache[sku] = (version, available)
        occurred = _occurred_at(document.get("occurred_at"))
        if occurred is not None:
            self.latencies.append(time.time() - occurred)
        await _answer(send, status, b'{"ok":true}')

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers, json_parse=False)
                return True
            except (WebhookVerificationError, ValueError):
                continue
        return False

    async def _control(self, body: bytes, send: Send) -> None:
        try:
            changes = json.loads(body or b"{}")
            for key in ("status", "retry_after", "delay_s"):
                if key in changes:
                    setattr(self.behaviour, key, changes[key])
        except (ValueError, TypeError):
            return await _answer(send, 400, b'{"error":"bad_control"}')
        await _answer(send, 200, json.dumps(self.behaviour.__dict__).encode())


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SinkServer:
    """Serves one sink on 127.0.0.1 in the current event loop; can stop and start again on the same port."""

    def __init__(self, sink: AvailabilitySink, port: int | None = None) -> None:
        self.sink = sink
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, timeout_s: float = 10.0) -> SinkServer:
        config = uvicorn.Config(
            self.sink,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            http="httptools",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._task = asyncio.create_task(self._serve(server), name=f"sink-{self.sink.name}")
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"sink {self.sink.name} stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sink {self.sink.name} did not start on port {self.port}")
            await asyncio.sleep(0.01)
        return self

    @staticmethod
    async def _serve(server: uvicorn.Server) -> None:
        # uvicorn's signal capture is meant for a process it owns; a sink lives inside someone else's.
        with contextlib.suppress(AttributeError):
            server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        await server.serve()

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None


def _parse_spec(text: str) -> tuple[str, int, list[str], float]:
    """``name:port:secret[,secret...][:delay_s]``; port 0 picks a free one."""
    parts = text.split(":")
    if len(parts) < 3:
        raise argparse.ArgumentTypeError(f"sink spec {text!r}: expected name:port:secret[:delay_s]")
    name, port, secrets = parts[0], int(parts[1]), parts[2].split(",")
    delay = float(parts[3]) if len(parts) > 3 else 0.0
    return name, port, secrets, delay


async def _serve_sinks(specs: Sequence[tuple[str, int, list[str], float]]) -> None:
    servers = []
    for name, port, secrets, delay in specs:
        sink = AvailabilitySink(name, secrets, SinkBehaviour(delay_s=delay))
        servers.append(await SinkServer(sink, port or None).start())
    print(json.dumps({"ready": {s.sink.name: s.port for s in servers}}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sinks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", action="append", type=_parse_spec, required=True, help="name:port:secret[:delay_s]")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve_sinks(args.sink))
    return 0


if __name__ == "__main__":
    sys.exit(main())
