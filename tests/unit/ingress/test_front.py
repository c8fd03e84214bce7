"""``POST /webhooks/{source}`` served in front of Litestar's router answers as Litestar's own route does:
each request sent both ways, the ASGI messages, the log records and the metrics compared."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from prometheus_client import REGISTRY

from libs.config import SourceSettings, StockwireSettings
from services.ingress.app import build_app
from services.ingress.front import WebhookFront
from services.ingress.publisher import Durability, Outcome, StoreUnavailable
from services.ingress.settings import IngressSettings
from tests.support import ce_body, ce_headers

SECRET = "front-secret"
LIMIT = 2048


@dataclass
class Request:
    path: str
    headers: Sequence[tuple[str, str]] = ()
    chunks: Sequence[bytes] = (b"",)
    method: str = "POST"
    disconnect: bool = False
    """The client goes away after the chunks, before the body's end."""
    raw_path: bytes | None = None


@dataclass
class Outcomes:
    """What a writer answers, one call after another (an exception is raised)."""

    results: list[Durability | Exception] = field(default_factory=list)

    async def write(self, _event: object) -> Durability:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _signed(body: bytes, **extra: str) -> list[tuple[str, str]]:
    return [*ce_headers(SECRET, body).items(), ("content-length", str(len(body))), *extra.items()]


@pytest.fixture
def app(tmp_path: Path) -> Litestar:
    shared = StockwireSettings(
        data_dir=str(tmp_path),
        sources={
            "ce": SourceSettings(scheme="commerce-engine", secrets=[SECRET]),
            "woo": SourceSettings(scheme="woocommerce", secrets=[SECRET]),
        },
    )
    return build_app(shared, IngressSettings(max_body_bytes=LIMIT))


async def _send(app: Litestar, request: Request) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.raw_path or request.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"ingress"), *((k.lower().encode(), v.encode()) for k, v in request.headers)],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    last = len(request.chunks) - 1
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": n < last or request.disconnect}
        for n, chunk in enumerate(request.chunks)
    ]
    if request.disconnect:
        events.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every ingress counter and histogram count (durations differ from one run to the next)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in REGISTRY.collect()
        if metric.name.startswith("ingress_")
        for sample in metric.samples
        if sample.name.endswith(("_total", "_count")) and not sample.name.endswith("_created")
    }


@dataclass
class Observed:
    messages: list[dict[str, Any]]
    logs: list[tuple[str, int, str]]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def observe(app: Litestar, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    front = app.asgi_handler
    assert isinstance(front, WebhookFront)

    async def run(request: Request, *, lean: bool, writes: Sequence[Durability | Exception] = ()) -> Observed:
        app.state.writer = Outcomes(list(writes))
        app.asgi_handler = front if lean else front.fallback
        caplog.clear()
        before = _samples()
        try:
            with caplog.at_level(logging.DEBUG):
                messages = await _send(app, request)
        finally:
            app.asgi_handler = front
        after = _samples()
        delta = {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}
        logs = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("stockwire")]
        return Observed(messages, logs, delta)

    yield run


