"""Inventory as real processes (``python -m services.inventory``), and histories to feed them."""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from services.inventory.adapters.wire import Envelope
from tests.support import service_process
from tests.unit.inventory.histories import envelope

ADMIN_TOKEN = "e2e-admin-token"


class InventoryProcess:
    def __init__(self, nats_url: str, data_dir: Path, log: Path, **settings: object) -> None:
        self.port, self.child = service_process(
            "inventory",
            "inventory",
            nats_url=nats_url,
            data_dir=data_dir,
            log=log,
            settings={"fetch_timeout_s": 0.2, "metrics_interval_s": 0.5, **settings},
            env={"STOCKWIRE_ADMIN_TOKEN": ADMIN_TOKEN},
        )

    def start(self) -> InventoryProcess:
        self.child.start()
        return self

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except OSError:
            return 0, None
        if path == "/metrics":
            return status, body.decode()
        return status, json.loads(body)

    async def ready(self) -> bool:
        status, _ = await asyncio.to_thread(self.get, "/readyz")
        return status == 200

    async def applied(self) -> float:
        """Events this process settled (any outcome), from its metrics."""
        status, text = await asyncio.to_thread(self.get, "/metrics")
        if status != 200:
            return 0.0
        pattern = re.compile(r"^inventory_events_applied_total\{[^}]*\} ([0-9.e+]+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))


@pytest.fixture
def processes() -> Iterator[list[InventoryProcess]]:
    started: list[InventoryProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.child.kill()


# Lifecycles whose ledger rows are the same whatever order their events are applied in, given
# enough stock: parking puts every late event back in its place.
_LIFECYCLES = (
    (),
    ("payment.failed",),
    ("order.cancelled",),
    ("payment.successful",),
    ("payment.successful", "shipment.shipped"),
    ("payment.captured", "order.fulfilled", "return"),
)


def order_stream(total: int, *, skus: int = 30, seed: int = 1) -> list[Envelope]:
    """Receipts first (plenty of stock), then order histories until ``total`` events."""
    rng = random.Random(seed)
    names = [f"SKU-{i:03d}" for i in range(skus)]
    events = [envelope("inventory.received", f"recv-{s}", {"sku": s, "qty": 100_000}) for s in names]
    n = 0
    while len(events) < total:
        order_id = f"ord-{n}"
        lines = [{"sku": s, "qty": rng.randint(1, 3)} for s in rng.sample(names, rng.randint(1, 3))]
        history = [envelope("order.created", f"{order_id}-c", {"order_id": order_id, "lines": lines})]
        for i, step in enumerate(rng.choice(_LIFECYCLES)):
            if step == "return":
                data = {"order_id": order_id, "lines": lines[:1], "restock": True}
                history.append(envelope("return.received", f"{order_id}-{i}", data))
            else:
                history.append(envelope(step, f"{order_id}-{i}", {"order_id": order_id}))
        events.extend(history)
        n += 1
    return events[:total]


async def publish_all(js: JetStreamContext, events: list[Envelope]) -> None:
    futures = []
    for e in events:
        futures.append(await js.publish_async(e.subject, e.body, headers=dict(e.headers)))
    await asyncio.gather(*futures)


async def drained(js: JetStreamContext) -> bool:
    """Every message in COMMERCE is acknowledged by the inventory consumer (the pending count can lag
    a publish; the stream's last sequence cannot)."""
    last = (await js.stream_info("COMMERCE")).state.last_seq
    info = await js.consumer_info("COMMERCE", "inventory")
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0
