"""The notifier owns its durable consumers: one deleted while it runs comes back where it was."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.contracts import decode_availability
from libs.topology import DEADLETTER, INVENTORY, NOTIFIER_CONSUMER
from tests.support import eventually

from .conftest import NotifierFactory
from .support import availability, publish, pull


async def _pull_and_ack(js: JetStreamContext, durable: str, count: int) -> list[int]:
    return [decode_availability(msg.data).version for msg in await pull(js, durable, count, timeout=2)]


async def test_a_deleted_channel_consumer_is_recreated_after_what_its_client_acknowledged(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    async with notifier_factory(registry_refresh_s=0.1) as notifier:
        await notifier.create_channel(name="erp", kind="jetstream")
        for version in range(1, 6):
            await publish(js, availability("SKU-1", version, version))
        assert await _pull_and_ack(js, "chan-erp", 3) == [1, 2, 3]

        async def floor_known() -> bool:
            return notifier.runtime.channel_floors.get("chan-erp") == 3

        await eventually(floor_known, what="the notifier knows the channel's ack floor")
        await js.delete_consumer(INVENTORY, "chan-erp")

        async def recreated() -> js_api.ConsumerInfo | None:
            try:
                return await js.consumer_info(INVENTORY, "chan-erp")
            except Exception:
                return None

        info = await eventually(recreated, what="channel consumer re-created")
        assert info.config.deliver_policy == js_api.DeliverPolicy.BY_START_SEQUENCE
        assert info.config.opt_start_seq == 4
        assert await _pull_and_ack(js, "chan-erp", 5) == [4, 5]


async def test_the_notifier_recreates_its_own_consumer_from_its_ack_floor(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    async with notifier_factory() as notifier:
        for version in range(1, 4):
            await publish(js, availability("SKU-1", version, version))
        consumer = notifier.runtime.consumer
        assert consumer is not None

        async def floor_at_3() -> bool:
            return consumer.ack_floor == 3

        await eventually(floor_at_3, what="the runner knows the ack floor")
        await js.delete_consumer(INVENTORY, NOTIFIER_CONSUMER)
        await publish(js, availability("SKU-1", 4, 4))

        async def caught_up() -> bool:
            try:
                info = await js.consumer_info(INVENTORY, NOTIFIER_CONSUMER)
            except Exception:
                return False
            return info.ack_floor.stream_seq == 4 and await notifier.runtime.consumer_bound()

        await eventually(caught_up, what="the update published after the deletion consumed")
        info = await js.consumer_info(INVENTORY, NOTIFIER_CONSUMER)
        assert info.config.opt_start_seq == 4 and info.num_redelivered == 0
        assert info.delivered.stream_seq == 4 and info.delivered.consumer_seq == 1
        assert (await js.stream_info(DEADLETTER)).state.messages == 0
