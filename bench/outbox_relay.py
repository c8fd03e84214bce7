"""Outbox-relay throughput against the raw ``publish_async`` ceiling, same server, same messages, one run.

    python -m bench.outbox_relay [--rows 100000] [--store sqlite|postgres] [--payload-bytes 300] [--runs 1]

A fresh nats-server on a free port (temporary store) and a pre-filled outbox of ``--rows`` rows
(SQLite in a temporary directory, or a temporary database on the machine's PostgreSQL). The ceiling
publishes the same subjects, headers and payloads with nats-py's ``publish_async`` (up to the relay's
``max_in_flight`` awaiting PubAcks) and awaits every PubAck; the relay's figure runs from its start to
the last row marked published. The stream is recreated between the two, so neither dedups the other.
Both run in this process on uvloop, as the service does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
import sqlalchemy as sa
import uvloop

from bench.support import machine, median, print_table
from libs.config import NatsSettings, StockwireSettings, TopologySettings
from libs.natsserver import NatsServer
from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import create_engine, migrate
from libs.topology import INVENTORY, apply_topology
from services.outbox_relay.runtime import RelayRuntime
from services.outbox_relay.settings import OutboxRelaySettings, OutboxSpec

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.7


def messages(count: int, payload_bytes: int) -> list[OutboxMessage]:
    pad = "x" * max(0, payload_bytes - 120)
    out = []
    for n in range(count):
        msg_id = f"bench:{uuid.uuid4().hex}"
        sku = f"SKU-{n % 500}"
        payload = json.dumps({"sku": sku, "version": n, "available": n % 17, "pad": pad}).encode()
        headers = {"Nats-Msg-Id": msg_id, "Stockwire-Kind": "availability"}
        out.append(OutboxMessage(f"inventory.availability.{sku}", msg_id, payload, headers))
    return out


async def fill_outbox(url: str, rows: list[OutboxMessage]) -> None:
    engine = create_engine(url)
    table = outbox_table(sa.MetaData())
    try:
        await migrate(engine, "bench.outbox", [lambda conn: create_outbox_schema(conn, table)])
        for start in range(0, len(rows), 5000):
            async with engine.begin() as conn:
                await add_to_outbox(conn, table, rows[start : start + 5000])
    finally:
        await engine.dispose()


async def reset_stream(nc: nats.NATS, topology: TopologySettings) -> None:
    js = nc.jetstream(timeout=10)
    await js.delete_stream(INVENTORY)
    await apply_topology(js, topology)


async def ceiling(nc: nats.NATS, rows: list[OutboxMessage], in_flight: int) -> float:
    js = nc.jetstream(timeout=10, publish_async_max_pending=in_flight)
    started = time.perf_counter()
    futures = [await js.publish_async(m.subject, m.payload, headers=dict(m.headers)) for m in rows]
    acks = await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    assert len(acks) == len(rows) and not any(a.duplicate for a in acks)
    return elapsed


async def relay_run(server_url: str, url: str, data_dir: Path, settings: OutboxRelaySettings) -> float:
    shared = StockwireSettings(data_dir=str(data_dir), nats=NatsSettings(servers=[server_url]))
    settings = dataclasses.replace(settings, outboxes=[OutboxSpec("bench", url)], stats_interval_s=60.0)
    runtime = RelayRuntime(shared, settings)
    engine = create_engine(url)
    table = outbox_table(sa.MetaData())
    # Rows are marked in id order, so the newest row marked means all are (checked after the run).
    newest_marked = sa.select(table.c.published_at.is_not(None)).order_by(table.c.id.desc()).limit(1)
    unpublished = sa.select(sa.func.count()).select_from(table).where(table.c.published_at.is_(None))
    started = time.perf_counter()
    await runtime.start()
    try:
        while True:
            async with engine.connect() as conn:
                if (await conn.execute(newest_marked)).scalar_one():
                    break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        async with engine.connect() as conn:
            left = (await conn.execute(unpublished)).scalar_one()
        if left:
            raise SystemExit(f"{left} rows left unpublished while the newest one was marked")
        return elapsed
    finally:
        await runtime.stop()
        await engine.dispose()


async def postgres_database() -> tuple[str, str]:
    import asyncpg

    name = f"stockwire_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_postgres_database(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def one_run(args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    topology = TopologySettings()
    rows = messages(args.rows, args.payload_bytes)
    settings = OutboxRelaySettings(batch_size=args.batch_size, max_in_flight=args.in_flight)
    with NatsServer(store_dir=workdir / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            await apply_topology(nc.jetstream(timeout=10), topology)
            pg_name = None
            if args.store == "postgres":
                pg_name, url = await postgres_database()
            else:
                url = f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
            try:
                await fill_outbox(url, rows)
                raw_s = await ceiling(nc, rows, args.in_flight)
                await reset_stream(nc, topology)
                relay_s = await relay_run(server.url, url, workdir, settings)
                info = await nc.jetstream().stream_info(INVENTORY)
                if info.state.messages != len(rows):
                    raise SystemExit(f"the stream holds {info.state.messages} messages, expected {len(rows)}")
            finally:
                if pg_name:
                    await drop_postgres_database(pg_name)
        finally:
            await nc.close()
    return len(rows) / raw_s, len(rows) / relay_s


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--payload-bytes", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=OutboxRelaySettings.batch_size)
    parser.add_argument("--in-flight", type=int, default=OutboxRelaySettings.max_in_flight)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    args = parser.parse_args(argv)
    raw_rates, relay_rates = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-outbox-relay-") as tmp:
            raw, relay = await one_run(args, Path(tmp))
        raw_rates.append(raw)
        relay_rates.append(relay)
    raw, relay = median(raw_rates), median(relay_rates)
    ratio = relay / raw
    print_table(
        f"outbox-relay, {args.rows:,} rows, {args.store}, {args.payload_bytes} B payloads ({machine()})",
        ["what", "msgs/s"],
        [["publish_async ceiling", raw], ["outbox-relay (read, publish, mark)", relay]],
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"\nratio relay/ceiling: {ratio:.2f} ({verdict} the {TARGET_RATIO:.1f}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
