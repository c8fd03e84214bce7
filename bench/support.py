"""Shared benchmark plumbing: servers under test, load generation, percentiles, printing."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import uvloop

from libs.natsserver import DEFAULT_SYNC_INTERVAL, NatsServer
from libs.processes import spawn, stop_processes
from stockwire.demo.analysis import percentile

__all__ = ["LoadResult", "Service", "on_fresh_nats_server", "percentile", "print_table", "wait_http"]


T = TypeVar("T")


def on_fresh_nats_server(run: Callable[[NatsServer], Awaitable[T]], sync_interval: str = DEFAULT_SYNC_INTERVAL) -> T:
    """``run(server)`` on uvloop against a nats-server of its own (a free port, a temporary store), stopped after."""
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store_dir=Path(store), sync_interval=sync_interval).start()
        try:
            return uvloop.run(run(server))
        finally:
            server.stop()


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: Mapping[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class Service:
    """A server process started for a benchmark and stopped after it."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], health_url: str) -> None:
        self.args, self.env, self.health_url = list(args), dict(env), health_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)  # noqa: SIM115

    def __enter__(self) -> Service:
        self.process = spawn(self.args, env={**os.environ, **self.env}, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_http(self.health_url)
        except RuntimeError:
            self.__exit__()
            raise RuntimeError(f"{self.args} did not start; log: {Path(self.log.name).read_text()[-2000:]}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_processes([self.process], 15)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def dump(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
