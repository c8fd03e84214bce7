"""Channels declared in ``[[channel-notifier.channels]]``: created at start-up, brought in line after."""

from __future__ import annotations

import json
from pathlib import Path

from nats.js import JetStreamContext

from libs.config import load_raw, load_section
from libs.signing import generate_standard_secret
from services.channel_notifier.settings import ChannelNotifierSettings

from .conftest import NotifierFactory
from .support import availability, publish, until


def test_toml_and_environment_declare_channels(tmp_path: Path) -> None:
    secret = generate_standard_secret()
    config = tmp_path / "stockwire.toml"
    config.write_text(
        f"""
[channel-notifier]
port = 9082
allow_hosts = ["localhost", "hooks.internal"]
retry_cap_s = 30

[[channel-notifier.channels]]
name = "storefront"
url = "http://localhost:9001/hook"
secret = "{secret}"
buffer = 2
filters = {{ skus = ["TEE-*"] }}

[[channel-notifier.channels]]
name = "erp"
kind = "jetstream"
filters = {{ kinds = ["availability", "reserved"] }}
"""
    )
    raw = load_raw(config, env={"STOCKWIRE__CHANNEL_NOTIFIER__CONCURRENCY": "4"})
    settings = load_section(raw, "channel-notifier", ChannelNotifierSettings)
    assert (settings.port, settings.concurrency, settings.retry_cap_s) == (9082, 4, 30.0)
    assert settings.allow_hosts == ["localhost", "hooks.internal"]
    storefront, erp = settings.channels
    assert (storefront.name, storefront.buffer, storefront.filters.skus) == ("storefront", 2, ["TEE-*"])
    assert storefront.all_secrets() == [secret]
    assert secret not in repr(storefront) and secret not in repr(settings)
    assert (erp.kind, erp.filters.kinds) == ("jetstream", ["availability", "reserved"])

    env = {
        "STOCKWIRE__CHANNEL_NOTIFIER__CHANNELS": json.dumps(
            [{"name": "b2b", "url": "http://x.test/", "secret": secret}]
        ),
        "STOCKWIRE__CHANNEL_NOTIFIER__ALLOW_HOSTS": "localhost,127.0.0.1",
    }
    from_env = load_section(load_raw(config, env=env), "channel-notifier", ChannelNotifierSettings)
    assert [c.name for c in from_env.channels] == ["b2b"]
    assert from_env.allow_hosts == ["localhost", "127.0.0.1"]


async def test_declared_channels_are_created_then_updated(
    js: JetStreamContext, notifier_factory: NotifierFactory, sinks
) -> None:  # type: ignore[no-untyped-def]
    from services.channel_notifier.settings import DeclaredChannel, DeclaredFilters

    shop = await sinks("shop")
    declared = [DeclaredChannel(name="shop", url=shop.url, secret=shop.secret, buffer=1)]
    async with notifier_factory(channels=declared) as notifier:
        await until(lambda: [c.name for c in notifier.runtime.registry.channels] == ["shop"], what="declared")
        await publish(js, availability("A", 1, 10))
        await until(lambda: shop.sink.cache.get("A") == (1, 9), what="declared channel delivered")
    changed = [
        DeclaredChannel(name="shop", url=shop.url, secret=shop.secret, buffer=3),
        DeclaredChannel(name="erp", kind="jetstream", filters=DeclaredFilters(skus=["A"])),
    ]
    async with notifier_factory(channels=changed) as notifier:
        await until(lambda: len(notifier.runtime.registry.channels) == 2, what="second channel declared")
        assert (await notifier.channel("shop"))["buffer"] == 3
        await until(lambda: shop.sink.cache.get("A") == (1, 7), what="new buffer applied")
        assert (await js.consumer_info("INVENTORY", "chan-erp")).config.filter_subject == "inventory.availability.A"


async def test_a_bad_declared_channel_keeps_the_notifier_unready(notifier_factory: NotifierFactory) -> None:
    from services.channel_notifier.settings import DeclaredChannel

    declared = [
        DeclaredChannel(name="evil", url="https://10.1.1.1/hook", secret=generate_standard_secret()),
        DeclaredChannel(name="fine", url="http://localhost:9/hook", secret=generate_standard_secret()),
    ]
    async with notifier_factory(channels=declared) as notifier:
        ready = await notifier.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["channels_valid"] is False
        assert notifier.runtime.config_error and "evil: 10.1.1.1 is a private address" in notifier.runtime.config_error
        assert [c.name for c in notifier.runtime.registry.channels] == ["fine"]
