"""Bad channels: failing, slow, down, gone, asking to wait, given up on. The others never notice."""

from __future__ import annotations

import datetime as dt
import random

from nats.js import JetStreamContext

from libs.contracts import AvailabilityChanged
from stockwire.demo.sinks import ChannelSink
from tests.support import eventually

from .conftest import Notifier, NotifierFactory
from .support import AUTH, availability, converged, publish, until


async def _burst(
    js: JetStreamContext, skus: int, versions: int, seed: int, first_version: int = 1
) -> dict[str, AvailabilityChanged]:
    rng = random.Random(seed)
    final: dict[str, AvailabilityChanged] = {}
    for version in range(first_version, first_version + versions):
        for n in range(skus):
            update = availability(f"F-{n}", version, rng.randint(0, 50))
            await publish(js, update)
            final[update.sku] = update
    return final


def _latency_max(sink: ChannelSink) -> float:
    return max(sink.latencies) if sink.latencies else float("inf")


async def test_failing_slow_and_dead_channels_do_not_delay_the_healthy_ones(
    js: JetStreamContext, notifier: Notifier, sinks
) -> None:  # type: ignore[no-untyped-def]
    healthy = await sinks("storefront")
    healthy_too = await sinks("pos")
    failing = await sinks("marketplace", status=500)
    slow = await sinks("b2b", delay_s=0.4)
    down = await sinks("wholesale")
    await down.server.stop()
    for running in (healthy, healthy_too, failing, slow, down):
        await notifier.create_channel(name=running.sink.name, url=running.url, secret=running.secret)

    final = await _burst(js, skus=25, versions=4, seed=1)
    await until(lambda: converged(healthy.sink, final), timeout=20, what="healthy channel converged")
    await until(lambda: converged(healthy_too.sink, final), timeout=20, what="second healthy channel converged")
    # Every healthy delivery arrived quickly even though three channels were failing or stalling meanwhile
    # (a shared queue would have made them wait behind 2 s timeouts and 0.4 s answers).
    assert _latency_max(healthy.sink) < 2.0, sorted(healthy.sink.latencies)[-5:]
    assert _latency_max(healthy_too.sink) < 2.0
    await until(lambda: len(failing.sink.requests) >= 3, what="the failing channel was tried")
    assert failing.sink.delivered == 0 and set(failing.sink.statuses()) == {500}
    assert not converged(failing.sink, final)

    async def circuit_opened() -> bool:
        text = (await notifier.client.get("/metrics")).text
        return 'channel_notifier_circuit_open{channel="marketplace"} 1.0' in text

    await eventually(circuit_opened, what="the failing channel's circuit opened")
    pending = await notifier.deliveries("marketplace", status="pending")
    assert len(pending) == 25  # one row per SKU: the versions coalesced
    assert all(row["version"] == final[row["sku"]].version for row in pending)

    # Recovery: the failing one answers again, the dead one comes back.
    failing.sink.behaviour.status = 200
    await down.server.start()
    for running in (failing, slow, down):
        await until(lambda r=running: converged(r.sink, final), timeout=30, what=f"{running.sink.name} recovered")
    for running in (healthy, healthy_too, failing, slow, down):
        assert running.sink.backwards() == {}, running.sink.name
        assert running.sink.bad_signatures == 0
    # Coalescing while failing: far fewer deliveries than the 100 changes published.
    assert failing.sink.delivered <= 60

    # After recovery the healthy channels keep up with a second burst too.
    final = await _burst(js, skus=25, versions=2, seed=2, first_version=5)
    for running in (healthy, healthy_too, failing, slow, down):
        await until(lambda r=running: converged(r.sink, final), timeout=30, what=f"{running.sink.name} second burst")


