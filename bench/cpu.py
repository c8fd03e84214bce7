"""CPU time per order: of each process of a run (from the OS, via psutil), and the bare floor of the same work.

The meter itself (:class:`CpuMeter`, :func:`ms_per_order`) is :mod:`stockwire.demo.cpu`, which
``stockwire demo`` uses too; it is re-exported here. :func:`floors` measures, in this process with small
loops, what the work itself costs at the least: an HMAC-SHA256 check of a ~1 KB body, a JetStream
publish with its ack, a pull-consume with its ack, one SQLite row written in a batch, and one signed POST
to a local sink.
"""

from __future__ import annotations

import asyncio
import http.client
import sqlite3
import time
import urllib.parse
from pathlib import Path

from libs.signing import commerce_engine_signature, sign_standard_webhook, verify_commerce_engine
from stockwire.demo.cpu import SERVICES_AND_NATS, SUM, CpuMeter, ms_per_order, process_cpu_s

__all__ = ["SERVICES_AND_NATS", "SUM", "CpuMeter", "floors", "ms_per_order", "process_cpu_s"]


# --- floors ------------------------------------------------------------------------------------------
def _per_op_ms(started: float, n: int) -> float:
    return (time.process_time() - started) * 1000 / n


def hmac_check_ms(n: int = 20000) -> float:
    body = b'{"event":"order.created","data":' + b'"' + b"x" * 990 + b'"}'
    secret = "floor-secret"
    signature = commerce_engine_signature(secret, body)
    started = time.process_time()
    for _ in range(n):
        verify_commerce_engine([secret], body, signature)
    return _per_op_ms(started, n)


async def _nats_floors(nats_url: str, n: int, batch: int) -> tuple[float, float]:
    import nats

    nc = await nats.connect(nats_url, name="cpu-floor")
    js = nc.jetstream()
    stream, subject = "CPU_FLOOR", "cpu-floor.events"
    try:
        await js.add_stream(name=stream, subjects=[subject])
        body = b"x" * 1000
        started = time.process_time()
        for _ in range(n):
            await js.publish(subject, body)
        publish = _per_op_ms(started, n)
        subscription = await js.pull_subscribe(subject, durable="cpu-floor", stream=stream)
        started = time.process_time()
        consumed = 0
        while consumed < n:
            for message in await subscription.fetch(batch, timeout=5):
                await message.ack()
                consumed += 1
        consume = _per_op_ms(started, consumed)
        await js.delete_stream(stream)
    finally:
        await nc.close()
    return publish, consume


def jetstream_floors_ms(nats_url: str, n: int = 2000, batch: int = 100) -> tuple[float, float]:
    """(publish with ack, pull-consume with ack), each per message, on a throwaway stream."""
    return asyncio.run(_nats_floors(nats_url, n, batch))


def sqlite_row_ms(directory: Path, n: int = 20000, batch: int = 100) -> float:
    """One row inserted in a transaction of ``batch`` rows (WAL, synchronous=NORMAL)."""
    path = directory / "cpu-floor.db"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, sku TEXT, payload TEXT)")
        payload = "x" * 300
        started = time.process_time()
        for start in range(0, n, batch):
            with db:
                db.executemany(
                    "INSERT INTO rows (sku, payload) VALUES (?, ?)",
                    [(f"SKU-{i}", payload) for i in range(start, start + batch)],
                )
        return _per_op_ms(started, n)
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def signed_post_ms(url: str, secret: str, n: int = 1000) -> float:
    """One Standard Webhooks-signed POST of ~1 KB over a kept-alive connection, through the standard
    library's HTTP/1.1 client: signing, writing the request and reading the answer, with no client layer
    above them. The body is not a document the sink applies (it answers 422 after checking the
    signature), so its state is untouched."""
    target = urllib.parse.urlsplit(url)
    if target.scheme != "http" or target.hostname is None or target.port is None:
        raise ValueError(f"the floor POSTs to a plain http://host:port sink, not {url!r}")
    body = b"x" * 1000
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)

    def post(i: int) -> None:
        headers = sign_standard_webhook(secret, f"floor-{i}", body).as_dict()
        connection.request(
            "POST", target.path or "/", body=body, headers={**headers, "content-type": "application/json"}
        )
        connection.getresponse().read()

    try:
        post(-1)  # the connection opened outside the measurement
        started = time.process_time()
        for i in range(n):
            post(i)
        return _per_op_ms(started, n)
    finally:
        connection.close()


def floors(nats_url: str, sink_url: str, sink_secret: str, directory: Path) -> dict[str, float]:
    """The bare CPU-milliseconds of each unit of work, measured in this process."""
    publish, consume = jetstream_floors_ms(nats_url)
    return {
        "HMAC-SHA256 check, 1 KB body": hmac_check_ms(),
        "JetStream publish + ack": publish,
        "JetStream pull-consume + ack": consume,
        "SQLite row, 100 per transaction": sqlite_row_ms(directory),
        "signed POST to a local sink": signed_post_ms(sink_url, sink_secret),
    }
