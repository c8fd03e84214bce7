"""Helpers for the outbox-relay tests: outboxes to write to, a relay to run, the stream to read back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import NatsSettings, StockwireSettings
from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import create_engine, migrate
from services.outbox_relay.runtime import RelayRuntime
from services.outbox_relay.settings import OutboxRelaySettings, OutboxSpec

__all__ = [
    "FAST",
    "Outbox",
    "StoredMessage",
    "message",
    "metric_value",
    "running_relay",
    "stream_messages",
]

# Short timings so failures, takeovers and idle waits fit in a test.
FAST = OutboxRelaySettings(
    batch_size=50,
    max_in_flight=200,
    ack_timeout_s=2.0,
    retry_initial_s=0.02,
    retry_max_s=0.3,
    idle_poll_s=0.2,
    stats_interval_s=0.1,
    lease_ttl_s=1.0,
)


def message(n: int, prefix: str = "inventory.reserved", tag: str = "m") -> OutboxMessage:
    msg_id = f"{tag}-{n:06d}"
    return OutboxMessage(
        f"{prefix}.sku-{n % 7}", msg_id, json.dumps({"n": n}).encode(), {"Nats-Msg-Id": msg_id, "Test-N": str(n)}
    )


@dataclass
class Outbox:
    """An outbox table as a writer service has it."""

    url: str
    engine: AsyncEngine
    table: sa.Table

    @classmethod
    async def create(cls, url: str, table_name: str = "outbox") -> Outbox:
        table = outbox_table(sa.MetaData(), table_name)
        engine = create_engine(url)
        await migrate(engine, f"test.{table_name}", [lambda conn: create_outbox_schema(conn, table)])
        return cls(url, engine, table)

    async def write(self, messages: Sequence[OutboxMessage]) -> None:
        async with self.engine.begin() as conn:
            await add_to_outbox(conn, self.table, list(messages))

    async def rows(self) -> list[sa.Row[tuple[int, str, float | None]]]:
        c = self.table.c
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(c.id, c.msg_id, c.published_at).order_by(c.id))).all())

    async def unpublished(self) -> int:
        return sum(1 for row in await self.rows() if row.published_at is None)

    async def close(self) -> None:
        await self.engine.dispose()


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    subject: str
    msg_id: str
    data: bytes
    headers: dict[str, str]


async def stream_messages(js: JetStreamContext, stream: str) -> list[StoredMessage]:
    """Every message of the stream, in stream order."""
    info = await js.stream_info(stream)
    out = []
    if info.state.messages == 0:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq, direct=True)
        headers = dict(msg.headers or {})
        out.append(StoredMessage(seq, msg.subject, headers.get("Nats-Msg-Id", ""), msg.data or b"", headers))
    return out


def metric_value(text: str, name: str, outbox: str) -> float:
    prefix = f'{name}{{outbox="{outbox}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


@contextlib.asynccontextmanager
async def running_relay(
    nats_url: str, data_dir: Path, outboxes: Sequence[OutboxSpec], **overrides: object
) -> AsyncIterator[RelayRuntime]:
    shared = StockwireSettings(
        data_dir=str(data_dir), nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.3)
    )
    settings = dataclasses.replace(FAST, outboxes=list(outboxes), **overrides)  # type: ignore[arg-type]
    runtime = RelayRuntime(shared, settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace_s=5.0)


def sqlite_unpublished(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0])
