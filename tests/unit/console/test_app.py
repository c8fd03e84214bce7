"""The console app in process, its peers absent: login and the session cookie, pages behind the login,
every action refused without the session's CSRF token, assets served locally, secrets never shown."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from libs.config import NatsSettings, StockwireSettings
from services.console.app import HERE, HTMX, build_app
from services.console.auth import COOKIE, LOGIN_COOKIE, LoginForms, LoginThrottle
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


def _login_csrf(client: TestClient[Litestar]) -> str:
    """The login form's CSRF token, as GET /login puts it in the form (and its cookie in the client)."""
    match = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', client.get("/login").text)
    assert match
    return match.group(1)


def _login(client: TestClient[Litestar]) -> str:
    answer = client.post(
        "/login", data={"token": TOKEN, "next": "/", "csrf": _login_csrf(client)}, follow_redirects=False
    )
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
    wrong = client.post("/login", data={"token": "nope", "csrf": _login_csrf(client)}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    data = {"token": TOKEN, "next": "/channels", "csrf": _login_csrf(client)}
    right = client.post("/login", data=data, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/channels"
    (cookie,) = [c for c in right.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
    # The login form's token is spent.
    assert any(c.startswith(f"{LOGIN_COOKIE}=") and "Max-Age=0" in c for c in right.headers.get_list("set-cookie"))
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Path=/" in cookie
    # An open redirect is not offered: a next that leaves the console goes home.
    data = {"token": TOKEN, "next": "//evil.example/", "csrf": _login_csrf(client)}
    away = client.post("/login", data=data, follow_redirects=False)
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


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_is_recorded_with_who_and_when_whatever_its_outcome(
    client: TestClient[Litestar], tmp_path: Path, action: str
) -> None:
    """An action with the CSRF token and nothing else: refused by the console (its form incomplete) or by
    the service it asks (away here), it leaves one record naming who, when, what and how it ended."""
    csrf = _login(client)
    path = tmp_path / "console-actions.jsonl"
    before = len(path.read_text().splitlines())
    answer = client.post(action, data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()[before:]]
    assert entry["who"].startswith("admin (session ") and entry["at"].startswith("20"), entry
    assert entry["action"] not in ("", "refused") and entry["target"], entry
    assert entry["status"] == 200 if action == "/logout" else entry["status"] >= 400, entry
    assert action == "/logout" or entry["detail"], entry


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
    page = client.get("/deadletters/3")  # inventory away: the page says so, as a SKU's page does
    assert page.status_code == 502 and "text/html" in page.headers["content-type"]


@pytest.mark.parametrize("seq", ["0", "-1", "99999999999999999999999", str(2**63)])
def test_a_sequence_no_stream_could_hold_is_a_404_page_without_asking(client: TestClient[Litestar], seq: str) -> None:
    _login(client)  # JetStream and inventory are away: asking either would answer 503 or 502
    for path in (f"/events/{seq}", f"/deadletters/{seq}"):
        page = client.get(path)
        assert page.status_code == 404 and page.headers["content-type"] == "text/html; charset=utf-8", path


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


def test_a_login_without_the_login_forms_csrf_token_is_refused(client: TestClient[Litestar], tmp_path: Path) -> None:
    """A page elsewhere cannot log the browser in (login CSRF): the form's token must match its cookie,
    which only GET /login sets, signed by this process."""
    page = client.get("/login")
    (cookie,) = page.headers.get_list("set-cookie")
    assert cookie.startswith(f"{LOGIN_COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Path=/login" in cookie
    token = client.cookies[LOGIN_COOKIE]
    assert f'name="csrf" value="{token}" id="login-csrf"' in page.text
    forged = [
        {"token": TOKEN},  # no form token
        {"token": TOKEN, "csrf": "forged"},  # not the cookie's
        {"token": TOKEN, "csrf": token + "x"},
    ]
    for data in forged:
        answer = client.post("/login", data=data, follow_redirects=False)
        assert answer.status_code == 403 and "did not come from this console" in answer.text, data
    # A cookie and field that match but were not signed by this console (planted by another site).
    planted = LoginForms().issue(0.0)
    client.cookies.set(LOGIN_COOKIE, planted, path="/login")
    answer = client.post("/login", data={"token": TOKEN, "csrf": planted}, follow_redirects=False)
    assert answer.status_code == 403
    # A refused form comes back with a fresh token that works.
    fresh = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', answer.text)
    assert fresh and fresh.group(1) != planted
    assert answer.headers["set-cookie"].startswith(f"{LOGIN_COOKIE}={fresh.group(1)};")
    client.cookies.clear()  # the planted one aside (the test client keeps both)
    client.cookies.set(LOGIN_COOKIE, fresh.group(1))
    answer = client.post("/login", data={"token": TOKEN, "csrf": fresh.group(1)}, follow_redirects=False)
    assert answer.status_code == 303 and COOKIE in answer.headers["set-cookie"]
    lines = (tmp_path / "console-actions.jsonl").read_text().splitlines()
    assert sum('"status": 403' in line and "login CSRF" in line for line in lines) == 4


def test_failed_logins_are_limited_per_client_address(client: TestClient[Litestar], tmp_path: Path) -> None:
    for attempt in range(5):
        answer = client.post("/login", data={"token": "guess", "csrf": _login_csrf(client)}, follow_redirects=False)
        assert answer.status_code == 401, attempt
    # The sixth within the minute waits, the right token too, and says for how long.
    for token in ("guess", TOKEN):
        answer = client.post("/login", data={"token": token, "csrf": _login_csrf(client)}, follow_redirects=False)
        assert answer.status_code == 429 and "Too many failed logins" in answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert not [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
    lines = (tmp_path / "console-actions.jsonl").read_text().splitlines()
    assert sum('"status": 401' in line for line in lines) == 5
    assert sum('"status": 429' in line for line in lines) == 2


def test_the_login_throttle_counts_failures_within_its_window_per_address() -> None:
    throttle = LoginThrottle(limit=3, window_s=60.0, max_addresses=2)
    assert throttle.retry_after("a", 0.0) is None
    for at in (0.0, 10.0, 20.0):
        throttle.failed("a", at)
    assert throttle.retry_after("a", 30.0) == 30.0  # the first failure leaves the window at 60
    assert throttle.retry_after("b", 30.0) is None  # another address is not held back
    assert throttle.retry_after("a", 60.0) is None
    assert throttle.failed("a", 61.0) == 3  # 10, 20 and 61
    throttle.forget("a")
    assert throttle.retry_after("a", 62.0) is None
    # Bounded: a flood of addresses forgets the ones that failed longest ago.
    for n, address in enumerate(["x", "y", "z"]):
        throttle.failed(address, 100.0 + n)
    assert set(throttle.failures) == {"y", "z"}


def test_a_login_forms_token_is_signed_and_expires() -> None:
    forms = LoginForms(ttl_s=60.0)
    token = forms.issue(1000.0)
    assert forms.valid(token, 1000.0) and forms.valid(token, 1059.0)
    assert not forms.valid(token, 1060.0) and not forms.valid(token, 999.0 - 1)
    assert forms.accepts(token, token, 1001.0)
    assert not forms.accepts(token, None, 1001.0) and not forms.accepts(None, token, 1001.0)
    assert not LoginForms().valid(token, 1001.0), "another process's key"
    for bad in ("", "x", "1000.abc", token.replace(".", "", 1), "9" * 300):
        assert not forms.valid(bad, 1001.0)


def test_the_ledger_trails_chain_status_names_the_first_broken_link() -> None:
    from services.console.app import _chain_status

    rows = [{"version": v, "hash": f"h{v}", "prev_hash": f"h{v - 1}"} for v in range(1, 5)]
    assert _chain_status(rows) == (True, "4 rows linked, each naming the hash of the one before")
    rows[2]["prev_hash"] = "tampered"
    ok, status = _chain_status(rows)
    assert not ok and status.startswith("broken at version 3: its prev_hash is not the hash of version 2")
    assert _chain_status([]) == (True, "0 rows linked, each naming the hash of the one before")


def test_the_console_reads_no_store() -> None:
    """Through the other services' HTTP APIs and JetStream only: no module of it imports a store, a
    database driver or another service's package."""
    drivers = r"sqlalchemy|asyncpg|psycopg|sqlite3|libs\.store"
    forbidden = re.compile(rf"^\s*(from|import)\s+({drivers}|services\.(?!console))")
    for module in HERE.glob("*.py"):
        for line in module.read_text().splitlines():
            assert not forbidden.match(line), f"{module.name}: {line}"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("since=yesterday", ["since 'yesterday'"]),
        ("until=2026-13-01", ["until '2026-13-01'"]),
        ("since=12%2F08%2F2026&until=noon", ["since '12/08/2026'", "until 'noon'"]),
    ],
)
def test_an_events_search_with_a_time_it_cannot_read_says_so(
    client: TestClient[Litestar], query: str, named: list[str]
) -> None:
    _login(client)
    response = client.get(f"/events?{query}")
    assert response.status_code == 400
    shown = html.unescape(response.text)
    for what in named:
        assert what in shown
    assert "is not a date and time" in response.text


def test_an_events_search_with_times_it_reads_is_no_error(client: TestClient[Litestar]) -> None:
    _login(client)
    response = client.get("/events?since=2026-12-08T10:00&until=2026-12-08T11:00%2B01:00")
    assert response.status_code == 200
    assert "is not a date and time" not in response.text


def test_every_cookie_the_console_sets_or_removes_is_http_only_and_strict(client: TestClient[Litestar]) -> None:
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', form.text)
    assert csrf
    login = client.post("/login", data={"token": TOKEN, "next": "/", "csrf": csrf.group(1)}, follow_redirects=False)
    page = client.get("/actions")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    logout = client.post("/logout", data={"csrf": token.group(1)}, follow_redirects=False)
    assert logout.status_code == 303
    cookies = [c for answer in (form, login, logout) for c in answer.headers.get_list("set-cookie")]
    removed = [c for c in cookies if "Max-Age=0" in c]
    assert len(removed) == 2  # the login form's token at login, the session at logout
    for cookie in cookies:
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower(), cookie


def test_an_unreadable_bound_is_shown_back_clipped(client: TestClient[Litestar]) -> None:
    _login(client)
    response = client.get("/events", params={"since": "x" * 20_000})
    assert response.status_code == 400
    assert "x" * 65 not in response.text and "x" * 64 + "…" in html.unescape(response.text)