async def test_gone_disables_the_channel(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    gone = await sinks("gone", status=410)
    witness = await sinks("witness")
    await notifier.create_channel(name="gone", url=gone.url, secret=gone.secret)
    await notifier.create_channel(name="witness", url=witness.url, secret=witness.secret)
    await publish(js, availability("G", 1, 1))

    async def disabled() -> bool:
        channel = await notifier.channel("gone")
        return channel["enabled"] is False and "410" in (channel["disabled_reason"] or "")

    await eventually(disabled, what="channel disabled after 410")
    requests_when_disabled = len(gone.sink.requests)
    for version in (2, 3):
        await publish(js, availability("G", version, version))
    await until(lambda: witness.sink.cache.get("G") == (3, 3), what="witness got every version")
    assert len(gone.sink.requests) == requests_when_disabled == 1
    # The updates are still kept (coalesced) for when an operator enables the channel again.
    rows = await notifier.deliveries("gone", status="pending")
    assert [(r["sku"], r["version"]) for r in rows] == [("G", 3)]
    gone.sink.behaviour.status = 200
    enabled = await notifier.client.patch("/channels/gone", json={"enabled": True}, headers=AUTH)
    assert enabled.status_code == 200
    await until(lambda: gone.sink.cache.get("G") == (3, 3), what="re-enabled channel caught up")


async def test_retry_after_is_respected(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    busy = await sinks("busy", status=429, retry_after="1")
    await notifier.create_channel(name="busy", url=busy.url, secret=busy.secret)
    await publish(js, availability("B", 1, 4))
    await until(lambda: len(busy.sink.requests) >= 1, what="first attempt")
    busy.sink.behaviour.status = 200
    await until(lambda: busy.sink.cache.get("B") == (1, 4), timeout=10, what="delivered after the wait")
    (first_at, first_status), (second_at, _) = busy.sink.requests[0], busy.sink.requests[1]
    assert first_status == 429
    # The backoff alone would have retried within 0.3 s; the channel asked for 1 s.
    assert second_at - first_at >= 0.95


async def test_retry_after_pauses_the_whole_channel(js: JetStreamContext, notifier: Notifier, sinks) -> None:  # type: ignore[no-untyped-def]
    busy = await sinks("busy", status=503, retry_after="1")
    await notifier.create_channel(name="busy", url=busy.url, secret=busy.secret)
    await publish(js, availability("X", 1, 1))
    await until(lambda: len(busy.sink.requests) >= 1, what="first attempt")
    first_at = busy.sink.requests[0][0]
    busy.sink.behaviour.status = 200
    await publish(js, availability("Y", 1, 1))  # another SKU: it waits for the same pause
    await until(lambda: {"X", "Y"} <= set(busy.sink.cache), what="both delivered")
    assert all(at - first_at >= 0.95 for at, _ in busy.sink.requests[1:])


async def test_given_up_delivery_is_kept_and_replay_or_retry_delivers_it(
    js: JetStreamContext, notifier_factory: NotifierFactory, sinks
) -> None:  # type: ignore[no-untyped-def]
    broken = await sinks("broken", status=500)
    async with notifier_factory(max_attempts=3, breaker_failure_threshold=100) as notifier:
        await notifier.create_channel(name="broken", url=broken.url, secret=broken.secret)
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        for sku in ("A", "B"):
            await publish(js, availability(sku, 1, 5))
            await publish(js, availability(sku, 2, 6))

        async def given_up() -> list[dict]:  # type: ignore[type-arg]
            rows = await notifier.deliveries("broken", status="failed")
            return rows if len(rows) == 2 else []

        failed = await eventually(given_up, what="both deliveries given up")
        assert all(r["attempts"] == 3 and r["version"] == 2 and r["last_status"] == 500 for r in failed)
        attempts = len(broken.sink.requests)
        assert attempts >= 6
        await until(lambda: len(broken.sink.requests) == attempts, what="no more attempts")
        broken.sink.behaviour.status = 200

        by_sku = {r["sku"]: r for r in failed}
        retried = await notifier.client.post(f"/deliveries/{by_sku['A']['id']}/retry", headers=AUTH)
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        await until(lambda: broken.sink.cache.get("A") == (2, 6), what="retried delivery arrived")
        assert "B" not in broken.sink.cache

        replay = await notifier.client.post("/channels/broken/replay", json={"since": before.isoformat()}, headers=AUTH)
        assert replay.status_code == 202, replay.text
        assert replay.json()["skus"] == 2 and replay.json()["messages"] == 4
        await until(lambda: broken.sink.cache.get("B") == (2, 6), what="replayed delivery arrived")
        assert broken.sink.backwards() == {}
        delivered = await notifier.deliveries("broken", status="delivered")
        assert {r["sku"] for r in delivered} == {"A", "B"}


async def test_replay_from_a_later_time_sends_only_what_changed_since(
    js: JetStreamContext, notifier: Notifier, sinks
) -> None:  # type: ignore[no-untyped-def]
    shop = await sinks("shop")
    await notifier.create_channel(name="shop", url=shop.url, secret=shop.secret)
    await publish(js, availability("OLD", 1, 1))
    await until(lambda: "OLD" in shop.sink.cache, what="old delivered")
    since = dt.datetime.now(dt.UTC)
    await publish(js, availability("NEW", 1, 1))
    await until(lambda: "NEW" in shop.sink.cache, what="new delivered")
    replay = await notifier.client.post("/channels/shop/replay", json={"since": since.isoformat()}, headers=AUTH)
    assert replay.json()["skus"] == 1
    await until(lambda: shop.sink.versions.get("NEW") == [1, 1], what="NEW sent again")
    assert shop.sink.versions["OLD"] == [1]
