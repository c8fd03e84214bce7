"""The other services as the console sees them: their HTTP APIs (admin token as a bearer) and /metrics.

Nothing here opens another service's store: every answer comes from a service's own API."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .settings import PEER_DEFAULTS, ConsoleSettings

__all__ = ["ApiAnswer", "Health", "MetricRates", "Peers"]


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any
    """The JSON answer (a dict for every API the console calls), or the text of an error."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        if isinstance(self.body, Mapping):
            return str(self.body.get("detail") or self.body.get("error") or self.body)
        return str(self.body)


@dataclass(frozen=True)
class Health:
    service: str
    url: str
    live: bool
    ready: bool
    checks: Mapping[str, bool]
    metrics: Mapping[str, float]
    """Summed samples of the counters and gauges the overview shows (name or name{label} -> value)."""
    error: str | None = None


_SHOWN = {
    "ingress_webhooks_received_total": None,
    "inventory_events_applied_total": None,
    "channel_notifier_deliveries_total": ("channel", "outcome"),
    "ingress_spool_depth": None,
    "inventory_parked_events": None,
    "outbox_relay_backlog_rows": None,
    "channel_notifier_pending_deliveries": ("channel",),
}


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_PREFIXES = tuple(_SHOWN)


def _samples(text: str) -> dict[str, float]:
    """The shown series of a Prometheus text exposition, summed over the labels not kept. Only the lines
    of those series are parsed (a histogram's buckets are skipped unread): a refresh stays cheap while
    the services are busy."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        head, _, rest = line.rpartition(" ") if "}" not in line else line.partition("} ")
        name, _, labels_text = head.partition("{")
        if name not in _SHOWN:
            continue
        try:
            value = float(rest.split()[0]) if rest.strip() else float(head.split()[-1])
        except (ValueError, IndexError):
            continue
        keep = _SHOWN[name]
        key = name
        if keep:
            labels = dict(_LABEL.findall(labels_text))
            key += "{" + ",".join(labels.get(label, "") for label in keep) + "}"
        out[key] = out.get(key, 0.0) + value
    return out


@dataclass
class MetricRates:
    """Per-second rates of counters between two overview refreshes (the first refresh shows none)."""

    previous: dict[str, tuple[float, float]] = field(default_factory=dict)

    def rates(self, totals: Mapping[str, float], now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        out: dict[str, float] = {}
        for key, value in totals.items():
            before = self.previous.get(key)
            if before is not None and now > before[0] and value >= before[1]:
                out[key] = (value - before[1]) / (now - before[0])
            self.previous[key] = (now, value)
        return out


class Peers:
    """One HTTP client for every call to the other services."""

    def __init__(self, settings: ConsoleSettings, admin_token: str | None) -> None:
        self.urls = {service: str(getattr(settings, key)).rstrip("/") for service, (key, _) in PEER_DEFAULTS.items()}
        headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=settings.request_timeout_s)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> ApiAnswer:
        try:
            response = await self.client.request(method, self.urls[service] + path, **kwargs)
        except httpx.HTTPError as exc:
            return ApiAnswer(503, f"{service} did not answer: {type(exc).__name__} {exc}".strip())
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return ApiAnswer(response.status_code, body)

    async def health(self, service: str, timeout_s: float = 1.0) -> Health:
        """Readiness (its checks) and the shown metrics; /healthz is asked only when /readyz fails."""
        url = self.urls[service]
        try:
            ready, metrics = await asyncio.gather(
                self.client.get(url + "/readyz", timeout=timeout_s),
                self.client.get(url + "/metrics", timeout=timeout_s),
            )
        except httpx.HTTPError as exc:
            return Health(service, url, False, False, {}, {}, f"{type(exc).__name__}")
        try:
            checks = dict(ready.json().get("checks", {}))
        except ValueError:
            checks = {}
        live = ready.status_code == 200
        if not live:
            try:
                live = (await self.client.get(url + "/healthz", timeout=timeout_s)).status_code == 200
            except httpx.HTTPError:
                live = False
        return Health(
            service,
            url,
            live,
            ready.status_code == 200,
            checks,
            _samples(metrics.text) if metrics.status_code == 200 else {},
        )

    # --- inventory ------------------------------------------------------------------------------------
    async def order(self, order_id: str, source: str | None) -> ApiAnswer:
        params = {"source": source} if source else None
        return await self.call("inventory", "GET", f"/orders/{quote(order_id, safe='')}", params=params)

    async def sku(self, sku: str) -> ApiAnswer:
        return await self.call("inventory", "GET", f"/skus/{quote(sku, safe='')}")

    async def ledger(self, sku: str, after: int = 0, limit: int = 1000) -> ApiAnswer:
        return await self.call(
            "inventory", "GET", f"/skus/{quote(sku, safe='')}/ledger", params={"after": after, "limit": limit}
        )

    async def deadletters(self, params: Mapping[str, Any]) -> ApiAnswer:
        return await self.call("inventory", "GET", "/deadletters", params={k: v for k, v in params.items() if v})

    async def deadletter(self, seq: int) -> ApiAnswer:
        return await self.call("inventory", "GET", f"/deadletters/{seq}")

    async def replay(self, body: Mapping[str, Any]) -> ApiAnswer:
        return await self.call("inventory", "POST", "/deadletters/replay", json=dict(body))

    async def discard(self, seqs: list[int], reason: str) -> ApiAnswer:
        return await self.call("inventory", "POST", "/deadletters/discard", json={"seqs": seqs, "reason": reason})

    # --- channel-notifier -----------------------------------------------------------------------------
    async def channels(self) -> ApiAnswer:
        return await self.call("channel-notifier", "GET", "/channels")

    async def channel(self, name: str) -> ApiAnswer:
        return await self.call("channel-notifier", "GET", f"/channels/{quote(name, safe='')}")

    async def deliveries(self, name: str, status: str | None = None, limit: int = 200, attempts: int = 0) -> ApiAnswer:
        """A channel's deliveries; ``attempts``: each with its newest attempts (``recent_attempts``)."""
        params: dict[str, Any] = {"limit": limit}
        if attempts:
            params["attempts"] = attempts
        if status:
            params["status"] = status
        return await self.call("channel-notifier", "GET", f"/channels/{quote(name, safe='')}/deliveries", params=params)

    async def set_enabled(self, name: str, enabled: bool) -> ApiAnswer:
        return await self.call(
            "channel-notifier", "PATCH", f"/channels/{quote(name, safe='')}", json={"enabled": enabled}
        )

    async def change_channel(self, name: str, changes: Mapping[str, Any]) -> ApiAnswer:
        return await self.call("channel-notifier", "PATCH", f"/channels/{quote(name, safe='')}", json=dict(changes))

    async def retry_delivery(self, delivery_id: int) -> ApiAnswer:
        return await self.call("channel-notifier", "POST", f"/deliveries/{delivery_id}/retry")

    async def replay_channel(self, name: str, since: str) -> ApiAnswer:
        return await self.call(
            "channel-notifier", "POST", f"/channels/{quote(name, safe='')}/replay", json={"since": since}
        )
