"""Requests files with headers per request, and an asyncio HTTP/1.1 keep-alive load generator that
replays them, for machines without wrk (``bench/webhooks.lua`` reads the same format for wrk).

A requests file holds one pre-signed webhook per line: tab-separated fields, the last one the JSON body
(compact JSON holds no raw tab), each other one a header, ``Name: value``. A field without ``": "`` is
the value of ``X-Webhook-Signature`` (a Commerce Engine delivery: ``<hex signature>\t<json body>``).

Run as a separate process: ``python -m bench.loadgen <requests-file> <url> <connections> <seconds>``;
prints one JSON line like the wrk script does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import uvloop

from bench.support import percentile

__all__ = ["parse_line", "request_line"]

SIGNATURE_HEADER = "X-Webhook-Signature"


def request_line(headers: Mapping[str, str], body: str) -> str:
    """One line of a requests file: ``headers`` (values without tab or line break) and ``body``."""
    if "\t" in body or "\n" in body:
        raise ValueError("the body must hold no raw tab or line break (compact JSON does not)")
    fields = []
    for name, value in headers.items():
        if any(c in name + value for c in "\t\r\n") or ":" in name:
            raise ValueError(f"header {name!r}: no tab, line break or colon in the name, no tab or break in the value")
        fields.append(f"{name}: {value}")
    return "\t".join([*fields, body]) + "\n"


def parse_line(line: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A line of a requests file: its headers (name, value) and its body."""
    *fields, body = line.rstrip(b"\r\n").split(b"\t")
    headers = []
    for field in fields:
        name, colon, value = field.partition(b": ")
        headers.append((name, value) if colon else (SIGNATURE_HEADER.encode(), field))
    return headers, body


def _requests(path: str, host: str, target: str) -> list[bytes]:
    out = []
    with open(path, "rb") as file:
        for line in file:
            headers, body = parse_line(line)
            head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            out.append(
                b"POST " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
                + b"\r\nContent-Type: application/json\r\n" + head
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
    return out


async def _worker(
    host: str, port: int, queue: list[bytes], deadline: float, latencies: list[float], counts: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < deadline and queue:
        payload = queue.pop()
        started = time.perf_counter()
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12].decode()
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        counts["non_2xx"] += not status.startswith("2")
    writer.close()


async def _run(path: str, url: str, connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue = _requests(path, f"{host}:{port}", parts.path)
    queue.reverse()
    latencies: list[float] = []
    counts = {"non_2xx": 0}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, queue, deadline, latencies, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "duration_us": elapsed * 1e6, "p50_us": percentile(latencies, 50) * 1e6,
            "p99_us": percentile(latencies, 99) * 1e6, "non_2xx": counts["non_2xx"], "socket_errors": 0}  # fmt: skip


def main() -> None:
    path, url, connections, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(uvloop.run(_run(path, url, connections, seconds))))


if __name__ == "__main__":
    main()
