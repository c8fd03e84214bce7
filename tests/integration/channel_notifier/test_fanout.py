"""Availability reaches every channel: signed, buffered, newest version wins, KV kept up to date."""

from __future__ import annotations

import random

import msgspec
import pytest
from nats.js import JetStreamContext

from libs.contracts import AvailabilityChanged, decode_availability
from libs.signing import generate_standard_secret
from libs.subjects import encode_token
from libs.topology import KV_AVAILABILITY
from tests.support import eventually

from .conftest import Notifier, NotifierFactory
from .support import AUTH, availability, converged, publish, until


async def test_burst_reaches_three_channels_with_their_buffers(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    storefront = await sinks("storefront")
    old_secret, new_secret = generate_standard_secret(), generate_standard_secret()
    # The marketplace still verifies with the old secret only: rotation signs with both.
    marketplace = await sinks("marketplace", secrets=[old_secret])
    b2b = await sinks("b2b")
    await notifier.create_channel(name="storefront", url=storefront.url, secret=storefront.secret)
    await notifier.create_channel(name="marketplace", url=marketplace.url, secrets=[new_secret, old_secret], buffer=2)
    await notifier.create_channel(name="b2b", url=b2b.url, secret=b2b.secret, buffer=5)

    rng = random.Random(5)
    final: dict[str, AvailabilityChanged] = {}
    messages: list[AvailabilityChanged] = []
    for n in range(40):
        sku = f"SKU-{n}" if n % 7 else f"odd sku.{n}/x"  # some SKUs need escaping in subjects
        for version in range(1, rng.randint(2, 6)):
            update = availability(sku, version, rng.randint(0, 20))
            messages.append(update)
            final[sku] = update
    # At-least-once and outages: duplicates, and some older versions after newer ones.
    replayed = rng.sample(messages, 30)
    for update in messages + replayed:
        await publish(js, update)
    for update in rng.sample(messages, 20):
        await js.publish(f"inventory.availability.{encode_token(update.sku)}", msgspec.json.encode(update))

    for sink, buffer in ((storefront, 0), (marketplace, 2), (b2b, 5)):
        await until(lambda s=sink, b=buffer: converged(s.sink, final, b), timeout=20, what=f"{sink.sink.name}")
        assert sink.sink.backwards() == {}
        assert sink.sink.bad_signatures == 0
    assert marketplace.sink.cache["SKU-1"][1] == max(0, final["SKU-1"].available - 2)

    kv = await js.key_value(KV_AVAILABILITY)
    for sku, update in final.items():
        entry = await kv.get(encode_token(sku), validate_keys=False)
        assert decode_availability(entry.value) == update


async def test_filters_select_skus_and_a_new_channel_gets_the_current_state(
    js: JetStreamContext, notifier: Notifier, sinks
) -> None:  # type: ignore[no-untyped-def]
    tees = await sinks("tees")
    await notifier.create_channel(name="tees", url=tees.url, secret=tees.secret, filters={"skus": ["TEE-*"]})
    for sku in ("TEE-1", "TEE-2", "MUG-1"):
        await publish(js, availability(sku, 1, 5))
    await until(lambda: set(tees.sink.cache) == {"TEE-1", "TEE-2"}, what="tees got its SKUs")

    # A channel registered later starts from the current availability in the KV bucket.
    late = await sinks("late")
    await eventually(lambda: _kv_has(js, ["TEE-1", "TEE-2", "MUG-1"]), what="kv filled")
    await notifier.create_channel(name="late", url=late.url, secret=late.secret)
    await until(lambda: set(late.sink.cache) == {"TEE-1", "TEE-2", "MUG-1"}, what="late channel seeded")
    assert "MUG-1" not in tees.sink.cache


async def test_buffer_change_resends_what_the_channel_sees(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    shop = await sinks("shop")
    await notifier.create_channel(name="shop", url=shop.url, secret=shop.secret)
    await publish(js, availability("A", 1, 10))
    await until(lambda: shop.sink.cache.get("A") == (1, 10), what="first delivery")
    response = await notifier.client.patch("/channels/shop", json={"buffer": 4}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["buffer"] == 4
    await until(lambda: shop.sink.cache.get("A") == (1, 6), what="buffered availability resent")


async def test_disabled_channel_gets_nothing_then_catches_up(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    paused = await sinks("paused")
    witness = await sinks("witness")
    await notifier.create_channel(name="paused", url=paused.url, secret=paused.secret, enabled=False)
    await notifier.create_channel(name="witness", url=witness.url, secret=witness.secret)
    for version in (1, 2, 3):
        await publish(js, availability("P", version, version))
    await until(lambda: witness.sink.cache.get("P") == (3, 3), what="witness up to date")
    assert paused.sink.requests == []
    response = await notifier.client.patch("/channels/paused", json={"enabled": True}, headers=AUTH)
    assert response.status_code == 200
    await until(lambda: paused.sink.cache.get("P") == (3, 3), what="paused channel caught up")
    assert paused.sink.versions == {"P": [3]}  # coalesced: only the newest was sent


async def _kv_has(js: JetStreamContext, skus: list[str]) -> bool:
    kv = await js.key_value(KV_AVAILABILITY)
    for sku in skus:
        try:
            await kv.get(encode_token(sku), validate_keys=False)
        except Exception:
            return False
    return True


@pytest.mark.postgres
async def test_two_replicas_on_postgresql_share_the_work_in_order(
    js: JetStreamContext, notifier_factory: NotifierFactory, postgres_url: str, sinks
) -> None:  # type: ignore[no-untyped-def]
    shop, market = await sinks("shop"), await sinks("market")
    async with (
        notifier_factory(database_url=postgres_url) as first,
        notifier_factory(database_url=postgres_url) as second,
    ):
        await first.create_channel(name="shop", url=shop.url, secret=shop.secret)
        await first.create_channel(name="market", url=market.url, secret=market.secret, buffer=1)
        await until(lambda: len(second.runtime.registry.channels) == 2, what="second replica sees the channels")
        assert first.runtime.owner != second.runtime.owner
        rng = random.Random(9)
        final: dict[str, AvailabilityChanged] = {}
        for version in range(1, 9):
            for n in range(30):
                update = availability(f"R-{n}", version, rng.randint(0, 9))
                final[update.sku] = update
                await publish(js, update)
        await until(lambda: converged(shop.sink, final), timeout=20, what="shop converged")
        await until(lambda: converged(market.sink, final, 1), timeout=20, what="market converged")
        assert shop.sink.backwards() == {} and market.sink.backwards() == {}
