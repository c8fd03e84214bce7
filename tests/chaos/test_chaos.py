"""Fault injection over real processes: one flash sale per fault, the whole history checked afterwards.

Bounded form by default (a few hundred orders per fault, short faults); ``make chaos`` runs the long form.
Each run appends its row (load, faults, recovery seconds, events lost) to ``.data/chaos/<form>.jsonl``;
``python -m tests.chaos.table`` turns them into the table of docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.topology import COMMERCE, INVENTORY, INVENTORY_CONSUMER, NOTIFIER_CONSUMER
from stockwire.sim.watch import InventoryApi
from tests.e2e.flash_sale.conftest import running_stack
from tests.support import NatsCluster, eventually

from . import faults
from .harness import (
    LONG,
    TTL_S,
    Pipeline,
    Recovery,
    Scenario,
    Stored,
    acknowledged_out_of_order,
    assert_survived,
    load,
    nats_for,
    read_commerce,
    record_row,
    run_scenario,
    send_webhook,
)
from .store import StoreReader

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800 if LONG else 300)]

def scenario(name: str, plan: faults.FaultPlan, seed: int, *marks: pytest.MarkDecorator, **options: Any) -> Any:
    return pytest.param(Scenario(name, plan, seed, **options), id=name, marks=marks)


SCENARIOS = [
    scenario("kill -9 ingress", faults.kill_service("ingress"), 101),
    scenario("kill -9 inventory", faults.kill_service("inventory"), 102),
    scenario("kill -9 outbox-relay", faults.kill_service("outbox-relay"), 103),
    scenario("kill -9 channel-notifier", faults.kill_service("channel-notifier"), 104),
    scenario("kill -9 nats-server", faults.kill_nats_server, 105),
    scenario("SIGSTOP inventory", faults.stop_inventory, 106),
    scenario("data volume full", faults.store_full, 107, private_store_mb=256 if LONG else 64),
    scenario(
        "inventory consumer deleted",
        faults.consumer_deleted(COMMERCE, INVENTORY_CONSUMER),
        108,
        deadletter_allowed=faults.POISON,
    ),
    scenario("notifier consumer deleted", faults.consumer_deleted(INVENTORY, NOTIFIER_CONSUMER), 110),
]


@pytest.mark.parametrize("chosen", SCENARIOS)
async def test_the_sale_survives(tmp_path: Path, chosen: Scenario) -> None:
    run = await run_scenario(tmp_path, chosen)
    assert_survived(run)
    if chosen.plan is faults.store_full:
        seen = run.recoveries[0].notes["inventory_readyz_while_full"]
        assert any(status != 200 for status in seen), f"/readyz answered {seen} while the store was full"


async def test_an_r3_cluster_loses_the_stream_leader_then_another_node(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    scenario = Scenario("R3 cluster: leader, then another node", faults.cluster_loses_leader_then_another_node, 109)
    assert_survived(await run_scenario(tmp_path, scenario, nats_cluster))


async def test_events_spooled_in_an_outage_are_not_overtaken(tmp_path: Path) -> None:
    """Issue 13, item 2: a receipt for X and a write-off for Y are spooled while nats-server is down;
    orders for X and Y sent the moment ingress answers ``accepted`` again must see both."""
    # Long enough for the relay to back off (the race is lost when it waits while direct publishes go through).
    outage_s = 30.0 if LONG else 2 * load().fault_s
    rounds = 3
    recoveries: list[Recovery] = []
    acked: dict[str, float] = {}
    problems: list[str] = []
    async with running_stack(tmp_path / "stack", ttl_s=TTL_S) as stack, httpx.AsyncClient(timeout=5) as http:
        assert stack.nats is not None
        inventory = InventoryApi(http, stack.url("inventory"))

        async def send(event_type: str, event_id: str, **data: object) -> tuple[int, str]:
            status, outcome = await send_webhook(stack, http, event_type, event_id, **data)
            if 200 <= status < 300:
                acked.setdefault(event_id, time.time())
            return status, outcome

        async def levels(sku: str) -> tuple[int, int] | None:
            view = (await inventory.skus([sku]))[sku]
            return None if view is None else (view.levels.on_hand, view.levels.reserved)

        for n in range(rounds):
            x, y = f"RACE-X{n}", f"RACE-Y{n}"
            assert (await send("inventory.received", f"stock-{y}", sku=y, qty=1))[0] == 200

            async def in_stock(y: str = y) -> bool:
                return await levels(y) == (1, 0)

            await eventually(in_stock, timeout=30, what=f"{y} in stock")
            recovery = Recovery(f"nats-server down {outage_s:.0f} s (round {n + 1})")
            recoveries.append(recovery)
            recovery.injected = time.time()
            await asyncio.to_thread(stack.nats.kill)
            spooled = [
                await send("inventory.received", f"receipt-{x}", sku=x, qty=1),
                await send("inventory.adjusted", f"write-off-{y}", sku=y, delta=-1, reason="damaged"),
            ]
            assert [s for s, _ in spooled] == [202, 202], spooled
            await asyncio.sleep(outage_s)  # the outage itself, not a wait for anything
            await asyncio.to_thread(stack.nats.start)
            recovery.healed = time.time()
            probe = 0
            while (await send("inventory.received", f"probe-{n}-{probe}", sku=f"RACE-P{n}", qty=1))[1] != "accepted":
                probe += 1
                await asyncio.sleep(0.05)
            await asyncio.gather(
                send("order.created", f"order-{x}", order_id=f"o-{x}", lines=[{"sku": x, "qty": 1}]),
                send("order.created", f"order-{y}", order_id=f"o-{y}", lines=[{"sku": y, "qty": 1}]),
            )

            async def settled(x: str = x, y: str = y) -> bool:
                return all([await inventory.order(f"o-{x}"), await inventory.order(f"o-{y}")])

            await eventually(settled, timeout=60, what="both orders decided")
            recovery.recovered = time.time()
            # X was received before its order: reserved. Y was written off before its order: rejected.
            got = {x: await levels(x), y: await levels(y)}
            if got != {x: (1, 1), y: (0, 0)}:
                problems.append(f"round {n + 1}: (on_hand, reserved) {got}, expected X (1, 1) and Y (0, 0)")
        async with nats_for(stack) as js:
            # Whatever is still spooled is published before the history is read.
            drained = Recovery("spool drained")
            await Pipeline(js, StoreReader(stack.data_dir)).recover(drained, timeout_s=45.0)
            stored: list[Stored] = await read_commerce(js)
    overtaken = acknowledged_out_of_order(acked, stored)
    if overtaken:
        problems.append(f"{len(overtaken)} events published after one acknowledged later, e.g. {overtaken[:2]}")
    record_row(
        "nats-server outage race (item 2)",
        webhooks=len(acked),
        faults=[r.as_dict() for r in recoveries],
        events_lost=sum(1 for eid in acked if eid not in {s.event_id for s in stored}),
        problems=problems,
    )
    assert not problems, problems
