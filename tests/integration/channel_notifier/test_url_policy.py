"""No SSRF through channel registration, and no traffic to a refused destination at delivery time."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.js import JetStreamContext

from libs.signing import generate_standard_secret
from tests.support import eventually

from .conftest import Notifier, NotifierFactory
from .support import AUTH, availability, publish, until


async def test_private_addresses_are_refused_at_registration(notifier: Notifier) -> None:
    for url, reason in [
        ("http://10.0.0.1/hook", "https_required"),
        ("https://10.0.0.1/hook", "address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("https://[::ffff:192.168.0.1]/hook", "address_not_allowed"),
        ("https://0.0.0.0/hook", "address_not_allowed"),
        ("gopher://example.com/", "scheme_not_allowed"),
        # IPv6 forms of an IPv4 address are judged by it: NAT64, local-use NAT64, 6to4, Teredo,
        # IPv4-compatible and -translated, ISATAP.
        ("https://[64:ff9b::a9fe:a9fe]/latest/meta-data", "address_not_allowed"),
        ("https://[64:ff9b:1::a9fe:a9fe]/", "address_not_allowed"),
        ("https://[2002:a9fe:a9fe::1]/", "address_not_allowed"),
        ("https://[2001:0:a9fe:a9fe::]/", "address_not_allowed"),
        ("https://[::a9fe:a9fe]/", "address_not_allowed"),
        ("https://[::ffff:0:a9fe:a9fe]/", "address_not_allowed"),
        ("https://[2a00:1450::5efe:a9fe:a9fe]/", "address_not_allowed"),
        # ...and so are IPv4 addresses not spelt as a dotted quad.
        ("https://2852039166/", "address_not_allowed"),
        ("https://0251.0376.0251.0376/", "address_not_allowed"),
        ("https://169.254.43518/", "address_not_allowed"),
        ("https://0xa9fea9fe/", "address_not_allowed"),
        ("https://134744072/", "invalid_url"),
    ]:
        response = await notifier.client.post("/channels", json={"name": "evil", "url": url}, headers=AUTH)
        assert response.status_code == 422, (url, response.text)
        body = response.json()
        assert body["error"] == "url_refused" and body["reason"] == reason, body
        assert body["detail"]
    assert (await notifier.client.get("/channels", headers=AUTH)).json()["channels"] == []


async def test_a_name_resolving_to_a_private_address_is_refused(notifier_factory: NotifierFactory) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return {
            "shop.example": ["93.184.216.34", "10.9.8.7"],
            "nat64.example": ["64:ff9b::a9fe:a9fe"],
            "ok.example": ["93.184.216.34"],
        }[host]

    async with notifier_factory(resolve=resolve) as notifier:
        refused = await notifier.client.post(
            "/channels", json={"name": "evil", "url": "https://shop.example/hook"}, headers=AUTH
        )
        assert refused.status_code == 422
        assert "resolves to 10.9.8.7, a private address" in refused.json()["detail"]
        nat64 = await notifier.client.post(
            "/channels", json={"name": "evil", "url": "https://nat64.example/hook"}, headers=AUTH
        )
        assert nat64.status_code == 422
        assert "a NAT64 address of 169.254.169.254, a link-local address" in nat64.json()["detail"]
        fine = await notifier.client.post(
            "/channels", json={"name": "fine", "url": "https://ok.example/hook", "enabled": False}, headers=AUTH
        )
        assert fine.status_code == 201


async def test_localhost_is_refused_when_not_on_the_allow_list(notifier_factory: NotifierFactory, sinks) -> None:  # type: ignore[no-untyped-def]
    sink = await sinks("local")
    async with notifier_factory(allow_hosts=["127.0.0.1"]) as notifier:
        url = f"https://localhost:{sink.server.port}/hook"
        refused = await notifier.client.post("/channels", json={"name": "l", "url": url}, headers=AUTH)
        assert refused.status_code == 422
        assert "loopback" in refused.json()["detail"]


async def test_delivery_is_refused_when_the_policy_no_longer_allows_the_destination(
    js: JetStreamContext, notifier_factory: NotifierFactory, sinks
) -> None:  # type: ignore[no-untyped-def]
    sink = await sinks("tightened")
    witness = await sinks("witness")
    secret = generate_standard_secret()
    # Registered while loopback was allowed...
    async with notifier_factory() as notifier:
        await notifier.create_channel(name="tightened", url=sink.url.replace("127.0.0.1", "localhost"), secret=secret)
        await notifier.create_channel(name="witness", url=witness.url, secret=witness.secret)
    # ...then the operator allows only the witness's address: "localhost" must not be reached any more.
    async with notifier_factory(allow_hosts=["127.0.0.1"]) as notifier:
        await publish(js, availability("S", 1, 3))
        await until(lambda: witness.sink.cache.get("S") == (1, 3), what="witness delivered")

        async def refused() -> bool:
            rows = await notifier.deliveries("tightened")
            return bool(rows) and rows[0]["attempts"] >= 2 and "https is required" in (rows[0]["last_error"] or "")

        await eventually(refused, what="delivery refused by the policy")
    assert sink.sink.requests == []  # not one byte reached it


@pytest.mark.parametrize(
    "address",
    # Loopback, and the IPv6 forms that embed or translate to it (NAT64, IPv4-translated,
    # IPv4-compatible, 6to4, IPv4-mapped).
    ["127.0.0.1", "64:ff9b::7f00:1", "::ffff:0:7f00:1", "::127.0.0.1", "2002:7f00:1::1", "::ffff:127.0.0.1"],
)
async def test_a_name_that_starts_resolving_to_loopback_is_never_connected_to(
    js: JetStreamContext, notifier_factory: NotifierFactory, address: str
) -> None:
    """DNS rebinding: public at registration, loopback at delivery; the connection is never opened."""
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    # A listener on each loopback address the refused address could reach if the policy let it through.
    listeners = [await asyncio.start_server(count, "127.0.0.1", 0)]
    port = listeners[0].sockets[0].getsockname()[1]
    with contextlib.suppress(OSError):
        listeners.append(await asyncio.start_server(count, "::1", port))
    answers = {"rebind.example": ["93.184.216.34"]}

    async def resolve(host: str, _port: int) -> list[str]:
        return answers[host]

    try:
        async with notifier_factory(resolve=resolve) as notifier:
            await notifier.create_channel(name="rebind", url=f"https://rebind.example:{port}/hook")
            answers["rebind.example"] = [address]
            await publish(js, availability("R", 1, 1))

            async def refused() -> bool:
                rows = await notifier.deliveries("rebind")
                error = rows[0]["last_error"] or "" if rows else ""
                return f"resolves to {address}, " in error and "127.0.0.1, a loopback address" in error

            await eventually(refused, what="connection refused by the policy")
    finally:
        for listener in listeners:
            listener.close()
            await listener.wait_closed()
    assert connections == 0
