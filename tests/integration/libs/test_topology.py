from __future__ import annotations

import dataclasses

import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.config import TopologySettings
from libs.topology import COMMERCE, TopologyError, apply_topology, describe_topology


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
    assert len(consumer.config.backoff or []) == 4


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
