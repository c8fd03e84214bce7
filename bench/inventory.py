"""Inventory throughput: COMMERCE events applied per second, against a bare pull consumer draining the
same messages (fetch + ack, no work), measured in the same run.

    python -m bench.inventory [--orders 10000] [--mode sqlite|postgres|both] [--replicas 2] [--batch-size 256]

A fresh nats-server on a free port (temporary store) is pre-loaded with ``--orders`` order histories
(receipts first, then order.created → payment → shipment updates, with some cancellations and failed
payments, a few hot SKUs short of stock so that some orders are rejected), in Commerce Engine's own
dialect (``--dialect stockwire`` for Stockwire's), bodies and headers exactly as ingress writes them.
The baseline drains them through a second durable consumer in this process (uvloop, fetch 256, ack
each). Then inventory runs as real processes (``python -m
services.inventory``): one on SQLite, then ``--replicas`` on a temporary PostgreSQL database. Each
figure runs from the first acknowledgement to the consumer being drained (process start-up is not
counted), and every event is checked to be in the inbox exactly once afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import uvloop
from nats.js import JetStreamContext
from nats.js import api as js_api

from bench.support import Service, machine, print_table
from libs.config import TopologySettings
from libs.natsserver import NatsServer, free_port
from libs.topology import COMMERCE, INVENTORY_CONSUMER, apply_consumer, apply_topology, consumer_spec

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = {"sqlite": 3000.0, "postgres": 1500.0}


@dataclass(frozen=True)
class Event:
    subject: str
    body: bytes
    headers: dict[str, str]


def _event(event_type: str, event_id: str, data: dict, *, source: str = "ce") -> Event:
    body = json.dumps(
        {"id": event_id, "event_type": event_type, "created_at": "2026-11-28T10:00:00Z", "data": data}
    ).encode()
    headers = {
        "Nats-Msg-Id": f"{source}:{event_id}",
        "Stockwire-Source": source,
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
        "Stockwire-Received-At": "2026-11-28T10:00:00.000000+00:00",
    }
    return Event(f"commerce.{source}.{event_type}", body, headers)


def _order(number: str, items: list[tuple[str, int]]) -> dict:
    """A Commerce Engine ``Order`` with the fields inventory reads (the fixtures carry the whole shape)."""
    return {
        "order_number": number,
        "status": "pending",
        "payment_status": "pending",
        "order_items": [
            {"product_id": f"prd-{sku}", "variant_id": None, "sku": sku, "quantity": qty, "free_quantity": 0,
             "product_type": "physical", "backorder": False}
            for sku, qty in items
        ],
    }  # fmt: skip


def histories(
    orders: int, *, skus: int = 500, hot: int = 5, seed: int = 42, dialect: str = "commerce-engine"
) -> list[Event]:
    """Receipts (Stockwire's dialect, through ``shop``), then each order's life in ``dialect`` through ``ce``."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    names = [f"SKU-{i:04d}" for i in range(skus)]
    stock = [(s, 10_000) for s in names[hot:]] + [(s, orders // 20) for s in names[:hot]]
    events = [_event("inventory.received", f"{run}-r-{s}", {"sku": s, "qty": q}, source="shop") for s, q in stock]
    for n in range(orders):
        order_id = f"{run}-o{n}"
        pool = names[:hot] if rng.random() < 0.2 else names[hot:]
        items = [(s, rng.randint(1, 2)) for s in rng.sample(pool, rng.randint(1, 3))]
        fate = rng.random()
        if dialect == "stockwire":
            data: dict = {"order_id": order_id}
            life = [("order.created", {**data, "lines": [{"sku": s, "qty": q} for s, q in items]})]
            paid = [("payment.successful", data), ("shipment.shipped", data)]
        else:
            data = _order(order_id, items)
            life = [("order.created", data)]
            shipment = {
                "order_number": order_id,
                "reference_number": f"{order_id}-shp",
                "shipment_items": [{"sku": s, "quantity": q, "free_quantity": 0} for s, q in items],
            }
            paid = [
                ("payment.success", data),
                ("shipment.updated", {**shipment, "status": "packed"}),
                ("shipment.updated", {**shipment, "status": "shipped"}),
                ("shipment.delivered", {**shipment, "status": "delivered"}),
            ]
        if fate < 0.1:
            life.append(("order.cancelled", data))
        elif fate < 0.2:
            life.append(("payment.failed", data))
        elif fate >= 0.3:
            life += paid
        events += [_event(event_type, f"{order_id}-{i}", body) for i, (event_type, body) in enumerate(life)]
    return events


async def preload(js: JetStreamContext, events: list[Event]) -> float:
    started = time.perf_counter()
    futures = []
    for e in events:
        futures.append(await js.publish_async(e.subject, e.body, headers=e.headers))
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def baseline(js: JetStreamContext, count: int) -> float:
    """A bare durable pull consumer: fetch 256, ack each, no work."""
    durable = "bench-baseline"
    await js.add_consumer(
        COMMERCE,
        js_api.ConsumerConfig(
            durable_name=durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            filter_subject="commerce.>",
            max_ack_pending=4096,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream=COMMERCE)
    seen = 0
    started = time.perf_counter()
    while seen < count:
        try:
            batch = await sub.fetch(256, timeout=1)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in batch:
            await msg.ack()
        seen += len(batch)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_consumer(COMMERCE, durable)
    return count / elapsed


async def reset_consumer(js: JetStreamContext, topology: TopologySettings) -> None:
    """Start the inventory durable from the first message again."""
    try:
        await js.delete_consumer(COMMERCE, INVENTORY_CONSUMER)
    except Exception:
        pass
    await apply_consumer(js, consumer_spec(topology, COMMERCE, INVENTORY_CONSUMER))


async def measure_drain(js: JetStreamContext, total: int, timeout_s: float) -> tuple[float, int]:
    """From the first acknowledgement to no message left unacknowledged: (seconds, events counted)."""
    deadline = time.monotonic() + timeout_s
    started = None
    counted_from = total
    while time.monotonic() < deadline:
        info = await js.consumer_info(COMMERCE, INVENTORY_CONSUMER)
        outstanding = (info.num_pending or 0) + (info.num_ack_pending or 0)
        now = time.perf_counter()
        if started is None and outstanding < total:
            started, counted_from = now, outstanding
        if started is not None and outstanding == 0:
            return now - started, counted_from
        await asyncio.sleep(0.02)
    raise RuntimeError(f"inventory did not drain {total} events within {timeout_s}s")


def _service(nats_url: str, data_dir: Path, batch_size: int, dialect: str, database_url: str = "") -> Service:
    port = free_port()
    env = {
        "STOCKWIRE_NATS_URL": nats_url,
        "STOCKWIRE_DATA_DIR": str(data_dir),
        "STOCKWIRE_LOG_LEVEL": "WARNING",
        "STOCKWIRE__INVENTORY__PORT": str(port),
        "STOCKWIRE__INVENTORY__BATCH_SIZE": str(batch_size),
        "STOCKWIRE__INVENTORY__DATABASE_URL": database_url,
        # Orders come in through `ce`, read as the dialect they are in; stock through `shop`.
        "STOCKWIRE__SOURCES__CE__PROFILE": dialect,
        "STOCKWIRE__SOURCES__SHOP__PROFILE": "stockwire",
    }
    return Service([sys.executable, "-m", "services.inventory"], env, f"http://127.0.0.1:{port}/healthz")


_DEAD = "SELECT count(*) FROM inbox WHERE outcome = 'dead_lettered'"


async def run_sqlite(
    js: JetStreamContext, nats_url: str, events: int, batch_size: int, work: Path, dialect: str
) -> dict:
    data_dir = work / "sqlite"
    data_dir.mkdir()
    with _service(nats_url, data_dir, batch_size, dialect):
        seconds, counted = await measure_drain(js, events, timeout_s=600)
    with sqlite3.connect(data_dir / "inventory.db") as db:
        inbox = db.execute("SELECT count(*) FROM inbox").fetchone()[0]
        dead = db.execute(_DEAD).fetchone()[0]
    return {"seconds": seconds, "rate": counted / seconds, "inbox": inbox, "dead": dead}


async def run_postgres(
    js: JetStreamContext, nats_url: str, events: int, batch_size: int, replicas: int, work: Path, dialect: str
) -> dict:
    import asyncpg

    name = f"stockwire_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        services = [_service(nats_url, work / f"pg-{i}", batch_size, dialect, url) for i in range(replicas)]
        for i, service in enumerate(services):
            (work / f"pg-{i}").mkdir()
            service.__enter__()
        try:
            seconds, counted = await measure_drain(js, events, timeout_s=600)
        finally:
            for service in services:
                service.__exit__()
        conn = await asyncpg.connect(url)
        inbox = await conn.fetchval("SELECT count(*) FROM inbox")
        dead = await conn.fetchval(_DEAD)
        await conn.close()
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"seconds": seconds, "rate": counted / seconds, "inbox": inbox, "dead": dead}


def _every_event_once(result: dict, events: int) -> str:
    if result["inbox"] != events:
        return f"inbox holds {result['inbox']}"
    return f"{result['dead']} dead-lettered" if result["dead"] else "ok"


async def main(args: argparse.Namespace) -> int:
    events = histories(args.orders, dialect=args.dialect)
    topology = TopologySettings()
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        work = Path(tmp)
        server = NatsServer(work / "nats").start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
            await apply_topology(js, topology)
            publish_s = await preload(js, events)
            print(f"{machine()}; load average {os.getloadavg()[0]:.2f}")
            print(f"pre-loaded {len(events):,} events ({args.orders:,} orders) in {publish_s:.1f}s")
            base = await baseline(js, len(events))
            rows = []
            results = {}
            modes = ["sqlite", "postgres"] if args.mode == "both" else [args.mode]
            for mode in modes:
                await reset_consumer(js, topology)
                if mode == "sqlite":
                    result = await run_sqlite(js, server.url, len(events), args.batch_size, work, args.dialect)
                    label = "inventory, SQLite, 1 process"
                else:
                    result = await run_postgres(
                        js, server.url, len(events), args.batch_size, args.replicas, work, args.dialect
                    )
                    label = f"inventory, PostgreSQL, {args.replicas} processes"
                results[mode] = result
                target = TARGETS[mode]
                rows.append(
                    [
                        label,
                        len(events),
                        result["seconds"],
                        result["rate"],
                        f"{result['rate'] / base:.2f}x",
                        f">= {target:,.0f}: {'met' if result['rate'] >= target else 'NOT met'}",
                        _every_event_once(result, len(events)),
                    ]
                )
            rows.insert(
                0, ["bare pull consumer (fetch 256 + ack)", len(events), len(events) / base, base, "1.00x", "", ""]
            )
            print_table(
                "inventory: COMMERCE events applied per second",
                ["consumer", "events", "seconds", "events/s", "vs bare", "target", "every event once"],
                rows,
            )
            await nc.close()
            return 0 if all(_every_event_once(r, len(events)) == "ok" for r in results.values()) else 1
        finally:
            server.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inventory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10000, help="order histories to pre-load (~3 events each)")
    parser.add_argument("--mode", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--replicas", type=int, default=2, help="inventory processes on PostgreSQL")
    parser.add_argument("--batch-size", type=int, default=256, help="[inventory] batch_size")
    parser.add_argument(
        "--dialect",
        choices=["commerce-engine", "stockwire"],
        default="commerce-engine",
        help="the orders' payloads: Commerce Engine's own (shipments by status updates) or Stockwire's",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.install()
    sys.exit(asyncio.run(main(parse_args())))
