"""Fake sales channels: HTTP receivers of the notifier's webhooks, for the demo, the benchmarks and the tests.

The one implementation of a test sink. It lives in the package, not under ``tests/``, because
``stockwire demo`` runs it and the wheel ships only ``libs``, ``services`` and ``stockwire``.

Each sink verifies the Standard Webhooks signature with the official ``standardwebhooks`` package (any
of its secrets may match, for rotation), keeps an availability cache (sku -> (version, available)) that
ignores older versions, and records every version it was sent per SKU so a test can check that none
went backwards. Its behaviour changes while it runs: answer an error status (with ``Retry-After``),
fail a share of requests, answer slowly, or stop listening (connections refused) and come back.

In-process (tests)::

    sink = ChannelSink("storefront", [secret])
    server = await SinkServer(sink).start()        # 127.0.0.1, a free port; server.url is the webhook URL
    sink.behaviour.status = 500; await server.stop(); await server.start()   # failing, down, back

As a process (``stockwire demo``, the benchmarks, the chaos suite; driven by
:class:`stockwire.demo.channels.SinkProcess`)::

    python -m stockwire.demo.sinks '<json spec>'
    # {"control_port": 0-65535, "token": "...",
    #  "sinks": [{"name", "port", "secrets": [...], "behaviour": {status, retry_after, delay_s, fail_ratio}}]}

Each sink port takes ``POST /webhook`` (and ``GET /healthz``). The control port answers ``GET /healthz``
openly and, with ``Authorization: Bearer <token>``: ``GET /state/<sink>?since=N`` (cache, arrivals from
the N-th on, counts), ``GET /stats/<sink>`` (requests, deliveries, latencies, versions gone backwards),
``GET /count/<sink>``, ``POST /reset/<sink>`` and ``POST /control/<sink>`` (behaviour fields and
``listening``). Everything binds to 127.0.0.1 only.

Raw ASGI rather than a framework: a sink must keep up with every channel update of a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import itertools
import json
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn

from libs.logs import setup_logging

__all__ = [
    "DEMO_EXTRA_MISSING",
    "ChannelSink",
    "SinkBehaviour",
    "SinkHost",
    "SinkServer",
    "SinkSpec",
    "free_port",
    "main",
]

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
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_BODY = 64 * 1024
_MAX_DELAY_S = 600.0
_WEBHOOK_PATH = "/webhook"
# Encoded once: every accepted delivery of a benchmark answers it.
_OK = b'{"status":"ok"}'

Answer = dict[str, Any] | bytes
"""A JSON answer: a document, or its bytes already encoded."""


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
    fail_ratio: float = 0.0
    """Share of correctly signed webhooks answered 503 regardless of ``status``."""

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply the known fields of ``changes`` (others are ignored); ValueError/TypeError if one is out of range."""
        status = int(changes.get("status", self.status))
        retry_after = changes.get("retry_after", self.retry_after)
        delay_s = float(changes.get("delay_s", self.delay_s))
        fail_ratio = float(changes.get("fail_ratio", self.fail_ratio))
        if not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        if retry_after is not None and (not isinstance(retry_after, str) or len(retry_after) > 64):
            raise ValueError("retry_after must be a string of at most 64 characters, or null")
        if not 0.0 <= delay_s <= _MAX_DELAY_S:
            raise ValueError(f"delay_s must be within 0..{_MAX_DELAY_S}")
        if not 0.0 <= fail_ratio <= 1.0:
            raise ValueError("fail_ratio must be within 0..1")
        self.status, self.retry_after, self.delay_s, self.fail_ratio = status, retry_after, delay_s, fail_ratio


@dataclass(frozen=True)
class SinkSpec:
    """One sink of the process mode's JSON spec."""

    name: str
    port: int
    secrets: tuple[str, ...]
    behaviour: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "secrets": list(self.secrets), "behaviour": dict(self.behaviour)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SinkSpec:
        secrets = document["secrets"]
        if not isinstance(secrets, list) or not secrets or not all(isinstance(s, str) for s in secrets):
            raise ValueError(f"sink {document.get('name')!r}: secrets must be a non-empty list of strings")
        return cls(str(document["name"]), int(document["port"]), tuple(secrets), dict(document.get("behaviour", {})))


def _retry_after(behaviour: SinkBehaviour) -> bytes | None:
    return behaviour.retry_after.encode() if behaviour.retry_after else None


