"""The console app in process, its peers absent: login and the session cookie, pages behind the login,
every action refused without the session's CSRF token, assets served locally, secrets never shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from libs.config import NatsSettings, StockwireSettings
from services.console.app import HERE, HTMX, build_app
from services.console.auth import COOKIE
from services.console.settings import ConsoleSettings
from services.console.stream import StoredEvent, redact

TOKEN = "console-test-token"
# Nothing listens on these ports: the pages must still render, saying what they could not read.
NOWHERE = "http://127.0.0.1:9"
ACTIONS = [
    "/logout",
    "/channels/storefront/enabled",
    "/channels/storefront/settings",
    "/channels/storefront/replay",
    "/deliveries/1/retry",
    "/deadletters/replay",
    "/deadletters/discard",
]
PAGES = ["/", "/overview/panel", "/events", "/skus", "/skus/A", "/channels", "/channels/x", "/deadletters", "/actions"]


def _app(tmp_path: Path) -> Litestar:
    shared = StockwireSettings(
        data_dir=str(tmp_path), admin_token=TOKEN, nats=NatsSettings(servers=["nats://127.0.0.1:9"])
    )
    peers = {k: NOWHERE for k in ("ingress_url", "inventory_url", "channel_notifier_url", "outbox_relay_url")}
    return build_app(shared, ConsoleSettings(request_timeout_s=0.5, **peers))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    with TestClient(_app(tmp_path), raise_server_exceptions=True) as test_client:
        yield test_client


def _login(client: TestClient[Litestar]) -> str:
    answer = client.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303
    page = client.get("/actions")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match
    return match.group(1)


def test_pages_need_a_login_and_say_where_to_log_in(client: TestClient[Litestar]) -> None:
    for page in PAGES:
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("/login?next=")
    assert client.get("/overview/panel", headers={"HX-Request": "true"}).headers["HX-Redirect"].startswith("/login")
    assert client.get("/login").status_code == 200


def test_a_wrong_token_is_refused_and_the_right_one_sets_a_strict_http_only_cookie(
    client: TestClient[Litestar],
) -> None:
    wrong = client.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    right = client.post("/login", data={"token": TOKEN, "next": "/channels"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/channels"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Path=/" in cookie
    # An open redirect is not offered: a next that leaves the console goes home.
    away = client.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert away.headers["location"] == "/"


def test_every_page_renders_when_the_other_services_are_away(client: TestClient[Litestar]) -> None:
    _login(client)
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code in (200, 502), (page, answer.status_code)
        assert "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize("action", ACTIONS)
def test_an_action_without_the_csrf_token_is_refused(client: TestClient[Litestar], action: str) -> None:
    assert client.post(action, data={}, follow_redirects=False).status_code == 403  # no session at all
    csrf = _login(client)
    assert client.post(action, data={}, follow_redirects=False).status_code == 403
    assert client.post(action, data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.post(action, data={"csrf": csrf}, follow_redirects=False).status_code != 403
    if action != "/logout":  # the header htmx sends does as well as the form field
        assert client.post(action, headers={"X-CSRF-Token": csrf}, follow_redirects=False).status_code != 403


def test_actions_are_recorded_with_who_and_when(client: TestClient[Litestar], tmp_path: Path) -> None:
    csrf = _login(client)
    client.post("/deliveries/7/retry", data={"csrf": csrf, "channel": "storefront"}, follow_redirects=False)
    client.post("/deliveries/7/retry", data={}, follow_redirects=False)
    lines = (tmp_path / "console-actions.jsonl").read_text().splitlines()
    assert any('"action": "delivery.retry"' in line and '"target": "7"' in line for line in lines)
    assert any('"action": "refused"' in line and '"status": 403' in line for line in lines)
    assert all('"who": "admin (session ' in line and '"at": "20' in line for line in lines[1:])
    assert "delivery.retry" in client.get("/actions").text


def test_discarding_dead_letters_needs_the_csrf_token_and_a_reason(
    client: TestClient[Litestar], tmp_path: Path
) -> None:
    csrf = _login(client)
    forged = client.post("/deadletters/discard", data={"seq": "3", "discard_reason": "test order"})
    assert forged.status_code == 403
    for reason in ("", "   "):
        answer = client.post(
            "/deadletters/discard", data={"csrf": csrf, "seq": "3", "discard_reason": reason}, follow_redirects=False
        )
        assert answer.status_code == 303 and "give+the+reason" in answer.headers["location"]
        assert answer.headers["location"].startswith("/deadletters/3?") and "ok=0" in answer.headers["location"]
    chosen = client.post("/deadletters/discard", data={"csrf": csrf, "discard_reason": "x"}, follow_redirects=False)
    assert "choose+the+dead+letters" in chosen.headers["location"]
    # With a reason the call goes to inventory (away here): refused by it, and recorded like a replay.
    answer = client.post(
        "/deadletters/discard",
        data={"csrf": csrf, "seq": ["3", "4"], "discard_reason": "test orders"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "ok=0" in answer.headers["location"]
    lines = (tmp_path / "console-actions.jsonl").read_text().splitlines()
    assert any('"action": "deadletter.discard"' in line and '"target": "3,4"' in line for line in lines)
    assert any('"action": "refused"' in line and "/deadletters/discard" in line for line in lines)
    page = client.get("/deadletters/3")
    assert page.status_code == 200


def test_assets_are_served_locally_and_no_page_names_another_host(client: TestClient[Litestar]) -> None:
    assert client.get(f"/static/{HTMX}").status_code == 200
    assert client.get("/static/console.css").status_code == 200
    assert (HERE / "static" / "htmx-LICENSE").is_file()
    for template in (HERE / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), template.name


def test_secrets_in_a_body_or_its_headers_are_hidden() -> None:
    event = StoredEvent(
        1,
        "commerce.shop.order.created",
        {"Stockwire-Source": "shop", "X-Webhook-Signature": "abc"},
        b'{"id": "e", "data": {"api_key": "k", "nested": [{"client_secret": "s", "sku": "A"}]}}',
    )
    shown = event.pretty_body()
    assert '"k"' not in shown and '"s"' not in shown and '"sku": "A"' in shown
    assert event.shown_headers()["X-Webhook-Signature"] != "abc"
    assert redact({"password": "p", "lines": ({"token": 1},)}) == {
        "password": "••• (hidden)",
        "lines": [{"token": "••• (hidden)"}],
    }


def test_every_post_route_is_among_the_actions_checked_above(tmp_path: Path) -> None:
    from litestar.routes import HTTPRoute

    posts = {
        route.path.replace("{name:str}", "storefront").replace("{delivery_id:int}", "1")
        for route in _app(tmp_path).routes
        if isinstance(route, HTTPRoute) and "POST" in route.methods
    }
    assert posts - {"/login"} == set(ACTIONS)
