"""The faults of the chaos suite, each a plan of :class:`Fault` actions that record their own recovery."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from libs.topology import COMMERCE, DEADLETTER, INVENTORY, INVENTORY_CONSUMER, NOTIFIER_CONSUMER
from stockwire.demo.flash_sale import Fault
from tests.support import eventually

from .harness import ChaosContext, FaultPlan

__all__ = [
    "POISON",
    "cluster_loses_leader_then_another_node",
    "consumer_deleted",
    "kill_nats_server",
    "kill_service",
    "stop_inventory",
    "store_full",
]

AT = 0.3
"""Faults strike once this share of the sale has been sent."""
POISON = 3
"""Webhooks sent to be dead-lettered before the consumer is deleted (they must not be dead-lettered twice)."""


CONSUMES = {"inventory": (COMMERCE, INVENTORY_CONSUMER), "channel-notifier": (INVENTORY, NOTIFIER_CONSUMER)}


async def _holding(ctx: ChaosContext, stream: str, durable: str, within_s: float = 5.0) -> int:
    """Wait (a little) until the consumer has messages delivered and not yet acknowledged: a crash then
    strands a batch, the case of issue 13, item 4. Returns how many it held when last seen."""
    deadline = time.monotonic() + within_s
    pending = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            pending = int((await ctx.js.consumer_info(stream, durable, timeout=1)).num_ack_pending or 0)
            if pending:
                return pending
        await asyncio.sleep(0.005)
    return pending


def kill_service(service: str) -> FaultPlan:
    def plan(ctx: ChaosContext) -> list[Fault]:
        async def action() -> None:
            recovery = ctx.record(f"kill -9 {service}")
            if service in CONSUMES:
                recovery.notes["held_unacknowledged"] = await _holding(ctx, *CONSUMES[service])
            recovery.injected = time.time()
            ctx.stack.children[service].kill()
            await asyncio.to_thread(ctx.stack.restart_service, service)
            recovery.healed = time.time()
            await ctx.pipeline.recover(recovery, timeout_s=ctx.recovery_timeout_s)

        return [Fault(f"{service} killed (SIGKILL) and restarted", AT, action)]

    return plan


def kill_nats_server(ctx: ChaosContext) -> list[Fault]:
    async def action() -> None:
        nats = ctx.stack.nats
        assert nats is not None
        recovery = ctx.record("kill -9 nats-server, restart")
        recovery.injected = time.time()
        await asyncio.to_thread(nats.kill)
        await asyncio.to_thread(nats.start)
        recovery.healed = time.time()
        await ctx.pipeline.recover(recovery, timeout_s=ctx.recovery_timeout_s)

    return [Fault("nats-server killed (SIGKILL) and restarted", AT, action)]


async def _leader(ctx: ChaosContext, stream: str) -> str:
    """The stream's leader, once the cluster names one (a request may time out while it elects)."""

    async def named() -> str:
        with contextlib.suppress(Exception):
            return (await ctx.js.stream_info(stream)).cluster.leader or ""
        return ""

    return await eventually(named, timeout=30.0, interval=0.2, what=f"a leader for {stream}")


def cluster_loses_leader_then_another_node(ctx: ChaosContext) -> list[Fault]:
    """The COMMERCE stream leader is killed; once the cluster has recovered and the node is back, another
    node (the new leader where that is another node) is killed and brought back the same way."""

    async def action() -> None:
        cluster = ctx.cluster
        assert cluster is not None
        first = ""
        for round_name in ("stream leader", "another node"):
            leader = await _leader(ctx, COMMERCE)
            victim = leader if round_name == "stream leader" or leader != first else ""
            victim = victim or next(n.name for n in cluster.nodes if n.name != first)
            first = first or victim
            marks = await ctx.pipeline.marks()
            recovery = ctx.record(f"R3 cluster: {round_name} ({victim}) killed")
            node = cluster.node(victim)
            recovery.injected = recovery.healed = time.time()  # the cluster must heal itself: no restart awaited
            await asyncio.to_thread(node.kill)
            await ctx.pipeline.recover(recovery, marks, timeout_s=ctx.recovery_timeout_s)
            recovery.notes["new_leader"] = await _leader(ctx, COMMERCE)
            await asyncio.to_thread(cluster.restart, node)

    return [Fault("R3 cluster loses the stream leader, then another node", AT, action)]