def _occurred_at(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


@dataclass
class ChannelSink:
    """One channel, an ASGI app: verifies, caches and records each webhook; :attr:`behaviour` injects trouble."""

    name: str
    secrets: Sequence[str]
    behaviour: SinkBehaviour = field(default_factory=SinkBehaviour)
    cache: dict[str, tuple[int, int]] = field(default_factory=dict)
    """sku -> (version, available), from 2xx-answered webhooks; an older version never replaces a newer."""
    versions: dict[str, list[int]] = field(default_factory=dict)
    """sku -> every version answered with 2xx, in arrival order."""
    offered: dict[str, list[int]] = field(default_factory=dict)
    """sku -> every version received with a valid signature, whatever the answer."""
    arrivals: list[tuple[str, int, int, float]] = field(default_factory=list)
    """(sku, version, available, time.time() when answered 2xx) of every accepted update, in order."""
    requests: list[tuple[float, int]] = field(default_factory=list)
    """(time.time() at arrival, status answered) for every webhook request."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from the event's occurred_at to the moment a 2xx answer was decided."""
    counts: dict[str, int] = field(default_factory=dict)
    """Outcome -> how many: received, stale_or_repeated, invalid_signature, failed_on_purpose, ..."""
    webhook_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        try:
            from standardwebhooks.webhooks import Webhook, WebhookVerificationError
        except ImportError as exc:
            raise RuntimeError(DEMO_EXTRA_MISSING) from exc
        if not self.secrets:
            raise ValueError(f"sink {self.name}: at least one secret is needed")
        self._verifiers = [Webhook(secret) for secret in self.secrets]
        # A malformed header makes the library raise ValueError, not only its own error.
        self._refused: tuple[type[Exception], ...] = (WebhookVerificationError, ValueError)
        self._rng = random.Random(self.name)

    # -- what tests ask ------------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        return len(self.arrivals)

    @property
    def bad_signatures(self) -> int:
        return self.counts.get("invalid_signature", 0)

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
        for record in (self.cache, self.versions, self.offered, self.counts):
            record.clear()
        self.arrivals.clear()
        self.requests.clear()
        self.latencies.clear()
        self.webhook_ids.clear()

    def count(self) -> dict[str, int]:
        return {"requests": len(self.requests), "delivered": self.delivered, "skus": len(self.cache)}

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.count(),
            "bad_signatures": self.bad_signatures,
            "counts": dict(self.counts),
            "backwards": self.backwards(),
            "latencies": self.latencies,
        }

    def state(self, since: int = 0) -> dict[str, Any]:
        return {
            "name": self.name,
            "cache": {sku: {"available": a, "version": v} for sku, (v, a) in self.cache.items()},
            "arrivals": self.arrivals[since:],
            "arrivals_total": len(self.arrivals),
            "counts": dict(self.counts),
            **asdict(self.behaviour),
        }

    # -- the webhook ---------------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers, json_parse=False)
                return True
            except self._refused:
                continue
        return False

    async def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, Answer, bytes | None]:
        """Verify and apply one delivery: (status, JSON answer, ``Retry-After`` or None)."""
        arrived = time.time()
        status, answer, retry_after = await self._decide(body, headers)
        self.requests.append((arrived, status))
        return status, answer, retry_after

    async def _decide(self, body: bytes, headers: dict[str, str]) -> tuple[int, Answer, bytes | None]:
        if not self._verified(body, headers):
            self._count("invalid_signature")
            return 401, {"error": "invalid_signature", "detail": "no secret of this sink matches"}, None
        try:
            payload = json.loads(body)
        except ValueError:
            self._count("malformed")
            return 422, {"error": "malformed", "detail": "the body is not JSON"}, None
        if not isinstance(payload, dict) or payload.get("type") != "availability.changed":
            self._count("unexpected_type")
            return 422, {"error": "unexpected_type", "detail": "expected availability.changed"}, None
        try:
            sku, available, version = str(payload["sku"]), int(payload["available"]), int(payload["version"])
        except (KeyError, TypeError, ValueError):
            self._count("malformed")
            return 422, {"error": "malformed", "detail": "sku, available and version are required"}, None
        self.offered.setdefault(sku, []).append(version)
        behaviour = self.behaviour
        if behaviour.delay_s > 0:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.fail_ratio and self._rng.random() < behaviour.fail_ratio:
            self._count("failed_on_purpose")
            return 503, {"error": "unavailable", "detail": "failing on purpose"}, _retry_after(behaviour)
        if not 200 <= behaviour.status < 300:
            self._count("refused_on_purpose")
            return behaviour.status, {"error": "refused", "detail": "refused by the test sink"}, _retry_after(behaviour)
        self._count("received")
        self.webhook_ids.add(headers.get("webhook-id", ""))
        self.versions.setdefault(sku, []).append(version)
        cached = self.cache.get(sku)
        if cached is not None and version <= cached[0]:
            self._count("stale_or_repeated")
        # The same version again may carry another figure (the channel's buffer changed): it replaces.
        if cached is None or version >= cached[0]:
            self.cache[sku] = (version, available)
        now = time.time()
        self.arrivals.append((sku, version, available, now))
        occurred = _occurred_at(payload.get("occurred_at"))
        if occurred is not None:
            self.latencies.append(now - occurred)
        return 200, _OK, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            return await _respond(send, 200, {"status": "ok"})
        if path != _WEBHOOK_PATH or method != "POST":
            return await _respond(send, 404, {"error": "not_found", "detail": f"POST {_WEBHOOK_PATH}"})
        body = await _read_body(receive)
        if body is None:
            return await _respond(send, 413, {"error": "body_too_large", "detail": f"over {_MAX_BODY} bytes"})
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, answer, retry_after = await self.receive(body, headers)
        await _respond(send, status, answer, [(b"retry-after", retry_after)] if retry_after else None)


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


