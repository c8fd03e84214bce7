"""``POST /webhooks/{source}`` served in front of Litestar's router: the same answers for less CPU.

Litestar's per-request layers (routing, the connection and signature models, the response object) cost
more CPU than the webhook's own work (docs/architecture.md has the figures). :class:`WebhookFront` sits
where Litestar's ASGI handler sits, inside the app (so its lifespan, state and ``scope["app"]`` are
Litestar's), and takes only what Litestar would have routed to the webhook handler and run with no layer
of its own in between: a POST to ``/webhooks/<one segment>``. The route's answers do not depend on the
way in: both ways call one function, the body is read with the route's limit and the errors Litestar's
reader raises, what escapes is answered by :func:`libs.http.exception_answer` (every service's exception
handler), and the JSON is encoded and framed as Litestar frames it (tests/unit/ingress/test_front.py
compares the two ways request by request). Any other request, a ``GET`` or ``OPTIONS`` of the same path
too, goes on to Litestar.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import msgspec
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ASGIApp, HTTPReceiveMessage, HTTPScope, Receive, Scope, Send

from libs.http import exception_answer

__all__ = ["Answer", "Serve", "WebhookFront", "read_body"]

Answer = tuple[int, dict[str, Any]]
"""A status and the JSON body answered with it."""

Serve = Callable[
    [str, Iterable[tuple[bytes, bytes]], Mapping[str, str], Callable[[], Awaitable[bytes]], State], Awaitable[Answer]
]
"""``(source, raw headers, headers, read body, the app's state) -> answer``: the route itself."""

_JSON = b"application/json"
_encode = msgspec.json.Encoder().encode


async def read_body(receive: Receive, max_size: int) -> bytes:
    """The request body from ``receive``, raising what :meth:`litestar.Request.body` raises: 413 past
    ``max_size`` bytes, 500 when the client goes away first."""
    chunks: list[bytes] = []
    total = 0
    while True:
        event = cast("HTTPReceiveMessage", await receive())
        if event["type"] == "http.request":
            chunk = event["body"]
            if chunk:
                total += len(chunk)
                if total > max_size:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not event.get("more_body", False):
                return b"".join(chunks)
        elif event["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The scope's headers as Litestar's ``Headers`` reads them: names without case, the first value of a name."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


class WebhookFront:
    """An ASGI app: ``POST <prefix><source>`` (one non-empty path segment, no ``root_path``) answered by
    ``serve``, with the app's ``state`` and at most ``max_body_size`` bytes of body; everything else passed to
    ``fallback`` (Litestar's own handler)."""

    def __init__(self, serve: Serve, state: State, fallback: ASGIApp, prefix: str, max_body_size: int) -> None:
        self.serve = serve
        self.state = state
        self.fallback = fallback
        self.prefix = prefix
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            http = scope
            path = http["path"]
            start = len(self.prefix)
            if (
                http["method"] == "POST"
                and path.startswith(self.prefix)
                and len(path) > start
                and path.find("/", start) < 0
                and not http.get("root_path")
            ):
                await self._webhook(http, path[start:], receive, send)
                return
        await self.fallback(scope, receive, send)

    async def _webhook(self, scope: HTTPScope, source: str, receive: Receive, send: Send) -> None:
        raw = scope["headers"]
        extra: Mapping[str, str] = {}
        try:
            status, body = await self.serve(
                source,
                raw,
                _headers(raw),
                functools.partial(read_body, receive, self.max_body_size),
                self.state,
            )
        except Exception as exc:
            answer = exception_answer("POST", scope["path"], exc)
            status, body, extra = answer.status, answer.body, answer.headers
        payload = _encode(body)
        # Framed as Litestar frames a JSON response: the exception's headers, then type and length.
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]
        names = {name for name, _ in headers}
        if b"content-type" not in names:
            headers.append((b"content-type", _JSON))
        if b"content-length" not in names:
            headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
