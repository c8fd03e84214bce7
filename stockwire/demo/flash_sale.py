"""One flash sale over a running stack: simulate, watch, settle, observe — then :func:`build_report`.

Used by ``stockwire demo``, the end-to-end tests and the benchmark. The stack (NATS and the four
services) and the channel sinks are started by the caller; :class:`FlashSale` drives the simulator,
samples consumer lag every second, fires the scenario's faults at given points of the sale, waits
(on conditions, with deadlines) until everything has settled, and collects what the report needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from nats.js import JetStreamContext

from libs.bus import connect, jetstream
from libs.config import NatsSettings
from libs.deadletters import MAX_LIMIT, MAX_SCAN, list_deadletters
from libs.store import database_url
from libs.topology import COMMERCE, DEADLETTER, INVENTORY, INVENTORY_CONSUMER, NOTIFIER_CONSUMER
from stockwire.sim.config import SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import Expectation, OrderState, compare_levels
from stockwire.sim.producer import Producer, make_client
from stockwire.sim.runner import SaleRunner, SimResult
from stockwire.sim.watch import InventoryApi, InventoryWatcher, SkuView
from stockwire.stack import Stack, dev_source_secret

from .channels import AsyncSinkReader, SinkProcess
from .report import Observation, SettleStep

__all__ = ["Fault", "FlashSale", "SaleOptions"]

log = logging.getLogger("stockwire.demo")


@dataclass(frozen=True)
class Fault:
    """Something done to the system once ``at`` (a share, 0 to 1) of the sale has been sent."""

    name: str
    at: float
    action: Callable[[], Awaitable[None]]


@dataclass
class SaleOptions:
    sim: SimConfig
    expect_expiry: bool = True
    """Wait until every abandoned cart's reservation expired (the stack runs with a short TTL)."""
    settle_timeout_s: float = 180.0
    sample_interval_s: float = 1.0
    deadletter_allowed: int = 0
    """Dead letters the scenario puts there on purpose."""
    faults: Sequence[Fault] = ()
    on_progress: Callable[[dict[str, Any]], None] | None = None
    verify_ledger: bool = True


async def _consumer_lag(js: JetStreamContext, stream: str, durable: str) -> tuple[int, int] | None:
    """(pending, delivered but not acknowledged), or None while the server does not answer."""
    state = await _consumer_state(js, stream, durable)
    return None if state is None else (state[0], state[1])


async def _consumer_state(js: JetStreamContext, stream: str, durable: str) -> tuple[int, int, int] | None:
    """(pending, unacknowledged, stream sequence up to which everything is acknowledged)."""
    try:
        info = await js.consumer_info(stream, durable, timeout=2)
    except Exception:
        return None
    floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    return int(info.num_pending or 0), int(info.num_ack_pending or 0), floor


async def _last_seq(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.last_seq or 0)


@dataclass
class _Sampler:
    js: JetStreamContext
    runner: SaleRunner
    producer: Producer
    watcher: InventoryWatcher
    sinks: AsyncSinkReader
    started: float
    interval_s: float
    on_progress: Callable[[dict[str, Any]], None] | None
    commerce_before: int = 0
    """COMMERCE's last sequence before the run: what inventory acknowledged beyond it, it applied."""
    applied: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> dict[str, Any]:
        inventory_state = await _consumer_state(self.js, COMMERCE, INVENTORY_CONSUMER)
        inventory = None if inventory_state is None else inventory_state[:2]
        if inventory_state is not None:
            self.applied = max(self.applied, inventory_state[2] - self.commerce_before)
        notifier = await _consumer_lag(self.js, INVENTORY, NOTIFIER_CONSUMER)
        updates = 0
        with contextlib.suppress(Exception):
            for channel in self.sinks.sinks.channels:
                updates += int((await self.sinks.state(channel.name, since=1 << 40))["arrivals_total"])
        decisions = self.watcher.decisions()
        stats = self.producer.stats
        row = {
            "t": round(time.time() - self.started, 2),
            "requests": stats.requests,
            "delivered": len(self.producer.delivered_at),
            "duplicates": stats.duplicate,
            "spooled": stats.spooled,
            "retries": stats.retries,
            "progress": round(self.runner.progress, 4),
            "orders_decided": len(decisions),
            "orders_reserved": sum(1 for d in decisions.values() if d.accepted),
            "inventory_events": self.watcher.messages,
            "inventory_applied": self.applied,
            "inventory_lag": None if inventory is None else sum(inventory),
            "notifier_lag": None if notifier is None else sum(notifier),
            "channel_updates": updates,
        }
        self.rows.append(row)
        if self.on_progress is not None:
            self.on_progress(row)
        return row


