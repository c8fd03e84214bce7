from __future__ import annotations

import dataclasses

import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.config import TopologySettings
from libs.topology import COMMERCE, TopologyError, apply_consumer, apply_topology, consumer_spec, describe_topology


async def test_applying_twice_changes_nothing(js: JetStreamContext, topology_settings: TopologySettings) -> None:
    again = await apply_topology(js, topology_settings)
    assert all("up to date" in line for line in again), again
    described = await describe_topology(js, topology_settings)
    assert set(described["streams"]) == {"COMMERCE", "INVENTORY", "DEADLETTER"}
    assert set(described["kv"]) == {"availability", "leases", "event-ids"}
    assert described["consumers"]["COMMERCE/inventory"]["pending"] == 0


async def test_compatible_changes_are_updated_in_place(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    changed = dataclasses.replace(topology_settings, duplicate_window_s=30.0, max_deliver=5, lease_ttl_s=20.0)
    actions = await apply_topology(js, changed)
    assert "updated stream COMMERCE (duplicate_window)" in actions
    assert any(line.startswith("updated consumer COMMERCE/inventory") and "max_deliver" in line for line in actions)
    assert any(line.startswith("updated kv leases") for line in actions)
    info = await js.stream_info(COMMERCE)
    assert info.config.duplicate_window == pytest.approx(30.0)
    consumer = await js.consumer_info(COMMERCE, "inventory")
    assert consumer.config.max_deliver == 5
    # The runner's nak delays are the retry schedule: a backoff list would override them.
    assert consumer.config.backoff is None


async def test_a_consumer_with_the_old_backoff_and_ack_wait_is_brought_to_the_declared_timing(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    info = await js.consumer_info(COMMERCE, "inventory")
    old = info.config
    old.ack_wait = 30.0
    old.backoff = [30.0, 60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    await js.add_consumer(COMMERCE, old)
    assert (await js.consumer_info(COMMERCE, "inventory")).config.backoff

    actions = await apply_topology(js, topology_settings)

    assert any(line.startswith("updated consumer COMMERCE/inventory") and "backoff" in line for line in actions)
    consumer = await js.consumer_info(COMMERCE, "inventory")
    assert consumer.config.backoff is None
    assert consumer.config.ack_wait == pytest.approx(topology_settings.ack_wait_s)


async def test_a_consumer_resumed_at_a_sequence_is_up_to_date_and_a_missing_one_resumes_there(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    for n in range(5):
        await js.publish(f"commerce.test.e{n}", b"{}")
    await js.delete_consumer(COMMERCE, "inventory")
    spec = consumer_spec(topology_settings, COMMERCE, "inventory")

    assert await apply_consumer(js, spec, resume_after=3) == (
        "created consumer COMMERCE/inventory (from stream sequence 4)"
    )

    info = await js.consumer_info(COMMERCE, "inventory")
    assert info.ack_floor.stream_seq == 3 and info.num_pending == 2
    assert all("up to date" in line for line in await apply_topology(js, topology_settings))


async def test_an_incompatible_change_is_a_clear_error_naming_the_field(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    info = await js.stream_info(COMMERCE)
    await js.delete_stream(COMMERCE)
    config = info.config
    config.storage = js_api.StorageType.MEMORY
    await js.add_stream(config)
    with pytest.raises(TopologyError, match=r"stream COMMERCE: storage"):
        await apply_topology(js, topology_settings)


async def test_a_missing_consumer_on_a_stream_with_messages_is_left_to_its_service(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    await js.publish("commerce.test.event", b"{}")
    await js.delete_consumer(COMMERCE, "inventory")

    actions = await apply_topology(js, topology_settings)

    assert any(
        line.startswith("consumer COMMERCE/inventory missing") and "left to its service" in line for line in actions
    )
    with pytest.raises(js_errors.NotFoundError):
        await js.consumer_info(COMMERCE, "inventory")


async def test_every_bucket_is_read_with_direct_gets_and_an_older_bucket_is_brought_to_it(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    for bucket in ("availability", "leases", "event-ids"):
        assert (await js.stream_info(f"KV_{bucket}")).config.allow_direct, bucket
    config = (await js.stream_info("KV_event-ids")).config
    config.allow_direct = False
    await js.update_stream(config)
    actions = await apply_topology(js, topology_settings)
    assert "updated kv event-ids (direct gets)" in actions
    assert (await js.stream_info("KV_event-ids")).config.allow_direct


async def test_the_notifier_consumer_takes_availability_only_and_an_older_one_is_narrowed(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    spec = consumer_spec(topology_settings, "INVENTORY", "channel-notifier")
    assert spec.filter_subject == "inventory.availability.>"
    config = (await js.consumer_info("INVENTORY", "channel-notifier")).config
    config.filter_subject = "inventory.>"
    await js.add_consumer("INVENTORY", config)
    actions = await apply_topology(js, topology_settings)
    assert any(line.startswith("updated consumer INVENTORY/channel-notifier") for line in actions), actions
    assert (await js.consumer_info("INVENTORY", "channel-notifier")).config.filter_subject == spec.filter_subject
