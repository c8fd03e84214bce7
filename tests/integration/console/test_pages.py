"""The console's pages of one thing, against a real nats-server and the real inventory and channel-notifier
apps as its peers: what does not exist is a 404 page, whatever number or name the path holds; never a 500."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.config import NatsSettings, StockwireSettings
from libs.natsserver import NatsServer
from services.channel_notifier.app import build_app as build_notifier
from services.channel_notifier.settings import ChannelNotifierSettings
from services.console.app import build_app as build_console
from services.console.settings import ConsoleSettings
from services.inventory.app import build_app as build_inventory
from services.inventory.settings import InventorySettings
from tests.support import commerce_headers, dead_letter, eventually

TOKEN = "console-pages-admin-token"
# Paths that hold a number no stream could ever have stored, and ones that could but are not there.
NEVER = ["0", "-1", "99999999999999999999999", str(2**63)]
ABSENT = ["99999", str(2**63 - 1)]


class _ByHost(httpx.AsyncBaseTransport):
    """The console's HTTP client routed to in-process apps by the host of each URL."""

    def __init__(self, peers: Mapping[str, AsyncTestClient[Litestar]]) -> None:
        self.peers = peers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        peer = self.peers[request.url.host]
        answer = await peer.request(request.method, request.url.raw_path.decode(), headers=request.headers)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _shared(nats_url: str, data_dir: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        admin_token=TOKEN,
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
    )


@pytest.fixture
async def console(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    shared = _shared(nats_url=nats_server.url, data_dir=data_dir)
    peers = {
        "inventory.test": build_inventory(shared, InventorySettings(consume=False, sweep_interval_s=3600.0)),
        "channel-notifier.test": build_notifier(shared, ChannelNotifierSettings()),
    }
    settings = ConsoleSettings(
        ingress_url="http://ingress.test",
        inventory_url="http://inventory.test",
        channel_notifier_url="http://channel-notifier.test",
        outbox_relay_url="http://outbox-relay.test",
    )
    app = build_console(shared, settings)
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(AsyncTestClient(app=peer)) for name, peer in peers.items()}
        client = await stack.enter_async_context(AsyncTestClient(app=app))
        await app.state.console.peers.client.aclose()
        app.state.console.peers.client = httpx.AsyncClient(
            transport=_ByHost(clients), headers={"authorization": f"Bearer {TOKEN}"}
        )
        await eventually(lambda: _ready(client), what="console connected to NATS")
        await _login(client)
        yield client


async def _ready(client: AsyncTestClient[Litestar]) -> bool:
    return bool((await client.get("/readyz")).status_code == 200)


async def _login(client: AsyncTestClient[Litestar]) -> None:
    form = (await client.get("/login")).text
    match = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', form)
    assert match
    answer = await client.post("/login", data={"token": TOKEN, "next": "/", "csrf": match.group(1)})
    assert answer.status_code in (200, 303), answer.text


def _is_page(answer: httpx.Response, status: int) -> bool:
    return answer.status_code == status and answer.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("seq", NEVER + ABSENT)
async def test_an_event_that_is_not_stored_is_a_404_page(console: AsyncTestClient[Litestar], seq: str) -> None:
    answer = await console.get(f"/events/{seq}")
    assert _is_page(answer, 404), (answer.status_code, answer.text[:300])
    assert f"No COMMERCE event {seq}" in answer.text


async def test_a_stored_event_is_shown(console: AsyncTestClient[Litestar], js: JetStreamContext) -> None:
    body = json.dumps({"id": "e1", "event_type": "order.created", "data": {"order_id": "o-1"}}).encode()
    ack = await js.publish("commerce.shop.order.created", body, headers=commerce_headers("e1"))
    assert _is_page(await console.get(f"/events/{ack.seq}"), 200)


@pytest.mark.parametrize("seq", NEVER + ABSENT)
async def test_a_dead_letter_that_is_not_there_is_a_404_page(console: AsyncTestClient[Litestar], seq: str) -> None:
    answer = await console.get(f"/deadletters/{seq}")
    assert _is_page(answer, 404), (answer.status_code, answer.text[:300])


async def test_a_dead_letter_that_is_there_is_shown(console: AsyncTestClient[Litestar], js: JetStreamContext) -> None:
    seq = await dead_letter(js, event_id="dl-1")
    answer = await console.get(f"/deadletters/{seq}")
    assert _is_page(answer, 200) and 'id="dl-reason"' in answer.text


@pytest.mark.parametrize("path", ["/channels/nope", "/skus/nope", "/channels/x%0aFORGED", "/skus/%00"])
async def test_a_channel_or_sku_that_does_not_exist_is_a_404_page(
    console: AsyncTestClient[Litestar], path: str
) -> None:
    assert _is_page(await console.get(path), 404)


@pytest.mark.parametrize("start_seq", ["0", "-1", "99999999999999999999999"])
async def test_a_dead_letter_listing_from_any_number_is_no_500(
    console: AsyncTestClient[Litestar], start_seq: str
) -> None:
    answer = await console.get("/deadletters", params={"start_seq": start_seq})
    assert answer.status_code < 500 and "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize("path", ["/events/abc", "/deadletters/1.5", "/nope"])
async def test_a_path_without_a_page_is_a_404_page_for_a_browser(console: AsyncTestClient[Litestar], path: str) -> None:
    page = await console.get(path, headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert _is_page(page, 404) and "no page at" in page.text
    other = await console.get(path, headers={"accept": "application/json"})
    assert other.status_code == 404 and other.json()["error"] == "not_found"
