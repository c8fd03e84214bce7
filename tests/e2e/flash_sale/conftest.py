"""Real processes for the flash-sale scenarios: a dedicated nats-server, the services, the channel sinks."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from libs.natsserver import free_port
from stockwire.demo.channels import SinkProcess
from stockwire.demo.run import demo_env
from stockwire.stack import DEFAULT_PORTS, SERVICES, Stack


class _Discard(io.StringIO):
    """Service output is kept in <data dir>/logs; the terminal only shows test results."""

    def write(self, text: str) -> int:
        return len(text)


@contextlib.asynccontextmanager
async def running_stack(
    data_dir: Path,
    services: Sequence[str] | None = None,
    *,
    ttl_s: float = 4.0,
    env: dict[str, str] | None = None,
    **stack_options: Any,
) -> AsyncIterator[Stack]:
    """The stack, started from a worker thread (``Stack.start`` runs its own event loop); ``stack_options``
    are further :class:`Stack` fields (a given ``nats_url``, ``topology``, ``launcher``)."""
    chosen = list(services or [s.name for s in SERVICES])
    stack = Stack(
        data_dir=data_dir,
        services=chosen,
        ports={name: free_port() for name in DEFAULT_PORTS},
        nats_port=free_port(),
        env={**demo_env(ttl_s), **(env or {})},
        sink=_Discard(),
        **stack_options,
    )
    try:
        await asyncio.to_thread(stack.start, 60)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


@contextlib.asynccontextmanager
async def running_sinks(data_dir: Path) -> AsyncIterator[SinkProcess]:
    sinks = SinkProcess(sink=_Discard(), log_dir=data_dir)
    try:
        await asyncio.to_thread(sinks.start)
        yield sinks
    finally:
        await asyncio.to_thread(sinks.stop)


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    path = tmp_path / "stack"
    path.mkdir()
    return path
