"""Inventory throughput: COMMERCE events applied per second, against a bare pull consumer draining the
same messages (fetch + ack, no work), measured in the same run.

    python -m bench.inventory [--orders 10000] [--mode sqlite|postgres|both] [--replicas 2] [--batch-size 256]
                              [--dialect commerce-engine|shopify|stockwire|both] [--bodies lean|full]
                              [--compare] [--repeats 1]

A fresh nats-server on a free port (temporary store) is pre-loaded with ``--orders`` order histories
(receipts first, then order.created → payment → shipment updates, with some cancellations and failed
payments, a few hot SKUs short of stock so that some orders are rejected), in Commerce Engine's own
dialect through a source ``ce`` (``--dialect shopify``: Shopify's topics through a source ``shopify``
with the ``shopify`` profile; ``--dialect stockwire``: Stockwire's), bodies and headers exactly as
ingress writes them (``bench/histories.py``: the same orders, fates and events per order in each
dialect). ``--bodies full`` sends each producer's whole resource (built from the fixtures) instead
of the fields the profile reads.
The baseline drains them through a second durable consumer in this process (uvloop, fetch 256, ack
each). Then inventory runs as real processes (``python -m
services.inventory``): one on SQLite, then ``--replicas`` on a temporary PostgreSQL database. Each
figure runs from the first acknowledgement to the consumer being drained (process start-up is not
counted), and every event is checked to be in the inbox exactly once afterwards (none dead-lettered).

``--compare`` (``--dialect both``) measures Commerce Engine then Shopify in the same run, each on a
fresh nats-server (``--repeats`` times, alternating; medians compared), prints the ratio
shopify / commerce-engine per mode and exits non-zero when Shopify is more than 10 % below.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nats
import uvloop
from nats.js import JetStreamContext
from nats.js import api as js_api

from bench.histories import BODIES, DIALECTS, SOURCE_PROFILES, Event, histories
from bench.support import Service, machine, print_table
from libs.config import TopologySettings
from libs.natsserver import NatsServer, free_port
from libs.topology import COMMERCE, INVENTORY_CONSUMER, apply_consumer, apply_topology, consumer_spec

__all__ = ["Event", "histories", "main", "parse_args"]

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = {"sqlite": 3000.0, "postgres": 1500.0}
COMPARED = ("commerce-engine", "shopify")
MAX_SHORTFALL = 0.10
"""--compare: how far below the Commerce Engine figure the Shopify one may be."""


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
    # Orders come in through `ce` (read as the dialect they are in) or `shopify`; stock through `shop`.
    profiles = {**SOURCE_PROFILES, "ce": "stockwire" if dialect == "stockwire" else "commerce-engine"}
    env = {
        "STOCKWIRE_NATS_URL": nats_url,
        "STOCKWIRE_DATA_DIR": str(data_dir),
        "STOCKWIRE_LOG_LEVEL": "WARNING",
        "STOCKWIRE__INVENTORY__PORT": str(port),
        "STOCKWIRE__INVENTORY__BATCH_SIZE": str(batch_size),
        "STOCKWIRE__INVENTORY__DATABASE_URL": database_url,
        **{f"STOCKWIRE__SOURCES__{source.upper()}__PROFILE": profile for source, profile in profiles.items()},
        "STOCKWIRE__SOURCES__SHOPIFY__SCHEME": "shopify",
    }
    return Service([sys.executable, "-m", "services.inventory"], env, f"http://127.0.0.1:{port}/healthz")


_OUTCOMES = "SELECT outcome, count(*) FROM inbox GROUP BY outcome"


async def run_sqlite(
    js: JetStreamContext, nats_url: str, events: int, batch_size: int, work: Path, dialect: str
) -> dict:
    data_dir = work / "sqlite"
    data_dir.mkdir(parents=True)
    with _service(nats_url, data_dir, batch_size, dialect):
        seconds, counted = await measure_drain(js, events, timeout_s=600)
    with sqlite3.connect(data_dir / "inventory.db") as db:
        outcomes = dict(db.execute(_OUTCOMES).fetchall())
    return {"seconds": seconds, "rate": _rate(counted, seconds), **_inbox(outcomes)}


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
            (work / f"pg-{i}").mkdir(parents=True)
            service.__enter__()
        try:
            seconds, counted = await measure_drain(js, events, timeout_s=600)
        finally:
            for service in services:
                service.__exit__()
        conn = await asyncpg.connect(url)
        outcomes = {row[0]: row[1] for row in await conn.fetch(_OUTCOMES)}
        await conn.close()
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"seconds": seconds, "rate": _rate(counted, seconds), **_inbox(outcomes)}


def _rate(counted: int, seconds: float) -> float:
    # Drained before the first look (a run too small for the machine): no figure.
    return counted / seconds if seconds else 0.0


def _inbox(outcomes: dict[str, int]) -> dict:
    return {"inbox": sum(outcomes.values()), "dead": outcomes.get("dead_lettered", 0), "outcomes": outcomes}


def _every_event_once(result: dict, events: int) -> str:
    if result["inbox"] != events:
        return f"inbox holds {result['inbox']}"
    return f"{result['dead']} dead-lettered" if result["dead"] else "ok"


@dataclass
class DialectRun:
    """One dialect's histories, pre-loaded on a fresh nats-server and drained by each mode."""

    dialect: str
    events: int
    body_bytes: float
    base: float
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(_every_event_once(r, self.events) == "ok" for r in self.results.values())


