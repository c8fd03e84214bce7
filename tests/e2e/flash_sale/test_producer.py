"""The simulator's producer against a real ingress: signatures, dedup, forged copies, retries across a restart."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from libs.topology import COMMERCE
from stockwire.sim.config import ProducerConfig
from stockwire.sim.delivery import Copy, Delivery
from stockwire.sim.plan import Webhook
from stockwire.sim.producer import Producer, make_client
from stockwire.stack import DEV_CE_SOURCE, DEV_SOURCE, dev_source_secret

from .conftest import running_stack

pytestmark = pytest.mark.e2e


def _webhooks(n: int, prefix: str) -> list[Webhook]:
    return [Webhook(f"{prefix}-{i}", "inventory.received", {"sku": f"SKU-{i % 7}", "qty": 1}) for i in range(n)]


async def test_duplicates_are_answered_as_such_and_forged_copies_refused(e2e_dir: Path) -> None:
    import nats

    async with running_stack(e2e_dir, ["ingress"]) as stack:
        delivered: list[str] = []
        async with make_client(16, 5) as client:
            producer = Producer(
                client,
                stack.url("ingress"),
                {DEV_SOURCE: dev_source_secret(stack.data_dir)},
                ProducerConfig(),
                random.Random(1),
                lambda webhook, _at: delivered.append(webhook.event_id),
            )
            webhooks = _webhooks(50, "p")
            await asyncio.gather(*(producer.deliver(Delivery(w)) for w in webhooks))
            await asyncio.gather(*(producer.deliver(Delivery(w, Copy.DUPLICATE)) for w in webhooks[:10]))
            await asyncio.gather(*(producer.deliver(Delivery(w, Copy.FORGED)) for w in webhooks[:5]))
        stats = producer.stats
        assert (stats.accepted, stats.duplicate, stats.forged_refused, stats.forged_accepted) == (50, 10, 5, 0)
        assert stats.statuses["401"] == 5
        assert sorted(delivered) == sorted(w.event_id for w in webhooks)
        nc = await nats.connect(stack.nats_url)
        try:
            info = await nc.jetstream().stream_info(COMMERCE)
            assert info.state.messages == 50
        finally:
            await nc.close()


async def test_retries_carry_deliveries_over_an_ingress_restart(e2e_dir: Path) -> None:
    async with running_stack(e2e_dir, ["ingress"]) as stack:
        config = ProducerConfig(backoff_base_s=0.05, backoff_max_s=0.5, max_attempts=60)
        async with make_client(8, 2) as client:
            producer = Producer(
                client,
                stack.url("ingress"),
                {DEV_SOURCE: dev_source_secret(stack.data_dir)},
                config,
                random.Random(2),
                lambda *_: None,
            )
            stack.children["ingress"].kill()
            sending = asyncio.gather(*(producer.deliver(Delivery(w)) for w in _webhooks(20, "r")))
            await asyncio.to_thread(stack.restart_service, "ingress")
            statuses = await sending
        assert statuses == [200] * 20
        assert producer.stats.retries > 0 and producer.stats.statuses["connection_error"] > 0
        assert producer.stats.accepted + producer.stats.duplicate == 20


async def test_each_webhook_goes_to_its_own_source_signed_with_that_sources_secret(e2e_dir: Path) -> None:
    import nats

    async with running_stack(e2e_dir, ["ingress"]) as stack:
        secrets = {source: dev_source_secret(stack.data_dir, source) for source in (DEV_SOURCE, DEV_CE_SOURCE)}
        stock = _webhooks(4, "s")
        orders = [
            Webhook(f"o-{i}", "order.created", {"order_number": f"ORD-{i}"}, source=DEV_CE_SOURCE) for i in range(6)
        ]
        async with make_client(8, 5) as client:
            producer = Producer(
                client, stack.url("ingress"), secrets, ProducerConfig(), random.Random(3), lambda *_: None
            )
            await asyncio.gather(*(producer.deliver(Delivery(w)) for w in [*stock, *orders]))
            await asyncio.gather(*(producer.deliver(Delivery(w, Copy.FORGED)) for w in orders[:2]))
        assert (producer.stats.accepted, producer.stats.forged_refused, producer.stats.forged_accepted) == (10, 2, 0)
        nc = await nats.connect(stack.nats_url)
        try:
            subjects: dict[str, int] = {}
            sub = await nc.jetstream().subscribe("commerce.>", ordered_consumer=True)
            for _ in range(10):
                msg = await sub.next_msg(timeout=5)
                source = msg.subject.split(".")[1]
                subjects[source] = subjects.get(source, 0) + 1
        finally:
            await nc.close()
        assert subjects == {DEV_SOURCE: 4, DEV_CE_SOURCE: 6}