class FlashSale:
    def __init__(self, stack: Stack, sinks: SinkProcess, options: SaleOptions) -> None:
        self.stack = stack
        self.sinks = sinks
        self.options = options
        self.fault_log: list[dict[str, Any]] = []
        self.settle_steps: list[SettleStep] = []

    async def run(self) -> Observation:
        options, sim = self.options, self.options.sim
        assert self.stack.nats_url is not None
        nc = await connect(NatsSettings(servers=self.stack.nats_url.split(",")), "stockwire-demo")
        js = jetstream(nc)
        reader = AsyncSinkReader(self.sinks)
        http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32))
        client = make_client(sim.producer.concurrency, sim.producer.timeout_s)
        watcher = InventoryWatcher(js, f"flash-sale-{sim.run_id}", order_prefix=sim.order_prefix)
        sampler_task: asyncio.Task[None] | None = None
        try:
            deadletter_before = await _last_seq(js, DEADLETTER)
            commerce_before = await _last_seq(js, COMMERCE)
            await watcher.start()
            inventory = InventoryApi(http, self.stack.url("inventory"))
            plan = generate_plan(sim)
            baseline = {sku: view.levels for sku, view in (await inventory.skus(plan.skus)).items() if view}
            secrets = {source: dev_source_secret(self.stack.data_dir, source) for source in sim.sources}
            producer = Producer(client, self.stack.url("ingress"), secrets, sim.producer, _rng(sim), lambda *_: None)
            runner = SaleRunner(
                plan, sim, producer, watcher, inventory, baseline=baseline, decision_timeout_s=options.settle_timeout_s
            )
            started = time.time()
            sampler = _Sampler(
                js,
                runner,
                producer,
                watcher,
                reader,
                started,
                options.sample_interval_s,
                options.on_progress,
                commerce_before=commerce_before,
            )
            sampler_task = asyncio.create_task(sampler.run())
            faults = asyncio.create_task(self._faults(runner, started))
            result = await runner.run()
            await faults
            expectation = await self._settle(js, inventory, watcher, reader, result)
            await sampler.sample()
            sampler_task.cancel()
            actual = await inventory.skus(plan.skus)
            caches = await reader.caches()
            arrivals = {}
            sink_counts = {}
            for channel in self.sinks.channels:
                state = await reader.state(channel.name)
                arrivals[channel.name] = [tuple(a) for a in state["arrivals"]]
                sink_counts[channel.name] = state["counts"]
            deadletters = await _deadletters(js, deadletter_before)
            verify = await asyncio.to_thread(self._ledger_verify) if options.verify_ledger else None
            return Observation(
                config=sim,
                result=result,
                decisions=watcher.decisions(),
                expectation=expectation,
                actual={sku: None if v is None else v.levels for sku, v in actual.items()},
                versions={sku: v.version for sku, v in actual.items() if v is not None},
                worst_oversold=watcher.worst_oversold,
                inventory_kinds=dict(watcher.kinds),
                inventory_messages=watcher.messages,
                sources=watcher.sources,
                snapshots=watcher.snapshots,
                latest_snapshot={
                    sku: (lv.available, watcher.latest_version[sku]) for sku, lv in watcher.latest.items()
                },
                decision_times=watcher.decision_times(),
                caches=caches,
                arrivals=arrivals,
                sink_counts=sink_counts,
                buffers={c.name: c.buffer for c in self.sinks.channels},
                timeseries=sampler.rows,
                deadletters=deadletters,
                deadletter_allowed=options.deadletter_allowed,
                ledger_verify=verify,
                settle=self.settle_steps,
                faults=self.fault_log,
            )
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
            await watcher.stop()
            await client.aclose()
            await http.aclose()
            await reader.close()
            with contextlib.suppress(Exception):
                await nc.close()

    async def _faults(self, runner: SaleRunner, started: float) -> None:
        running = []
        for fault in sorted(self.options.faults, key=lambda f: f.at):
            await runner.reached(fault.at)
            entry: dict[str, Any] = {"name": fault.name, "at": fault.at, "started_s": round(time.time() - started, 2)}
            self.fault_log.append(entry)
            log.info("fault: %s", fault.name)

            async def timed(fault: Fault = fault, entry: dict[str, Any] = entry) -> None:
                try:
                    await fault.action()
                    entry["ok"] = True
                except Exception as exc:
                    entry["ok"] = False
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                    log.exception("fault %s failed", fault.name)
                entry["done_s"] = round(time.time() - started, 2)

            running.append(asyncio.create_task(timed()))
        await asyncio.gather(*running)

    async def _step(self, name: str, probe: Callable[[], Awaitable[tuple[bool, str]]]) -> bool:
        """Wait for ``probe`` to say done, within the settle deadline; record how it went."""
        began = time.monotonic()
        deadline = began + self.options.settle_timeout_s
        detail = ""
        while True:
            try:
                done, detail = await probe()
            except Exception as exc:
                done, detail = False, f"{type(exc).__name__}: {exc}"
            if done or time.monotonic() > deadline:
                self.settle_steps.append(SettleStep(name, done, round(time.monotonic() - began, 2), detail))
                if not done:
                    log.warning("settle: %s not reached: %s", name, detail)
                return done
            await asyncio.sleep(0.2)

    async def _settle(
        self,
        js: JetStreamContext,
        inventory: InventoryApi,
        watcher: InventoryWatcher,
        reader: AsyncSinkReader,
        result: SimResult,
    ) -> Expectation:
        orders = result.truth.order_ids

        async def decided() -> tuple[bool, str]:
            missing = [oid for oid in orders if watcher.decision(oid) is None]
            return not missing, f"{len(missing)} orders without a decision, e.g. {missing[:3]}"

        async def expired() -> tuple[bool, str]:
            states = result.truth.expected(watcher.decisions()).states
            held = [oid for oid, state in states.items() if state is OrderState.RESERVED]
            return not held, f"{len(held)} reservations neither paid nor expired, e.g. {held[:3]}"

        async def ledger() -> tuple[bool, str]:
            expectation = result.truth.expected(watcher.decisions())
            views = await inventory.skus(expectation.levels)
            actual = {sku: None if v is None else v.levels for sku, v in views.items()}
            mismatches = compare_levels(expectation.levels, actual)
            return not mismatches, "; ".join(str(m) for m in mismatches[:4])

        async def drained() -> tuple[bool, str]:
            lags = {
                "COMMERCE/inventory": await _consumer_lag(js, COMMERCE, INVENTORY_CONSUMER),
                "INVENTORY/channel-notifier": await _consumer_lag(js, INVENTORY, NOTIFIER_CONSUMER),
            }
            busy = {name: lag for name, lag in lags.items() if lag != (0, 0)}
            if busy:
                return False, f"consumers not drained (pending, ack pending): {busy}"
            views = await inventory.skus(result.plan.skus)
            stale = _unpublished(views, watcher)
            if stale:
                return False, f"outbox not flushed: latest snapshot differs from the ledger for {stale[:4]}"
            caches = await reader.caches()
            behind = [
                f"{channel}/{sku}"
                for channel, cache in caches.items()
                for sku, version in watcher.latest_version.items()
                if cache.get(sku, (0, -1))[1] != version
            ]
            return not behind, f"channels behind the latest snapshot: {behind[:4]}"

        await self._step("every order decided by inventory", decided)
        if self.options.expect_expiry:
            await self._step("abandoned carts expired", expired)
        await self._step("ledger equals the ground truth", ledger)
        await self._step("consumers drained, outbox flushed, channels caught up", drained)
        return result.truth.expected(watcher.decisions())

    def _ledger_verify(self) -> dict[str, Any]:
        url = database_url(
            self.stack.env.get("STOCKWIRE__INVENTORY__DATABASE_URL", ""), str(self.stack.data_dir), "inventory"
        )
        args = [sys.executable, "-m", "stockwire", "ledger", "verify", "--database-url", url]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return {"ran": True, "ok": False, "output": "ledger verify did not finish within 300 s"}
        output = (done.stdout + done.stderr).strip()
        if done.returncode == 2 and "invalid choice" in output:
            return {"ran": False, "ok": False, "output": "`stockwire ledger verify` is not available"}
        return {"ran": True, "ok": done.returncode == 0, "output": output[-4000:]}


def _unpublished(views: dict[str, SkuView | None], watcher: InventoryWatcher) -> list[str]:
    """SKUs whose newest ledger row, or whose availability, has not reached the INVENTORY stream yet."""
    stale = []
    for sku, view in views.items():
        if view is None:
            continue
        snapshot = watcher.latest.get(sku)
        if (
            watcher.ledger_version.get(sku, 0) < view.version
            or snapshot is None
            or snapshot.available != view.available
        ):
            stale.append(sku)
    return stale


def _rng(config: SimConfig) -> Any:
    import random

    return random.Random(config.seed)


async def _deadletters(js: JetStreamContext, after_seq: int) -> list[dict[str, Any]]:
    """Every DEADLETTER message newer than ``after_seq``: subject, consumer and reason."""
    out: list[dict[str, Any]] = []
    start: int | None = after_seq + 1
    while start is not None:
        page = await list_deadletters(js, start_seq=start, limit=MAX_LIMIT, max_scan=MAX_SCAN)
        out += [{"seq": r.seq, "subject": r.subject, "consumer": r.consumer, "error": r.reason} for r in page.records]
        start = page.next_seq
    return out
