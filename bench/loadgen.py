"""An asyncio HTTP/1.1 keep-alive load generator, for machines without wrk.

Run as a separate process: ``python -m bench.loadgen <requests-file> <url> <connections> <seconds>``;
prints one JSON line like the wrk script does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import uvloop

from bench.support import percentile


def _requests(path: str, host: str, target: str) -> list[bytes]:
    out = []
    with open(path, "rb") as file:
        for line in file:
            signature, body = line.rstrip(b"\n").split(b"\t", 1)
            out.append(
                b"POST " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
                + b"\r\nContent-Type: application/json\r\nX-Webhook-Signature: " + signature
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
    return out


async def _worker(host: str, port: int, queue: list[bytes], deadline: float, latencies: list[float],
                  counts: dict[str, int]) -> None:
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
            "p99_us": percentile(latencies, 99) * 1e6, "non_2xx": counts["non_2xx"], "socket_errors": 0}


def main() -> None:
    path, url, connections, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(uvloop.run(_run(path, url, connections, seconds))))


if __name__ == "__main__":
    main()