BODY = ce_body("order.created", "evt-front")
TOO_BIG = b'{"id":"evt-big","event_type":"order.created","pad":"' + b"x" * LIMIT + b'"}'
REFUSALS = {
    "unknown source": Request("/webhooks/nope", _signed(BODY), [BODY]),
    "a source name no configuration can hold": Request("/webhooks/Bad!Name", _signed(BODY), [BODY]),
    "a percent-encoded space in the name": Request("/webhooks/ c", _signed(BODY), [BODY], raw_path=b"/webhooks/%20c"),
    "a name past 64 characters": Request("/webhooks/" + "n" * 200, _signed(BODY), [BODY]),
    "too many headers": Request("/webhooks/ce", [*_signed(BODY), *((f"x-h{n}", "v") for n in range(70))], [BODY]),
    "a header block over its size": Request("/webhooks/ce", [*_signed(BODY), ("x-big", "v" * 17_000)], [BODY]),
    "a read header over its length": Request("/webhooks/ce", [*_signed(BODY), ("x-shopify-topic", "t" * 300)]),
    "a repeated header: the first counts": Request(
        "/webhooks/ce", [("content-type", "text/plain"), *_signed(BODY)], [BODY]
    ),
    "Content-Length over the limit": Request("/webhooks/ce", [*_signed(TOO_BIG)], [TOO_BIG]),
    "a Content-Length that is no number": Request("/webhooks/ce", [("content-length", "12a")], [b"{}"]),
    "a body over the limit, no Content-Length": Request(
        "/webhooks/ce", list(ce_headers(SECRET, TOO_BIG).items()), [TOO_BIG[:1000], TOO_BIG[1000:]]
    ),
    "a body one byte over, no Content-Length": Request(
        "/webhooks/ce", list(ce_headers(SECRET, b"x" * (LIMIT + 1)).items()), [b"x" * (LIMIT + 1)]
    ),
    "not JSON": Request("/webhooks/ce", [("content-type", "text/plain")], [b"hello"]),
    "no signature": Request("/webhooks/ce", [("content-type", "application/json")], [BODY]),
    "a wrong signature": Request("/webhooks/ce", list(ce_headers("other", BODY).items()), [BODY]),
    "malformed JSON": Request("/webhooks/ce", _signed(b"{nope"), [b"{nope"]),
    "no id": Request("/webhooks/ce", _signed(b'{"event_type": "order.created"}'), [b'{"event_type": "order.created"}']),
    "the client gone before the body's end": Request("/webhooks/ce", _signed(BODY), [BODY[:10]], disconnect=True),
    "WooCommerce's URL test": Request(
        "/webhooks/woo", [("content-type", "application/x-www-form-urlencoded")], [b"webhook_id=42"]
    ),
    # Not the lean path's: Litestar answers them, as it did.
    "GET of a webhook path": Request("/webhooks/ce", method="GET"),
    "PUT of a webhook path": Request("/webhooks/ce", _signed(BODY), [BODY], method="PUT"),
    "OPTIONS of a webhook path": Request("/webhooks/ce", method="OPTIONS"),
    "a trailing slash": Request("/webhooks/ce/", _signed(BODY), [BODY]),
    "no source": Request("/webhooks/", _signed(BODY), [BODY]),
    "two segments": Request("/webhooks/ce/more", _signed(BODY), [BODY]),
}


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_a_request_is_answered_logged_and_counted_the_same_either_way(name: str, observe: Any) -> None:
    request = REFUSALS[name]
    litestar, lean = await observe(request, lean=False), await observe(request, lean=True)
    assert lean.messages == litestar.messages
    assert lean.logs == litestar.logs
    assert lean.metrics == litestar.metrics


WRITES: dict[str, Durability | Exception] = {
    "accepted": Durability(Outcome.ACCEPTED, 7),
    "duplicate": Durability(Outcome.DUPLICATE, 7),
    "spooled": Durability(Outcome.SPOOLED),
    "conflict": Durability(Outcome.CONFLICT, 7, "ab" * 32),
    "neither JetStream nor the spool": StoreUnavailable("disk full"),
    "a value no bound caught": ValueError("bad value"),
    "a bug": RuntimeError("boom"),
}


@pytest.mark.parametrize("name", list(WRITES))
async def test_each_outcome_of_the_write_is_answered_the_same_either_way(name: str, observe: Any) -> None:
    request = Request("/webhooks/ce", _signed(BODY), [BODY[:100], BODY[100:]])
    litestar = await observe(request, lean=False, writes=[WRITES[name]])
    lean = await observe(request, lean=True, writes=[WRITES[name]])
    assert lean.messages == litestar.messages
    assert [(n, level, _no_trace(m)) for n, level, m in lean.logs] == [
        (n, level, _no_trace(m)) for n, level, m in litestar.logs
    ]
    assert lean.metrics == litestar.metrics


def _no_trace(message: str) -> str:
    return message.split("\nTraceback", 1)[0]


async def test_the_lean_path_takes_the_webhook_posts_only(app: Litestar, observe: Any) -> None:
    front = app.asgi_handler
    assert isinstance(front, WebhookFront)
    taken: list[str] = []
    fallback = front.fallback

    async def watch(scope: Any, receive: Any, send: Any) -> None:
        taken.append(f"{scope['method']} {scope['path']}")
        await fallback(scope, receive, send)

    front.fallback = watch
    try:
        for request in REFUSALS.values():
            await _send(app, request)
    finally:
        front.fallback = fallback
    assert taken == [
        "GET /webhooks/ce",
        "PUT /webhooks/ce",
        "OPTIONS /webhooks/ce",
        "POST /webhooks/ce/",
        "POST /webhooks/",
        "POST /webhooks/ce/more",
    ]