async def _respond(send: Send, status: int, document: object, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopbackServer:
    """Serves one ASGI app on 127.0.0.1 in the running event loop; can stop and start again on the same port."""

    def __init__(self, app: App, port: int | None = None, name: str = "sink") -> None:
        self.app = app
        self.port = port or free_port()
        self.name = name
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, timeout_s: float = 10.0) -> LoopbackServer:
        if self.running:
            return self
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            http="httptools",
            loop="none",
            backlog=2048,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        # uvicorn's signal capture is meant for a process it owns; a sink lives inside someone else's.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._server = server
        self._task = asyncio.create_task(server.serve(), name=f"sink-{self.name}")
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"{self.name} could not listen on port {self.port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on port {self.port} within {timeout_s}s")
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None


class SinkServer(LoopbackServer):
    """Serves one :class:`ChannelSink`; :attr:`url` is where the notifier posts."""

    def __init__(self, sink: ChannelSink, port: int | None = None) -> None:
        super().__init__(sink, port, name=f"sink {sink.name}")
        self.sink = sink

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{_WEBHOOK_PATH}"

    async def start(self, timeout_s: float = 10.0) -> SinkServer:
        await super().start(timeout_s)
        return self


class SinkHost:
    """Every sink on its own port, and the control API (bearer token) on another, in one event loop."""

    def __init__(self, specs: Sequence[SinkSpec], control_port: int, token: str) -> None:
        self.servers: dict[str, SinkServer] = {}
        for spec in specs:
            sink = ChannelSink(spec.name, spec.secrets)
            sink.behaviour.update(spec.behaviour)
            self.servers[spec.name] = SinkServer(sink, spec.port)
        self.control_server = LoopbackServer(self.control, control_port, name="sink control")
        self.token = token.encode()

    def listening(self) -> list[str]:
        return sorted(name for name, server in self.servers.items() if server.running)

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
            return await _respond(send, 200, {"status": "ok", "listening": self.listening()})
        if not self._authorised(scope):
            return await _respond(send, 401, {"error": "unauthorized", "detail": "Authorization: Bearer <token>"})
        action, _, name = path.strip("/").partition("/")
        method = "GET" if action in ("state", "stats", "count") else "POST"
        server = self.servers.get(name)
        if server is None or action not in ("state", "stats", "count", "reset", "control") or scope["method"] != method:
            detail = "GET /state|stats|count/<sink>, POST /reset|control/<sink>"
            return await _respond(send, 404, {"error": "not_found", "detail": detail})
        sink = server.sink
        if action == "state":
            try:
                query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
                since = max(0, int(query.get("since", "0") or 0))
            except ValueError as exc:
                return await _respond(send, 400, {"error": "bad_request", "detail": str(exc)})
            return await _respond(send, 200, {**sink.state(since), "listening": server.running})
        if action == "stats":
            return await _respond(send, 200, sink.stats())
        if action == "count":
            return await _respond(send, 200, sink.count())
        if action == "reset":
            sink.reset()
            return await _respond(send, 200, {"name": sink.name})
        body = await _read_body(receive) or b"{}"
        try:
            change = json.loads(body)
            if not isinstance(change, dict):
                raise ValueError("expected a JSON object")
            sink.behaviour.update(change)
            if change.get("listening") is False:
                await server.stop()
            elif change.get("listening") is True:
                await server.start()
        except (ValueError, TypeError, RuntimeError) as exc:
            return await _respond(send, 400, {"error": "bad_request", "detail": str(exc)})
        await _respond(send, 200, {"name": sink.name, "listening": server.running, **asdict(sink.behaviour)})

    async def run(self, stopping: asyncio.Event) -> None:
        await self.control_server.start()
        for server in self.servers.values():
            await server.start()
        log.info("sinks listening: %s", ", ".join(f"{n}:{s.port}" for n, s in self.servers.items()))
        await stopping.wait()
        for server in self.servers.values():
            await server.stop()
        await self.control_server.stop()


async def _serve(spec: Mapping[str, Any]) -> None:
    specs = [SinkSpec.from_json(s) for s in spec["sinks"]]
    host = SinkHost(specs, int(spec["control_port"]), str(spec["token"]))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await host.run(stopping)


def main(argv: list[str] | None = None) -> None:
    setup_logging("INFO")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    import uvloop

    uvloop.run(_serve(json.loads((argv or sys.argv[1:])[0])))


if __name__ == "__main__":
    main()
