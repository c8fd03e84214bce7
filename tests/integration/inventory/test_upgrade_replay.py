"""A store that ran before its source spoke Commerce Engine's payloads has its real orders in DEADLETTER.
After the upgrade (the source's profile configured), replaying them applies each once."""

from __future__ import annotations

import json
from pathlib import Path

from nats.js import JetStreamContext

from libs.contracts import HEADER_MSG_ID
from libs.deadletters import DeadLetterFilter, ReplayOutcome, list_deadletters, replay_matching
from libs.natsserver import NatsServer
from tests.support import eventually

from .conftest import ClientFactory, drained, publish, sku

FIXTURES = Path(__file__).parents[2] / "fixtures" / "commerce_engine"
INVENTORY = DeadLetterFilter(consumer="inventory")


async def _publish_fixture(js: JetStreamContext, number: int) -> None:
    [path] = FIXTURES.glob(f"{number:02d}-*.json")
    document = json.loads(path.read_text())
    await publish(js, document["event_type"], document["id"], document["data"], source="store")


async def test_events_dead_lettered_before_the_upgrade_are_replayed_after_it_and_applied_once(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory
) -> None:
    for name, qty in (("TEE-ORG-BLK-M", 10), ("MUG-CER-350-WHT", 5), ("BNDL-GIFT-BOX-01", 2)):
        await publish(js, "inventory.received", f"r-{name}", {"sku": name, "qty": qty}, source="shop")
    # Before: `store` is not configured, so its payloads are read as Stockwire's own dialect and every
    # order event is refused for want of `order_id`, as the earlier parser refused them.
    async with inventory_factory(nats_server.url, sources={}) as before:
        for number in (1, 3):  # order A placed, then paid (`payment.successful`, a name both dialects map)
            await _publish_fixture(js, number)
        await eventually(lambda: drained(js), what="the events refused")
        assert (await sku(before, "TEE-ORG-BLK-M"))["available"] == 10  # type: ignore[index]
    dead = (await list_deadletters(js, INVENTORY)).records
    assert [(d.reason or "").split(":")[:2] for d in dead] == [["malformed", " data.order_id"]] * 2

    # After: the source reads Commerce Engine's payloads; the replay applies each event once.
    async with inventory_factory(nats_server.url) as after:
        report = await replay_matching(js, INVENTORY, max_payload=js._nc.max_payload)  # type: ignore[attr-defined]
        assert [r.outcome for r in report.results] == [ReplayOutcome.REPLAYED] * 2
        await eventually(lambda: drained(js), what="the replays applied")
        assert await sku(after, "TEE-ORG-BLK-M") == {
            "sku": "TEE-ORG-BLK-M", "on_hand": 10, "reserved": 0, "committed": 3, "available": 7, "backordered": 0,
            "version": 3,
        }  # fmt: skip
        assert (await sku(after, "JKT-RAIN-NVY-L"))["backordered"] == 1  # type: ignore[index]
        order = (await after.get("/orders/ORD-2026-000101?source=store")).json()
        assert order["state"] == "committed"
        assert sorted(e["outcome"] for e in order["events"]) == ["applied", "applied"]

        # Replayed again: inside the duplicate window JetStream keeps one copy; after it (a copy
        # published under a new message id), inventory's inbox knows the event: nothing twice.
        again = await replay_matching(js, INVENTORY, max_payload=js._nc.max_payload)  # type: ignore[attr-defined]
        assert [r.outcome for r in again.results] == [ReplayOutcome.DUPLICATE] * 2
        first = report.results[0].stream_seq
        assert first is not None
        replayed = await js.get_msg("COMMERCE", first)
        headers = {**(replayed.headers or {}), HEADER_MSG_ID: "replay:after-the-window"}
        await js.publish(replayed.subject, replayed.data, headers=headers)
        await eventually(lambda: drained(js), what="the late copy settled")
        assert (await sku(after, "TEE-ORG-BLK-M"))["committed"] == 3  # type: ignore[index]
        assert (await list_deadletters(js, INVENTORY)).records == dead  # nothing new was dead-lettered
