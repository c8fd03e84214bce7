"""Helpers shared by the test suite: waiting on conditions with deadlines, signing, processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from libs.natsserver import free_port
from libs.processes import ChildProcess
from libs.signing import commerce_engine_signature

__all__ = [
    "BAD_INTEGERS",
    "ce_body",
    "ce_headers",
    "eventually",
    "eventually_sync",
    "refusal_problem",
    "send_request",
    "service_process",
]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Await ``probe`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last value: {last!r})")


def eventually_sync(
    probe: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last value: {last!r})")


def ce_body(event_type: str = "order.created", event_id: str | None = None, **data: Any) -> bytes:
    document = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "event_type": event_type,
        "created_at": "2026-11-28T10:00:00Z",
        "data": data or {"order_id": "o-1", "lines": [{"sku": "SKU-1", "qty": 1}]},
    }
    return json.dumps(document).encode()


def ce_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-webhook-signature": commerce_engine_signature(secret, body)}


def service_process(
    package: str,
    section: str,
    *,
    nats_url: str,
    data_dir: Path,
    log: Path,
    settings: Mapping[str, object],
    env: Mapping[str, str] | None = None,
) -> tuple[int, ChildProcess]:
    """``python -m services.<package>`` on a port of its own, configured through the environment:
    ``settings`` are keys of its ``[section]``; its output goes to ``log`` only. Not started yet."""
    port = free_port()
    prefix = f"STOCKWIRE__{section.upper().replace('-', '_')}__"
    full_env = {
        "STOCKWIRE_NATS_URL": nats_url,
        "STOCKWIRE_DATA_DIR": str(data_dir),
        **(env or {}),
        f"{prefix}PORT": str(port),
        **{f"{prefix}{key.upper()}": str(value) for key, value in settings.items()},
    }
    child = ChildProcess(
        f"{package}-{port}",
        [sys.executable, "-m", f"services.{package}"],
        env=full_env,
        sink=open(os.devnull, "w"),  # noqa: SIM115 - lives as long as the process
        log_path=str(log),
    )
    return port, child


BAD_INTEGERS = [str(2**63), str(2**64), "9" * 5000, "-1", "1.5", "abc", "%C2%B2", ""]
"""Query or path values where an id, cursor or count is expected: past BIGINT, past int()'s digit limit,
negative, not whole, not a number, a Unicode digit ('²'), empty."""


async def send_request(client: Any, method: str, path: str, body: object, headers: Mapping[str, str]) -> Any:
    """``body``: bytes sent as they are, None for no body on GET/DELETE, anything else as JSON."""
    if method in ("GET", "DELETE") and body is None:
        return await client.request(method, path, headers=dict(headers))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.request(method, path, content=content, headers={**headers, "content-type": "application/json"})


def refusal_problem(response: Any) -> str | None:
    """None when ``response`` is a clear refusal (4xx with a JSON ``{error, detail}``), else what is wrong."""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not 400 <= response.status_code < 500:
        return f"{response.status_code}: {response.text[:200]}"
    fields = answer if isinstance(answer, dict) else {}
    if not all(isinstance(fields.get(key), str) and fields[key] for key in ("error", "detail")):
        return f"{response.status_code} without {{error, detail}}: {response.text[:200]}"
    return None