async def run_dialect(args: argparse.Namespace, dialect: str, work: Path) -> DialectRun:
    events = histories(args.orders, dialect=dialect, bodies=args.bodies)
    topology = TopologySettings()
    server = NatsServer(work / "nats").start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
        await apply_topology(js, topology)
        publish_s = await preload(js, events)
        body_bytes = sum(len(e.body) for e in events) / len(events)
        print(f"{machine()}; load average {os.getloadavg()[0]:.2f}")
        print(
            f"{dialect}: pre-loaded {len(events):,} events ({args.orders:,} orders, {args.bodies} bodies, "
            f"{body_bytes:,.0f} bytes each on average) in {publish_s:.1f}s",
            flush=True,
        )
        run = DialectRun(dialect, len(events), body_bytes, await baseline(js, len(events)))
        rows = [
            ["bare pull consumer (fetch 256 + ack)", len(events), len(events) / run.base, run.base, "1.00x", "", ""]
        ]
        for mode in ["sqlite", "postgres"] if args.mode == "both" else [args.mode]:
            await reset_consumer(js, topology)
            if mode == "sqlite":
                result = await run_sqlite(js, server.url, len(events), args.batch_size, work, dialect)
                label = "inventory, SQLite, 1 process"
            else:
                result = await run_postgres(js, server.url, len(events), args.batch_size, args.replicas, work, dialect)
                label = f"inventory, PostgreSQL, {args.replicas} processes"
            run.results[mode] = result
            target = TARGETS[mode]
            rows.append(
                [
                    label,
                    len(events),
                    result["seconds"],
                    result["rate"],
                    f"{result['rate'] / run.base:.2f}x",
                    f">= {target:,.0f}: {'met' if result['rate'] >= target else 'NOT met'}",
                    _every_event_once(result, len(events)),
                ]
            )
            outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(result["outcomes"].items()))
            print(f"{dialect}, {mode}: inbox outcomes: {outcomes}", flush=True)
        print_table(
            f"inventory: COMMERCE events applied per second — {dialect} dialect, {args.bodies} bodies",
            ["consumer", "events", "seconds", "events/s", "vs bare", "target", "every event once"],
            rows,
        )
        await nc.close()
        return run
    finally:
        server.stop()


