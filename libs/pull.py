"""Pull requests to one durable consumer, and the messages they deliver, taken in bulk.

nats-py's ``PullSubscription.fetch`` waits for every message of a batch in a task of its own (a task, a
``wait_for`` and a uuid per message): 24.5 µs of client CPU per message fetched and acknowledged, against
12.5 µs when the messages a request delivered are taken from a buffer at once (``python -m bench.pull``:
20,000 messages of 1.4 KB, batches of 256; bench/README.md, "the fourth round"). An idle fetch that
waits ``timeout`` for a whole batch also holds the first message back for that long, so a consumer had
to fetch with a short wait, i.e. poll, to keep its latency.

:class:`PullRequests` asks in two steps, as JetStream's pull protocol allows (ADR-13):

1. ``no_wait`` for up to ``batch`` messages: the server sends what it has at once and closes the request
   with a ``404 No Messages`` status when it had fewer;
2. only when that found nothing, a long poll for one message that expires after ``timeout``: it returns
   as soon as a message is stored, and a caller that lingers then asks again (step 1) for what followed.

Every request has a reply subject of its own under one wildcard subscription, so the status that closes
an earlier request (a ``408`` that crossed a new request, say) is never taken for the close of the
current one. Messages carry their stream subject, not the reply subject; a message that arrives after
its request was given up is kept and handed out first by the next :meth:`PullRequests.fetch`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.bus import client_of
from libs.contracts import HEADER_STATUS, HEADER_STATUS_DESCRIPTION, NO_RESPONDERS, pull_next_subject

__all__ = ["PullRequests"]

_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"
_CONFLICT = "409"
_HEARTBEAT = "100"
# How long the client waits for an answer the server gives at once (a no_wait request's), and how much
# after a long poll's own expiry (which the server answers too) it stops waiting.
_GRACE_S = 0.5
# 409s that close one request and leave the durable usable (pull requests over a limit, a new leader,
# a server going down); any other 409 ("Consumer Deleted", "Consumer is push based") means re-binding.
_PASSING_CONFLICTS = ("exceeded", "leadership", "server shutdown", "message size")


class PullRequests:
    """Pull requests for the durable ``durable`` of ``stream`` over ``nc``, until :meth:`unsubscribe`.

    Not safe for two concurrent :meth:`fetch` calls (a consumer runner fetches one batch at a time)."""

    def __init__(self, nc: Client, stream: str, durable: str) -> None:
        self.nc = nc
        self.stream = stream
        self.durable = durable
        self._next = pull_next_subject(stream, durable)
        self._prefix = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._requests = 0
        self._current: str | None = None
        self._want = 0
        self._closed_by: Msg | None = None
        self._wake = asyncio.Event()

    @classmethod
    async def bind(cls, js: JetStreamContext, stream: str, durable: str) -> PullRequests:
        """Pull requests for ``durable`` of ``stream`` on ``js``'s connection, subscribed to their replies."""
        pull = cls(client_of(js), stream, durable)
        await pull.subscribe()
        return pull

    async def subscribe(self) -> None:
        """Subscribe to the replies of every request this object will make."""
        self._sub = await self.nc.subscribe(f"{self._prefix}.*", cb=self._arrived)

    async def unsubscribe(self) -> None:
        """Stop receiving. Messages delivered but not handed out are given back (``nak``) for redelivery now
        rather than after their ``ack_wait``."""
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()
        while self._buffer:
            msg = self._buffer.popleft()
            try:
                await msg.nak()
            except Exception:  # a closed connection: the server redelivers after ack_wait anyway
                break

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, oldest first: what an earlier request left, with what the server has
        now up to ``batch``; else the first message stored within ``timeout`` seconds; ``[]`` when none came.

        Raises ``nats.errors.NoRespondersError`` when no server answers for the durable (JetStream away,
        the stream gone), ``nats.js.errors.APIError`` for a status that means the durable cannot be used
        as it is (``409 Consumer Deleted``, a ``400``), and the connection's errors."""
        if self._sub is None:
            raise nats.errors.BadSubscriptionError
        if self._buffer:
            # A request given up at its deadline may still deliver (the server expires it a moment later,
            # or it was left open because another request's late message satisfied the wait): what it
            # left is handed over with what is stored now, not alone as a short batch.
            left = self._take(batch)
            if len(left) == batch:
                return left
            more = batch - len(left)
            return left + await self._request(more, {"batch": more, "no_wait": True}, _GRACE_S)
        # A no_wait request is answered at once (what is stored, or 404): its wait is the grace, not
        # ``timeout``, which a caller may set below a round trip (a consumer's top-up after its linger).
        found = await self._request(batch, {"batch": batch, "no_wait": True}, _GRACE_S)
        if found or timeout <= 0:
            return found
        found = await self._request(1, {"batch": 1, "expires": int(timeout * 1e9)}, timeout + _GRACE_S)
        # The long poll ends at its first message; what came with it (a late answer too) goes along.
        return found + self._take(batch - len(found)) if found else found

    async def _request(self, want: int, request: dict[str, object], wait_s: float) -> list[Msg]:
        self._requests += 1
        reply = f"{self._prefix}.{self._requests}"
        self._current, self._want, self._closed_by = reply, want, None
        self._wake.clear()
        try:
            await self.nc.publish(self._next, msgspec.json.encode(request), reply=reply)
            deadline = time.monotonic() + wait_s
            while len(self._buffer) < want and self._closed_by is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
                self._wake.clear()
        finally:
            self._current = None
        closed_by = self._closed_by
        if closed_by is not None:
            _raise_for(closed_by)
        return self._take(want)

    def _take(self, batch: int) -> list[Msg]:
        buffer = self._buffer
        if len(buffer) <= batch:
            taken = list(buffer)
            buffer.clear()
            return taken
        return [buffer.popleft() for _ in range(batch)]

    async def _arrived(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(HEADER_STATUS) if headers else None
        if status is None or msg.data:
            self._buffer.append(msg)
            if len(self._buffer) >= self._want:
                self._wake.set()
        elif status != _HEARTBEAT and msg.subject == self._current:
            # The close of the current request; that of an earlier one (same prefix, other token) is past.
            self._closed_by = msg
            self._wake.set()


def _raise_for(msg: Msg) -> None:
    """Nothing for a status that only closes a request; raises for one that says the durable is unusable."""
    headers = msg.headers or {}
    status = headers.get(HEADER_STATUS, "")
    description = headers.get(HEADER_STATUS_DESCRIPTION, "")
    if status in (_NO_MESSAGES, _REQUEST_TIMEOUT):
        return
    if status == _CONFLICT and description.lower().startswith(_PASSING_CONFLICTS):
        return
    if status == NO_RESPONDERS:
        raise nats.errors.NoRespondersError
    raise js_errors.APIError(code=int(status) if status.isdigit() else None, description=description or status)
