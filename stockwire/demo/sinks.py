"""Demo sales channels: HTTP receivers of the notifier's webhooks, all in one process.

Each sink verifies the Standard Webhooks signature with the official ``standardwebhooks`` package,
keeps an availability cache (newest version per SKU wins) and records when each version arrived.
A control port (bearer token) reads each sink's state and changes how it behaves: stop listening
(connections refused, as a channel that is down), fail a share of requests, or answer slowly.

    python -m stockwire.demo.sinks '<json spec>'   # {"control_port", "token", "sinks": [{name, port, secret}]}

Raw ASGI rather than a framework: a sink must keep up with every channel update of a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = ["DEMO_EXTRA_MISSING", "ChannelSink", "SinkSpec", "main"]

# standardwebhooks is in the `demo` extra, not in the production image: the `stockwire` CLI imports
# this module for every command, so the package is imported only where a sink is made.
DEMO_EXTRA_MISSING = (
    "the demo channels need the standardwebhooks package, which comes with the `demo` extra: "
    "pip install 'stockwire[demo]'"
)

log = logging.getLogger("stockwire.demo.sinks")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class SinkSpec:
    name: str
    port: int
    secret: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "secret": self.secret}


@dataclass
class ChannelSink:
    """One channel: verifies, caches and records; ``fail_ratio`` and ``delay_s`` inject trouble."""

    name: str
    secret: str
    fail_ratio: float = 0.0
    delay_s: float = 0.0
    cache: dict[str, tuple[int, int]] = field(default_factory=dict)
    """SKU → (available, version)."""
    arrivals: list[tuple[str, int, int, float]] = field(default_factory=list)
    """(sku, version, available, wall-clock arrival) of every verified update, in arrival order."""
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            from standardwebhooks.webhooks import Webhook, WebhookVerificationError
        except ImportError as exc:
            raise RuntimeError(DEMO_EXTRA_MISSING) from exc
        self._verifier = Webhook(self.secret)
        self._refused: tuple[type[Exception], ...] = (WebhookVerificationError, ValueError)
        self._rng = random.Random(hash(self.name))

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Verify and apply one delivery; returns the status and JSON body to answer with."""
        arrived = time.time()
        if self.fail_ratio and self._rng.random() < self.fail_ratio:
            self._count("failed_on_purpose")
            return 503, {"error": "unavailable", "detail": "failing on purpose"}
        try:
            payload = self._verifier.verify(body, headers)
        except self._refused as exc:
            self._count("invalid_signature")
            return 401, {"error": "invalid_signature", "detail": str(exc)}
        if not isinstance(payload, dict) or payload.get("type") != "availability.changed":
            self._count("unexpected_type")
            return 422, {"error": "unexpected_type", "detail": "expected availability.changed"}
        try:
            sku, available, version = str(payload["sku"]), int(payload["available"]), int(payload["version"])
        except (KeyError, TypeError, ValueError):
            self._count("malformed")
            return 422, {"error": "malformed", "detail": "sku, available and version are required"}
        self._count("received")
        self.arrivals.append((sku, version, available, arrived))
        cached = self.cache.get(sku)
        if cached is not None and cached[1] >= version:
            self._count("stale_or_repeated")
        else:
            self.cache[sku] = (available, version)
        return 200, {"status": "ok"}

    def state(self, since: int = 0) -> dict[str, Any]:
        return {
            "name": self.name,
            "cache": {sku: {"available": a, "version": v} for sku, (a, v) in self.cache.items()},
            "arrivals": self.arrivals[since:],
            "arrivals_total": len(self.arrivals),
            "counts": dict(self.counts),
            "fail_ratio": self.fail_ratio,
            "delay_s": self.delay_s,
        }

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            await _respond(send, 200, {"status": "ok"})
            return
        if path != "/webhook" or method != "POST":
            await _respond(send, 404, {"error": "not_found", "detail": "POST /webhook"})
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, {"error": "body_too_large", "detail": f"over {_MAX_BODY} bytes"})
            return
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, answer = self.receive(body, headers)
        await _respond(send, status, answer)


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, document: object) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SinkHost:
    """Serves every sink on its port and the control API on another, in one event loop."""

    def __init__(self, specs: list[SinkSpec], control_port: int, token: str, host: str = "127.0.0.1") -> None:
        self.host = host
        self.specs = {spec.name: spec for spec in specs}
        self.sinks = {spec.name: ChannelSink(spec.name, spec.secret) for spec in specs}
        self.control_port = control_port
        self.token = token.encode()
        self.servers: dict[str, tuple[uvicorn.Server, asyncio.Task[None]]] = {}
        self.stopping = asyncio.Event()

    def _server(self, app: Any, port: int) -> uvicorn.Server:
        config = uvicorn.Config(
            app,
            host=self.host,
            port=port,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            http="httptools",
            loop="none",
            backlog=2048,
            timeout_keep_alive=30,
        )
        return uvicorn.Server(config)

    async def listen(self, name: str) -> None:
        if name in self.servers:
            return
        server = self._server(self.sinks[name].app, self.specs[name].port)
        task = asyncio.create_task(server.serve(), name=f"sink-{name}")
        self.servers[name] = (server, task)
        while not server.started:
            if task.done():
                self.servers.pop(name)
                raise RuntimeError(f"sink {name} could not listen on port {self.specs[name].port}")
            await asyncio.sleep(0.01)

    async def close(self, name: str) -> None:
        entry = self.servers.pop(name, None)
        if entry is None:
            return
        server, task = entry
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await task

    def _authorised(self, scope: Scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, presented = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self.token)
        return False

    async def control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/healthz":
            await _respond(send, 200, {"status": "ok", "listening": sorted(self.servers)})
            return
        if not self._authorised(scope):
            await _respond(send, 401, {"error": "unauthorized", "detail": "Authorization: Bearer <token>"})
            return
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("state", "control") or parts[1] not in self.sinks:
            await _respond(send, 404, {"error": "not_found", "detail": "GET /state/<sink>, POST /control/<sink>"})
            return
        sink = self.sinks[parts[1]]
        if parts[0] == "state":
            query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
            state = sink.state(int(query.get("since", "0") or 0))
            state["listening"] = sink.name in self.servers
            await _respond(send, 200, state)
            return
        body = await _read_body(receive) or b"{}"
        try:
            change = json.loads(body)
            if "fail_ratio" in change:
                sink.fail_ratio = float(change["fail_ratio"])
            if "delay_s" in change:
                sink.delay_s = float(change["delay_s"])
            if change.get("listening") is False:
                await self.close(sink.name)
            elif change.get("listening") is True:
                await self.listen(sink.name)
        except (ValueError, TypeError, RuntimeError) as exc:
            await _respond(send, 400, {"error": "bad_request", "detail": str(exc)})
            return
        await _respond(send, 200, {"name": sink.name, "listening": sink.name in self.servers})

    async def run(self) -> None:
        control = self._server(self.control, self.control_port)
        control_task = asyncio.create_task(control.serve(), name="sink-control")
        for name in self.sinks:
            await self.listen(name)
        log.info("sinks listening: %s", ", ".join(f"{s.name}:{s.port}" for s in self.specs.values()))
        await self.stopping.wait()
        for name in list(self.servers):
            await self.close(name)
        control.should_exit = True
        await control_task


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    spec = json.loads((argv or sys.argv[1:])[0])
    host = SinkHost([SinkSpec(**s) for s in spec["sinks"]], int(spec["control_port"]), str(spec["token"]))
    # uvicorn installs its own signal handlers in the main thread only: serve from a worker thread and
    # keep the signals here, so one SIGTERM stops every sink.
    loop_ready = threading.Event()
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    def serve() -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        loop_box["loop"] = loop
        asyncio.set_event_loop(loop)
        loop_ready.set()
        loop.run_until_complete(host.run())

    thread = threading.Thread(target=serve, name="sinks", daemon=True)
    thread.start()
    loop_ready.wait()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2) and thread.is_alive():
        pass
    if not thread.is_alive():
        sys.exit(1)
    loop_box["loop"].call_soon_threadsafe(host.stopping.set)
    thread.join(10)


if __name__ == "__main__":
    main()
