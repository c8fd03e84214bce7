"""Reading inventory's side back: what it decided about each order, and which event made each version.

:class:`InventoryWatcher` follows the INVENTORY stream with its own durable consumer (no acks, so it
never slows anyone down) and keeps:

- per order, a :class:`~stockwire.sim.model.Decision` (``inventory.reserved`` / ``inventory.rejected``
  carry the order id; ``inventory.expired`` marks a lapsed reservation);
- per (SKU, version), the webhook whose event made it (``source_event_id``), for end-to-end latency;
- the worst oversell any availability snapshot ever showed.

:class:`InventoryApi` reads the same from inventory's HTTP API (``GET /skus/{sku}``, ``GET /orders/{id}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.contracts import decode_availability, decode_inventory_event
from libs.pull import PullRequests
from libs.topology import INVENTORY

from .model import Decision, StockLevels

__all__ = ["InventoryApi", "InventoryWatcher", "OrderView", "SkuView"]

log = logging.getLogger("stockwire.sim")


@dataclass
class _OrderSeen:
    accepted: bool | None = None
    expired: bool = False
    rejected_later: bool = False
    decided_at: float | None = None

    def decision(self) -> Decision | None:
        if self.accepted is None:
            return None
        return Decision(self.accepted, self.expired, self.rejected_later)


@dataclass
class InventoryWatcher:
    js: JetStreamContext
    name: str
    order_prefix: str = ""
    """Only orders whose id starts with this are tracked (other runs on the same stack are ignored)."""
    batch: int = 1000

    orders: dict[str, _OrderSeen] = field(default_factory=dict)
    sources: dict[tuple[str, int], str] = field(default_factory=dict)
    """(SKU, version) → the webhook event id whose ledger row made that version."""
    snapshots: dict[tuple[str, int], float] = field(default_factory=dict)
    """(SKU, version) of every availability snapshot → its ledger time (epoch seconds)."""
    kinds: Counter[str] = field(default_factory=Counter)
    latest: dict[str, StockLevels] = field(default_factory=dict)
    latest_version: dict[str, int] = field(default_factory=dict)
    """SKU → version of the newest availability snapshot (published only when ``available`` changed)."""
    ledger_version: dict[str, int] = field(default_factory=dict)
    """SKU → version of the newest ledger event (every ledger row publishes one)."""
    worst_oversold: int = 0
    """The largest ``reserved + committed - on_hand`` any snapshot showed, summed over SKUs at that time."""
    messages: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def __post_init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._oversold: dict[str, int] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> InventoryWatcher:
        await self._ensure_consumer()
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.name}")
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.js.delete_consumer(INVENTORY, self.name)

    async def _ensure_consumer(self) -> None:
        config = js_api.ConsumerConfig(
            durable_name=self.name,
            description="flash-sale simulator: reads inventory's decisions back",
            deliver_policy=js_api.DeliverPolicy.NEW,
            ack_policy=js_api.AckPolicy.NONE,
            filter_subject="inventory.>",
            inactive_threshold=600.0,
            max_waiting=16,
        )
        try:
            await self.js.consumer_info(INVENTORY, self.name)
        except js_errors.NotFoundError:
            await self.js.add_consumer(INVENTORY, config)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                # A missing durable raises here and is re-created below; a fetch would only answer 503.
                await self.js.consumer_info(INVENTORY, self.name)
                sub = await PullRequests.bind(self.js, INVENTORY, self.name)
            except Exception as exc:
                log.debug("watcher: cannot bind (%s); retrying", exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self._ensure_consumer()
                continue
            try:
                while not self._stopping.is_set():
                    try:
                        msgs = await asyncio.wait_for(sub.fetch(self.batch, timeout=0.5), 10)
                    except TimeoutError:
                        # An empty fetch returns []: only a stall raises this.
                        log.debug("watcher: fetch stalled; re-binding")
                        break
                    except (nats.errors.Error, js_errors.Error) as exc:
                        log.debug("watcher: fetch failed (%s); re-binding", exc)
                        await asyncio.sleep(0.3)
                        break
                    for msg in msgs:
                        self.observe(msg.subject, msg.data)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    # --- what a message tells -------------------------------------------------------------------
    def observe(self, subject: str, data: bytes) -> None:
        now = time.time()
        self.first_at = self.first_at or now
        self.last_at = now
        self.messages += 1
        kind = subject.split(".", 2)[1] if subject.count(".") >= 2 else ""
        self.kinds[kind] += 1
        try:
            if kind == "availability":
                self._availability(data)
            else:
                self._event(data)
        except msgspec.DecodeError as exc:
            log.warning("watcher: undecodable message on %s: %s", subject, exc)

    def _availability(self, data: bytes) -> None:
        snapshot = decode_availability(data)
        self.snapshots[(snapshot.sku, snapshot.version)] = _epoch(snapshot.occurred_at)
        if snapshot.version < self.latest_version.get(snapshot.sku, 0):
            return
        self.latest_version[snapshot.sku] = snapshot.version
        level = StockLevels(snapshot.on_hand, snapshot.reserved, snapshot.committed)
        self.latest[snapshot.sku] = level
        self._oversold[snapshot.sku] = level.oversold
        self.worst_oversold = max(self.worst_oversold, sum(self._oversold.values()))

    def _event(self, data: bytes) -> None:
        event = decode_inventory_event(data)
        if event.version > self.ledger_version.get(event.sku, 0):
            self.ledger_version[event.sku] = event.version
        if event.source_event_id:
            self.sources[(event.sku, event.version)] = event.source_event_id.split(":", 1)[-1]
        oid = event.order_id
        if oid is None or not oid.startswith(self.order_prefix):
            return
        seen = self.orders.setdefault(oid, _OrderSeen())
        if event.kind == "reserved" and seen.accepted is None:
            seen.accepted = True
            seen.decided_at = self.last_at
        elif event.kind == "rejected":
            if seen.accepted is None:
                seen.accepted = False
                seen.decided_at = self.last_at
            elif seen.accepted:
                seen.rejected_later = True
        elif event.kind == "expired":
            seen.expired = True

    # --- queries ---------------------------------------------------------------------------------
    def decision(self, order_id: str) -> Decision | None:
        seen = self.orders.get(order_id)
        return seen.decision() if seen else None

    def decisions(self) -> dict[str, Decision]:
        out = {}
        for oid, seen in self.orders.items():
            decision = seen.decision()
            if decision is not None:
                out[oid] = decision
        return out

    def decided(self, order_ids: Iterable[str]) -> bool:
        return all(self.decision(oid) is not None for oid in order_ids)

    def decision_times(self) -> list[float]:
        return [seen.decided_at for seen in self.orders.values() if seen.decided_at is not None]


def _epoch(iso: str) -> float:
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return math.nan


class SkuView(msgspec.Struct, frozen=True):
    sku: str
    on_hand: int
    reserved: int
    committed: int
    available: int
    version: int

    @property
    def levels(self) -> StockLevels:
        return StockLevels(self.on_hand, self.reserved, self.committed)


class OrderView(msgspec.Struct, frozen=True):
    order_id: str
    state: str


class InventoryApi:
    """Inventory's HTTP API, read-only."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str | None = None) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {token}"} if token else {}

    async def sku(self, sku: str) -> SkuView | None:
        response = await self.client.get(f"{self.base}/skus/{quote(sku, safe='')}", headers=self.headers)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return msgspec.convert(response.json(), SkuView, strict=False)

    async def skus(self, skus: Iterable[str], concurrency: int = 16) -> dict[str, SkuView | None]:
        gate = asyncio.Semaphore(concurrency)

        async def one(sku: str) -> tuple[str, SkuView | None]:
            async with gate:
                return sku, await self.sku(sku)

        return dict(await asyncio.gather(*(one(s) for s in skus)))

    async def order(self, order_id: str) -> dict[str, object] | None:
        response = await self.client.get(f"{self.base}/orders/{quote(order_id, safe='')}", headers=self.headers)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        document = response.json()
        return document if isinstance(document, dict) else None