def compare(runs: list[DialectRun], modes: list[str]) -> bool:
    """Print shopify / commerce-engine per mode (medians over the repeats); whether Shopify is within
    :data:`MAX_SHORTFALL` of Commerce Engine in every mode."""
    by = {d: [r for r in runs if r.dialect == d] for d in COMPARED}
    rows, within = [], True
    for mode in modes:
        rate = {d: statistics.median(r.results[mode]["rate"] for r in by[d]) for d in COMPARED}
        # Each figure over its own bare consumer: the machine's drift between the two runs taken out.
        relative = {d: statistics.median(r.results[mode]["rate"] / r.base for r in by[d]) for d in COMPARED}
        ratio = rate["shopify"] / rate["commerce-engine"] if rate["commerce-engine"] else 0.0
        ok = ratio >= 1 - MAX_SHORTFALL
        within = within and ok
        rows.append(
            [
                mode,
                rate["commerce-engine"],
                rate["shopify"],
                f"{ratio:.2f}",
                f"{relative['shopify'] / relative['commerce-engine']:.2f}" if relative["commerce-engine"] else "n/a",
                f">= {1 - MAX_SHORTFALL:.2f}: {'ok' if ok else 'FAIL'}",
            ]
        )
    sizes = {d: statistics.median(r.body_bytes for r in by[d]) for d in COMPARED}
    print_table(
        f"mapping cost: shopify vs commerce-engine, same run, median of {len(by['shopify'])} "
        f"(bodies ~{sizes['commerce-engine']:,.0f} vs ~{sizes['shopify']:,.0f} bytes)",
        ["mode", "commerce-engine ev/s", "shopify ev/s", "shopify / ce", "same, vs own bare", "gate"],
        rows,
    )
    if not within:
        print(f"FAIL: shopify more than {MAX_SHORTFALL:.0%} below commerce-engine", flush=True)
    return within


async def main(args: argparse.Namespace) -> int:
    comparing = args.compare or args.dialect == "both"
    dialects = list(COMPARED) if comparing else [args.dialect]
    modes = ["sqlite", "postgres"] if args.mode == "both" else [args.mode]
    runs: list[DialectRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        for repeat in range(args.repeats if comparing else 1):
            for dialect in dialects:
                runs.append(await run_dialect(args, dialect, Path(tmp) / f"{dialect}-{repeat}"))
    failed = [f"{r.dialect}: not every event once" for r in runs if not r.ok]
    for line in failed:
        print(f"FAIL: {line}", flush=True)
    within = compare(runs, modes) if comparing else True
    return 0 if within and not failed else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inventory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10000, help="order histories to pre-load (~3 events each)")
    parser.add_argument("--mode", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--replicas", type=int, default=2, help="inventory processes on PostgreSQL")
    parser.add_argument("--batch-size", type=int, default=256, help="[inventory] batch_size")
    parser.add_argument(
        "--dialect",
        choices=[*DIALECTS, "both"],
        default="commerce-engine",
        help="the orders' payloads: Commerce Engine's own (shipments by status updates), Shopify's (topics, "
        "fulfilments), Stockwire's, or both Commerce Engine and Shopify (as --compare)",
    )
    parser.add_argument(
        "--bodies",
        choices=BODIES,
        default="lean",
        help="lean: the fields the profile reads; full: the whole resource, as the fixtures (not for stockwire)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="commerce-engine then shopify in the same run; exit 1 if shopify is more than 10%% below",
    )
    parser.add_argument("--repeats", type=int, default=1, help="--compare: alternating runs of each dialect")
    args = parser.parse_args(argv)
    if args.bodies == "full" and args.dialect == "stockwire" and not args.compare:
        parser.error("--bodies full: commerce-engine and shopify only (Stockwire's dialect has no fixture)")
    return args


if __name__ == "__main__":
    uvloop.install()
    sys.exit(asyncio.run(main(parse_args())))
