"""The sending side of the simulator: signed Commerce Engine webhooks over HTTP/1.1 keep-alive.

Each delivery is retried on connection errors, 5xx, 408 and 429 with exponential backoff and jitter
(and a few times on other 4xx), as a real producer would; what ingress answered is counted, and
the first 2xx of every event is handed to ``on_delivered`` — the ground truth is built from those.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from libs.outbound import GuardedTransport, RawResponse
from libs.signing import HEADER_CE_SIGNATURE, commerce_engine_signature
from libs.urlpolicy import UrlPolicy, UrlRefused

from .config import ProducerConfig
from .delivery import Copy, Delivery, backoff_delay, retryable
from .plan import Webhook, envelope

__all__ = ["ClientPool", "DeliveryStats", "Producer", "make_client"]

log = logging.getLogger("stockwire.sim")


@dataclass
class DeliveryStats:
    requests: int = 0
    """HTTP requests made, retries included."""
    deliveries: int = 0
    """Deliveries finished (originals, duplicates and forged copies)."""
    accepted: int = 0
    duplicate: int = 0
    spooled: int = 0
    rejected: int = 0
    """Deliveries that ended on a 4xx (other than forged copies)."""
    gave_up: int = 0
    """Deliveries still failing after every attempt: the events are not part of the ground truth."""
    retries: int = 0
    forged_refused: int = 0
    forged_accepted: int = 0
    """Forged copies ingress took: must stay 0."""
    statuses: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "deliveries": self.deliveries,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "spooled": self.spooled,
            "rejected": self.rejected,
            "gave_up": self.gave_up,
            "retries": self.retries,
            "forged_refused": self.forged_refused,
            "forged_accepted": self.forged_accepted,
            "statuses": dict(self.statuses),
        }


class ClientPool:
    """HTTP/1.1 keep-alive connections to the producer's target, at most ``concurrency`` at once.

    Built on the lean transport of :mod:`libs.outbound` rather than a full httpx client: at tens of
    thousands of orders a minute the simulator shares the machine with what it measures, so the
    cheaper every request is, the more of the machine is left to the system under test. The target is
    the operator's own choice, so its host is the whole of the URL policy.
    """

    def __init__(self, concurrency: int, timeout_s: float) -> None:
        self.concurrency = max(1, concurrency)
        self.connect_timeout_s = min(timeout_s, 2.0)
        self.timeout_s = timeout_s
        self._transports: dict[str, GuardedTransport] = {}
        self._urls: dict[str, httpx.URL] = {}

    def _transport(self, url: httpx.URL) -> GuardedTransport:
        transport = self._transports.get(url.host)
        if transport is None:
            policy = UrlPolicy.from_hosts([url.host])
            transport = self._transports[url.host] = GuardedTransport(policy, max_connections=self.concurrency)
        return transport

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> RawResponse:
        target = self._urls.get(url)
        if target is None:
            target = self._urls[url] = httpx.URL(url)
        return await self._transport(target).post(
            target, content, headers, connect_timeout=self.connect_timeout_s, read_timeout=self.timeout_s
        )

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def make_client(concurrency: int, timeout_s: float) -> ClientPool:
    """HTTP/1.1 keep-alive connections, as many as the concurrency."""
    return ClientPool(concurrency, timeout_s)


class Producer:
    """Delivers each webhook to ``<ingress>/webhooks/<its source>`` signed with that source's secret."""

    def __init__(
        self,
        client: ClientPool,
        ingress_url: str,
        secrets: Mapping[str, str],
        config: ProducerConfig,
        rng: random.Random,
        on_delivered: Callable[[Webhook, float], None],
    ) -> None:
        self.client = client
        self.urls = {source: f"{ingress_url.rstrip('/')}/webhooks/{source}" for source in secrets}
        """Source → where its webhooks go."""
        self.secrets = dict(secrets)
        self.config = config
        self.rng = rng
        self.on_delivered = on_delivered
        self.stats = DeliveryStats()
        self.delivered_at: dict[str, float] = {}
        """Event id → wall-clock time the first successful attempt was sent."""
        self.acknowledged_at: dict[str, float] = {}
        """Event id → wall-clock time its first 2xx answer arrived (what a history checker orders by)."""
        self.response_times: list[float] = []
        """Seconds each successful attempt took, request to answer."""
        self.on_answer: Callable[[Webhook, dict[str, object]], None] | None = None
        """Called with the JSON answer of every 2xx (a synchronous design answers with its decision)."""
        self._bodies: dict[str, bytes] = {}
        self._created_at: dict[str, str] = {}

    def stamp(self, webhook: Webhook, created_at: dt.datetime) -> None:
        """Date an event before it is first sent (a producer dates an event when it happens)."""
        self._created_at.setdefault(webhook.event_id, created_at.isoformat(timespec="milliseconds"))

    def body(self, webhook: Webhook) -> bytes:
        body = self._bodies.get(webhook.event_id)
        if body is None:
            created = self._created_at.pop(webhook.event_id, None)
            created = created or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            body = self._bodies[webhook.event_id] = envelope(webhook, created)
        return body

    def _headers(self, source: str, body: bytes, forged: bool) -> dict[str, str]:
        secret = self.secrets[source] + ("-not-the-secret" if forged else "")
        return {"content-type": "application/json", HEADER_CE_SIGNATURE: commerce_engine_signature(secret, body)}

    async def deliver(self, delivery: Delivery) -> int | None:
        """Send until a 2xx or the attempts run out; returns the last status (None: no answer)."""
        webhook, forged = delivery.webhook, delivery.copy is Copy.FORGED
        body = self.body(webhook)
        url, headers = self.urls[webhook.source], self._headers(webhook.source, body, forged)
        attempt = 0
        status: int | None = None
        while True:
            attempt += 1
            started = time.time()
            self.stats.requests += 1
            try:
                response = await self.client.post(url, content=body, headers=headers)
                status = response.status
                outcome = _outcome(response) if 200 <= status < 300 else None
                if outcome is not None:
                    self.response_times.append(time.time() - started)
            except (httpx.HTTPError, UrlRefused) as exc:
                status, outcome = None, None
                log.debug("delivery of %s failed: %s", webhook.event_id, exc)
            self.stats.statuses[str(status) if status else "connection_error"] += 1
            if forged:
                self.stats.deliveries += 1
                if status is not None and 200 <= status < 300:
                    self.stats.forged_accepted += 1
                else:
                    self.stats.forged_refused += 1
                return status
            if outcome is not None:
                self.stats.deliveries += 1
                setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
                if webhook.event_id not in self.delivered_at:
                    self.delivered_at[webhook.event_id] = started
                    self.acknowledged_at[webhook.event_id] = time.time()
                    self.on_delivered(webhook, started)
                if self.on_answer is not None:
                    self.on_answer(webhook, _json(response))
                return status
            limit = self.config.max_attempts if retryable(status) else self.config.max_attempts_client_error
            if attempt >= limit:
                self.stats.deliveries += 1
                if retryable(status):
                    self.stats.gave_up += 1
                else:
                    self.stats.rejected += 1
                log.warning("gave up on %s after %d attempts (last status %s)", webhook.event_id, attempt, status)
                return status
            self.stats.retries += 1
            await asyncio.sleep(backoff_delay(attempt, self.config, self.rng))


def _json(response: RawResponse) -> dict[str, object]:
    try:
        document = json.loads(response.content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _outcome(response: RawResponse) -> str:
    status = str(_json(response).get("status", "accepted"))
    return status if status in ("accepted", "duplicate", "spooled") else "accepted"
