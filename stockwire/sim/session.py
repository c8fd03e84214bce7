"""A simulator run against a stack that is already up (``stockwire sim``): send, read back, compare."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from libs.bus import connect_within, jetstream
from libs.config import NatsSettings

from .config import SimConfig
from .generator import generate_plan
from .model import OrderState, compare_levels, oversold_units
from .producer import Producer, make_client
from .runner import SaleRunner
from .watch import InventoryApi, InventoryWatcher

__all__ = ["SimTarget", "run_sim"]

log = logging.getLogger("stockwire.sim")


@dataclass(frozen=True)
class SimTarget:
    ingress_url: str
    inventory_url: str
    nats: NatsSettings
    secrets: Mapping[str, str]
    """Source → the secret its webhooks are signed with (every source of the run's config)."""
    settle_timeout_s: float = 120.0
    wait_for_expiry: bool = False


async def _until(probe: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.25)
    return bool(await probe())


async def run_sim(config: SimConfig, target: SimTarget, out: TextIO, report_path: Path | None = None) -> int:
    nc = await connect_within(target.nats, "stockwire-sim", 15)
    if nc is None:
        out.write(f"stockwire sim: cannot reach NATS at {target.nats.servers}\n")
        return 2
    js = jetstream(nc)
    watcher = InventoryWatcher(js, f"sim-{config.run_id}", order_prefix=config.order_prefix)
    client = make_client(config.producer.concurrency, config.producer.timeout_s)
    http = httpx.AsyncClient(timeout=10)
    try:
        await watcher.start()
        inventory = InventoryApi(http, target.inventory_url)
        plan = generate_plan(config)
        baseline = {sku: v.levels for sku, v in (await inventory.skus(plan.skus)).items() if v is not None}
        producer = Producer(
            client, target.ingress_url, target.secrets, config.producer, random.Random(config.seed), lambda *_: None
        )
        runner = SaleRunner(plan, config, producer, watcher, inventory, baseline=baseline)
        out.write(
            f"stockwire sim: {config.orders:,} orders in the {config.dialect} dialect, {plan.count():,} events "
            f"planned, run id {config.run_id}\n"
        )
        out.flush()
        result = await runner.run()
        stats = result.stats
        out.write(
            f"sent: {len(result.delivered_at):,} events delivered ({stats.accepted:,} accepted, {stats.duplicate:,} "
            f"duplicate, {stats.spooled:,} spooled), {stats.retries:,} retries, {stats.gave_up:,} given up, "
            f"{stats.rejected:,} refused, in {result.ended_at - result.started_at:.1f} s\n"
        )
        orders = result.truth.order_ids

        async def decided() -> bool:
            return watcher.decided(orders)

        async def no_open_reservations() -> bool:
            states = result.truth.expected(watcher.decisions()).states
            return all(state is not OrderState.RESERVED for state in states.values())

        async def ledger_matches() -> bool:
            expected = result.truth.expected(watcher.decisions()).levels
            views = await inventory.skus(expected)
            return not compare_levels(expected, {s: v.levels if v else None for s, v in views.items()})

        await _until(decided, target.settle_timeout_s)
        if target.wait_for_expiry:
            await _until(no_open_reservations, target.settle_timeout_s)
        await _until(ledger_matches, target.settle_timeout_s)
        expectation = result.truth.expected(watcher.decisions())
        views = await inventory.skus(expectation.levels)
        actual = {sku: view.levels if view else None for sku, view in views.items()}
        mismatches = compare_levels(expectation.levels, actual)
        oversold = oversold_units(level for level in actual.values() if level is not None)
        decisions = watcher.decisions()
        reserved = sum(1 for d in decisions.values() if d.accepted)
        out.write(
            f"inventory: {reserved:,} orders reserved, {len(decisions) - reserved:,} rejected, "
            f"{len(expectation.undecided):,} undecided; oversold units: {oversold}; worst seen: "
            f"{watcher.worst_oversold}\n"
        )
        for mismatch in mismatches[:20]:
            out.write(f"  MISMATCH {mismatch}\n")
        for anomaly in expectation.anomalies[:20]:
            out.write(f"  ANOMALY {anomaly}\n")
        ok = not mismatches and not expectation.undecided and oversold == 0 and watcher.worst_oversold == 0
        out.write("ledger equals the ground truth\n" if ok else "LEDGER DIFFERS FROM THE GROUND TRUTH\n")
        if report_path is not None:
            document = {
                "ok": ok,
                "config": asdict(config),
                "delivery": stats.as_dict(),
                "orders": {"reserved": reserved, "rejected": len(decisions) - reserved},
                "expected": {sku: level.as_dict() for sku, level in expectation.levels.items()},
                "ledger": {sku: level.as_dict() if level else None for sku, level in actual.items()},
                "mismatches": [str(m) for m in mismatches],
                "anomalies": expectation.anomalies,
            }
            await asyncio.to_thread(_write, report_path, json.dumps(document, indent=2))
        return 0 if ok else 1
    finally:
        await watcher.stop()
        await client.aclose()
        await http.aclose()
        await nc.close()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