def stop_inventory(ctx: ChaosContext) -> list[Fault]:
    async def action() -> None:
        seconds = ctx.load.stop_s
        recovery = ctx.record(f"SIGSTOP inventory {seconds:.0f} s, SIGCONT")
        recovery.injected = time.time()
        ctx.signal("inventory", signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the fault itself, not a wait for anything
        finally:
            ctx.signal("inventory", signal.SIGCONT)
        recovery.healed = time.time()
        await ctx.pipeline.recover(recovery, timeout_s=ctx.recovery_timeout_s)

    return [Fault(f"inventory stopped (SIGSTOP) for {ctx.load.stop_s:.0f} s", AT, action)]


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left; returns the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += out.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


@contextlib.asynccontextmanager
async def readiness(ctx: ChaosContext, service: str) -> AsyncIterator[set[int]]:
    """Every status the service's ``/readyz`` answers (polled every 0.2 s) while the block runs."""
    seen: set[int] = set()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    seen.add((await client.get(f"{ctx.stack.url(service)}/readyz")).status_code)
                await asyncio.sleep(0.2)

    polling = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling


def store_full(ctx: ChaosContext) -> list[Fault]:
    """The services' data volume (inventory store, ingress spool, notifier store) fills up, then is freed."""

    async def action() -> None:
        seconds = ctx.load.fault_s
        filler = ctx.files / "filler"
        recovery = ctx.record(f"data volume full {seconds:.0f} s, then freed")
        recovery.injected = time.time()
        recovery.notes["filled_bytes"] = await asyncio.to_thread(_fill, filler)
        try:
            async with readiness(ctx, "inventory") as seen:
                await asyncio.sleep(seconds)  # the fault itself, not a wait for anything
        finally:
            filler.unlink()
        recovery.healed = time.time()
        recovery.notes["inventory_readyz_while_full"] = sorted(seen)
        await ctx.pipeline.recover(recovery, timeout_s=ctx.recovery_timeout_s)

    return [Fault(f"data volume full for {ctx.load.fault_s:.0f} s", AT, action)]


def consumer_deleted(stream: str, durable: str) -> FaultPlan:
    """``<stream>/<durable>`` is deleted under load (for inventory's, after poison webhooks were dead-lettered).

    Right behaviour (issue 13, item 3): the service re-creates its consumer by itself from where it had
    acknowledged; nothing is applied twice and nothing is dead-lettered twice (checked over the history).
    """

    def plan(ctx: ChaosContext) -> list[Fault]:
        async def poison() -> None:
            before = (await ctx.js.stream_info(DEADLETTER)).state.messages
            for n in range(POISON):
                status = await ctx.send("inventory.received", f"poison-{n}", sku="POISON", qty="many")
                assert status == 200, status

            async def dead_lettered() -> bool:
                return (await ctx.js.stream_info(DEADLETTER)).state.messages >= before + POISON

            await eventually(dead_lettered, timeout=30.0, interval=0.1, what="poison dead-lettered")

        async def delete() -> None:
            marks = await ctx.pipeline.marks()
            recovery = ctx.record(f"{stream}/{durable} consumer deleted")
            recovery.injected = recovery.healed = time.time()  # nothing outside the service brings it back
            service = "inventory" if durable == INVENTORY_CONSUMER else "channel-notifier"
            # Recorded, not asserted: a service that re-creates its consumer at once may never look unready.
            async with readiness(ctx, service) as seen:
                await ctx.js.delete_consumer(stream, durable)
                try:
                    await ctx.pipeline.recover(recovery, marks, timeout_s=ctx.recovery_timeout_s)
                finally:
                    recovery.notes[f"{service}_readyz_until_recovered"] = sorted(seen)

        deletion = Fault(f"{stream}/{durable} deleted", AT, delete)
        if durable != INVENTORY_CONSUMER:
            return [deletion]
        return [Fault("poison webhooks dead-lettered", 0.05, poison), deletion]

    return plan
