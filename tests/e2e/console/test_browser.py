"""The console in a real headless Chromium against the real services: log in, find an order and its
ledger rows, retry a failed delivery and see the new attempt, replay a dead letter and see it applied,
discard one with a reason, and a forged action (or login) without the CSRF token refused. Each page is saved under
.data/screenshots/."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from libs.bus import connect
from libs.config import NatsSettings
from stockwire.stack import Stack, dev_source_secret
from tests.e2e.console.conftest import FlakyEndpoint
from tests.support import ce_headers, dead_letter

pytestmark = pytest.mark.e2e

T = TypeVar("T")


def _until(probe: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def _send(stack: Stack, event_type: str, event_id: str, data: dict[str, Any]) -> None:
    body = json.dumps(
        {"id": event_id, "event_type": event_type, "created_at": "2026-12-01T10:00:00Z", "data": data}
    ).encode()
    secret = dev_source_secret(stack.data_dir, "shop")
    answer = httpx.post(f"{stack.url('ingress')}/webhooks/shop", content=body, headers=ce_headers(secret, body))
    assert answer.status_code == 200, answer.text


def _login(browser: Any, stack: Stack, screenshots: Path | None = None) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.url('console')}/login")
    if screenshots is not None:
        browser.save_screenshot(str(screenshots / "login.png"))
    browser.find_element(By.ID, "token").send_keys(stack.admin_token)
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    _until(lambda: browser.find_elements(By.ID, "overview"), "the overview after logging in")


def _text(browser: Any, element_id: str) -> str:
    """The element's text, read in the page (the overview's panel is replaced under a held reference)."""
    script = "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';"
    return str(browser.execute_script(script, element_id))


def _service_rows(browser: Any) -> list[str]:
    script = "return Array.from(document.querySelectorAll('tr[data-service]')).map(r => r.innerText);"
    return list(browser.execute_script(script))


def test_log_in_and_see_the_overview_refresh(browser: Any, console_stack: Stack, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console_stack.url("console"))
    assert "/login" in browser.current_url, "a page asks for the login first"
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    _until(lambda: "not the admin token" in _text(browser, "login-error"), "the wrong token refused")
    _login(browser, console_stack, screenshots)
    cookie = browser.get_cookie("stockwire_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Every service is live and ready, and the panel refreshes itself (htmx polling).
    rows = _until(
        lambda: (r := _service_rows(browser)) and all("not ready" not in x and "\tno\t" not in x for x in r) and r,
        "every service ready",
    )
    assert len(rows) == 4
    first = _text(browser, "overview")
    _until(lambda: _text(browser, "overview") != first and "webhooks in" in _text(browser, "overview"), "a refresh")
    durables = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-durable]')).map(r => r.dataset.durable);"
    )
    assert any("inventory" in d for d in durables), f"consumer lag names the inventory durable: {durables}"
    # Webhooks coming in: webhooks/s and events applied/s rise above nothing at a refresh.
    sent = itertools.count()

    def rising() -> tuple[str, str] | None:
        _send(console_stack, "inventory.received", f"rate-{next(sent)}", {"sku": "RATE-1", "qty": 1})
        rates = (_text(browser, "webhooks-rate"), _text(browser, "applied-rate"))
        return rates if "0.0/s" not in rates else None

    _until(rising, "webhooks/s and events applied/s above 0")
    browser.save_screenshot(str(screenshots / "overview.png"))


def _event_ids(browser: Any) -> list[str]:
    """The event ids the events page lists, newest first."""
    script = "return Array.from(document.querySelectorAll('#events tbody tr')).map(r => r.cells[4]?.innerText || '')"
    return [i for i in browser.execute_script(script) if i]


def test_find_an_order_by_number_and_see_its_ledger_rows(browser: Any, console_stack: Stack, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    _send(console_stack, "inventory.received", "rcv-tee", {"sku": "TEE-1", "qty": 10})
    _send(console_stack, "order.created", "ord-100", {"order_id": "o-100", "lines": [{"sku": "TEE-1", "qty": 3}]})
    _login(browser, console_stack)
    browser.find_element(By.LINK_TEXT, "Events").click()
    _until(lambda: browser.current_url.endswith("/events"), "the events page")
    browser.find_element(By.ID, "f-order").send_keys("o-100")
    browser.find_element(By.ID, "search").click()
    _until(lambda: "order" in browser.current_url, "the search's page")

    def ledger() -> str:
        text = _text(browser, "order-ledger")
        if "reserved" not in text:
            browser.refresh()
        return text if "reserved" in text else ""

    text = _until(ledger, "the order's ledger rows")
    assert "TEE-1" in text and "shop:ord-100" in text
    assert "Order o-100" in _text(browser, "order")
    browser.save_screenshot(str(screenshots / "events-order.png"))
    # The search by SKU and event type, then the same from an hour ahead (nothing stored then).
    browser.get(f"{console_stack.url('console')}/events")
    browser.find_element(By.ID, "f-sku").send_keys("TEE-1")
    browser.find_element(By.ID, "f-type").send_keys("order.created")
    browser.find_element(By.ID, "search").click()
    _until(lambda: "sku=TEE-1" in browser.current_url, "the search by SKU and type")
    assert _event_ids(browser) == ["ord-100"]
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    browser.execute_script("document.getElementById('f-since').value = arguments[0];", ahead)
    browser.find_element(By.ID, "search").click()
    _until(lambda: "since=" in browser.current_url, "the search from an hour ahead")
    # The address changes before the new page is in: its answer is waited for, then read.
    _until(lambda: "Nothing found" in _text(browser, "events"), "the search's empty answer")
    assert _event_ids(browser) == []
    browser.get(f"{console_stack.url('console')}/events?order=o-100")
    # The event's own page: its body, headers, profile mapping and the ledger rows it caused.
    browser.find_element(By.CSS_SELECTOR, "#events a").click()
    _until(lambda: _text(browser, "event-body"), "the event's page")
    assert '"order_id": "o-100"' in _text(browser, "event-body")
    assert '"profile": "stockwire"' in _text(browser, "event-mapping")
    assert "Stockwire-Source\tshop" in _text(browser, "event-headers")
    assert "reserved" in _text(browser, "event-ledger")
    emitted = _text(browser, "event-emitted")
    assert "inventory.reserved." in emitted and "inventory.availability." in emitted
    browser.save_screenshot(str(screenshots / "event.png"))
    browser.get(f"{console_stack.url('console')}/skus/TEE-1")
    assert _text(browser, "level-on_hand") == "10" and _text(browser, "level-reserved") == "3"
    assert "linked" in _text(browser, "chain-status")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart path.line")
    browser.save_screenshot(str(screenshots / "sku.png"))


def test_retry_a_failed_delivery_and_see_the_attempt_appear(
    browser: Any, console_stack: Stack, flaky_endpoint: FlakyEndpoint, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    notifier = httpx.Client(
        base_url=console_stack.url("channel-notifier"),
        headers={"authorization": f"Bearer {console_stack.admin_token}"},
    )
    created = notifier.post(
        "/channels",
        json={"name": "flaky", "kind": "webhook", "url": flaky_endpoint.url, "filters": {"skus": ["RETRY-*"]}},
    )
    assert created.status_code == 201, created.text
    _send(console_stack, "inventory.received", "rcv-retry", {"sku": "RETRY-1", "qty": 4})

    def failed() -> dict[str, Any] | None:
        rows = notifier.get("/channels/flaky/deliveries", params={"status": "failed"}).json()["deliveries"]
        return rows[0] if rows else None

    delivery = _until(failed, "the delivery given up after its attempts")
    sent_before = len(flaky_endpoint.received)
    flaky_endpoint.failing = False
    _login(browser, console_stack)
    browser.get(f"{console_stack.url('console')}/channels/flaky")
    row = browser.find_element(By.ID, f"delivery-{delivery['id']}")
    assert row.get_attribute("data-status") == "failed"
    assert row.find_element(By.CSS_SELECTOR, ".last-status").text == "500"
    assert row.find_element(By.CSS_SELECTOR, ".attempts").text == "2"
    # Each attempt listed with its answer, latency and error, newest first.
    before = _attempt_rows(row)
    assert [(a["seq"], a["outcome"], a["status"]) for a in before] == [
        ("2", "http_error", "500"),
        ("1", "http_error", "500"),
    ]
    assert all(a["error"] == "HTTP 500" and a["latency"].endswith(" ms") and a["time"] for a in before)
    browser.save_screenshot(str(screenshots / "channel-failed.png"))
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _until(
        lambda: (
            "queued again"
            in browser.execute_script("const e = document.querySelector('.flash'); return e ? e.innerText : '';")
        ),
        "the retry's answer",
    )

    def delivered() -> bool:
        browser.refresh()
        row = browser.find_element(By.ID, f"delivery-{delivery['id']}")
        return row.get_attribute("data-status") == "delivered"

    _until(delivered, "the retried delivery delivered")
    row = browser.find_element(By.ID, f"delivery-{delivery['id']}")
    # The new attempt: its answer (200) where the failed one's 500 was; the failure count starts afresh.
    assert row.find_element(By.CSS_SELECTOR, ".last-status").text == "200"
    assert row.find_element(By.CSS_SELECTOR, ".attempts").text == "0"
    assert flaky_endpoint.received[sent_before:] == [200], "one more request reached the channel"
    # ... and a new attempt row above the two failed ones, which are still listed.
    after = _attempt_rows(row)
    assert [(a["seq"], a["outcome"], a["status"], a["error"]) for a in after[:1]] == [("3", "delivered", "200", "")]
    assert after[1:] == before
    browser.save_screenshot(str(screenshots / "channel-retried.png"))
    # The channel's buffer, changed from its page.
    field = browser.find_element(By.ID, "channel-buffer")
    field.clear()
    field.send_keys("2")
    browser.find_element(By.ID, "save-settings").click()
    _until(lambda: notifier.get("/channels/flaky").json()["buffer"] == 2, "the buffer saved")
    browser.get(f"{console_stack.url('console')}/actions")
    assert "delivery.retry" in _text(browser, "actions")
    browser.save_screenshot(str(screenshots / "actions.png"))


def test_replay_a_channel_since_a_time_and_see_it_sent_again(
    browser: Any, console_stack: Stack, flaky_endpoint: FlakyEndpoint, screenshots: Path
) -> None:
    """The channel of the test above, its delivery delivered: a replay since an hour ago sends that SKU's
    newest availability again, a new attempt on its row, and the replay is among the actions."""
    from selenium.webdriver.common.by import By

    notifier = httpx.Client(
        base_url=console_stack.url("channel-notifier"),
        headers={"authorization": f"Bearer {console_stack.admin_token}"},
    )

    def delivered() -> dict[str, Any] | None:
        # Delivered again after the buffer's change above, which sends each SKU again.
        (delivery,) = notifier.get("/channels/flaky/deliveries").json()["deliveries"]
        return delivery if delivery["status"] == "delivered" else None

    delivery = _until(delivered, "the channel's delivery delivered")
    assert delivery["sku"] == "RETRY-1"
    sent_before = len(flaky_endpoint.received)
    _login(browser, console_stack)
    browser.get(f"{console_stack.url('console')}/channels/flaky")
    seqs_before = [a["seq"] for a in _attempt_rows(browser.find_element(By.ID, f"delivery-{delivery['id']}"))]
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    field = browser.find_element(By.ID, "replay-since")
    # A datetime-local field's typing order follows the browser's locale: its value is set as a picker would.
    browser.execute_script("arguments[0].value = arguments[1];", field, since)
    browser.find_element(By.ID, "replay-channel").click()
    flash = _until(lambda: _text(browser, "flash"), "the replay's answer")
    assert f"replay since {since.replace('T', ' ')} UTC" in flash and "1 SKU queued again" in flash, flash

    def sent_again() -> list[dict[str, str]]:
        browser.refresh()
        row = browser.find_element(By.ID, f"delivery-{delivery['id']}")
        attempts = _attempt_rows(row)
        fresh = row.get_attribute("data-status") == "delivered" and attempts and attempts[0]["seq"] not in seqs_before
        return attempts if fresh else []

    attempts = _until(sent_again, "the replayed delivery sent again")
    assert (attempts[0]["outcome"], attempts[0]["status"]) == ("delivered", "200")
    assert flaky_endpoint.received[sent_before:] == [200], "the channel got the SKU once more"
    browser.save_screenshot(str(screenshots / "channel-replayed.png"))
    # Disabled and enabled again from its page.
    for status, enabled in (("disabled", False), ("enabled", True)):
        browser.find_element(By.ID, "toggle-enabled").click()
        _until(lambda: _text(browser, "channel-enabled") == status, f"the channel {status}")  # noqa: B023
        assert notifier.get("/channels/flaky").json()["enabled"] is enabled
    # The event that moved the SKU lists the channel's delivery of it.
    browser.get(f"{console_stack.url('console')}/events?sku=RETRY-1")
    browser.find_element(By.CSS_SELECTOR, "#events a").click()
    _until(lambda: _text(browser, "event-deliveries"), "the event's page")
    assert "flaky\tRETRY-1\tdelivered" in _text(browser, "event-deliveries")
    browser.get(f"{console_stack.url('console')}/actions")
    actions = _text(browser, "actions")
    assert all(f"channel.{what}" in actions for what in ("replay", "disable", "enable")), actions


def _attempt_rows(row: Any) -> list[dict[str, str]]:
    """The attempts a delivery's row lists, newest first: seq, outcome, status, latency, time, error."""
    from selenium.webdriver.common.by import By

    def text(item: Any, selector: str) -> str:
        found = item.find_elements(By.CSS_SELECTOR, selector)
        return str(found[0].text) if found else ""

    return [
        {
            "seq": item.get_attribute("data-seq"),
            "outcome": item.get_attribute("data-outcome"),
            "status": text(item, ".attempt-status"),
            "latency": text(item, ".attempt-latency"),
            "time": text(item, ".attempt-time"),
            "error": text(item, ".attempt-error"),
        }
        for item in row.find_elements(By.CSS_SELECTOR, "li.attempt")
    ]


async def _dead_letters_of_valid_events(stack: Stack, reason: str, *received: tuple[str, str, int]) -> list[int]:
    """A dead letter (its DEADLETTER sequence) of each ``inventory.received`` (event id, SKU, quantity)."""
    from tests.support import commerce_headers

    nc = await connect(NatsSettings(servers=[str(stack.nats_url)]), "console-test")
    try:
        seqs = []
        for event_id, sku, qty in received:
            body = json.dumps(
                {
                    "id": event_id,
                    "event_type": "inventory.received",
                    "created_at": "2026-12-01T10:00:00Z",
                    "data": {"sku": sku, "qty": qty},
                }
            ).encode()
            seqs.append(
                await dead_letter(
                    nc.jetstream(),
                    event_id=event_id,
                    event_type="inventory.received",
                    reason=reason,
                    body=body,
                    original=commerce_headers(event_id, "inventory.received"),
                )
            )
        return seqs
    finally:
        await nc.close()


def test_replay_a_dead_letter_and_see_it_applied(browser: Any, console_stack: Stack, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    (seq,) = asyncio.run(
        _dead_letters_of_valid_events(console_stack, "store unavailable (a test's dead letter)", ("dl-1", "DL-SKU", 5))
    )
    _login(browser, console_stack)
    browser.find_element(By.LINK_TEXT, "Dead letters").click()
    _until(lambda: browser.current_url.endswith("/deadletters"), "the dead letters page")
    assert "store unavailable" in browser.find_element(By.ID, f"dl-{seq}").text
    browser.save_screenshot(str(screenshots / "deadletters.png"))
    browser.find_element(By.LINK_TEXT, str(seq)).click()
    _until(lambda: _text(browser, "dl-body"), "the dead letter's page")
    assert '"sku": "DL-SKU"' in _text(browser, "dl-body")
    browser.save_screenshot(str(screenshots / "deadletter.png"))
    browser.find_element(By.ID, "replay-one").click()
    _until(lambda: "replayed: 1" in _text(browser, "replay-summary"), "the replay's summary")
    assert "replayed" in _text(browser, "replay-results")
    browser.save_screenshot(str(screenshots / "deadletter-replayed.png"))

    def applied() -> bool:
        browser.get(f"{console_stack.url('console')}/skus/DL-SKU")
        return _text(browser, "level-on_hand") == "5"

    _until(applied, "the replayed event applied")
    assert "received" in _text(browser, "sku-ledger")


def test_replay_a_filtered_set_of_dead_letters_dry_run_first(
    browser: Any, console_stack: Stack, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    reason = "a filtered set (a test's dead letters)"
    seqs = asyncio.run(
        _dead_letters_of_valid_events(console_stack, reason, ("dl-set-1", "SET-SKU", 2), ("dl-set-2", "SET-SKU", 3))
    )
    _login(browser, console_stack)
    browser.get(f"{console_stack.url('console')}/deadletters")
    browser.find_element(By.ID, "f-reason").send_keys("a filtered set")
    browser.find_element(By.ID, "f-reason").submit()
    _until(lambda: "reason=" in browser.current_url, "the filtered list")
    assert sorted(int(e.get_attribute("id")[3:]) for e in browser.find_elements(By.CSS_SELECTOR, "tr[id^=dl-]")) == seqs
    browser.save_screenshot(str(screenshots / "deadletters-filtered.png"))
    # A dry run first (the form's default): what would be replayed, nothing applied.
    browser.find_element(By.ID, "replay-filtered").click()
    _until(lambda: _text(browser, "replay-summary"), "the dry run's summary")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dry run"
    assert sorted(int(a.text) for a in browser.find_elements(By.CSS_SELECTOR, "#replay-results a")) == seqs
    ledger = httpx.get(
        f"{console_stack.url('inventory')}/skus/SET-SKU",
        headers={"authorization": f"Bearer {console_stack.admin_token}"},
    )
    assert ledger.status_code == 404, "a dry run applies nothing"
    browser.back()
    _until(lambda: browser.find_elements(By.ID, "filtered-dry-run"), "the filtered list again")
    dry_run = browser.find_element(By.ID, "filtered-dry-run")
    if dry_run.is_selected():
        dry_run.click()
    browser.find_element(By.ID, "replay-filtered").click()
    _until(lambda: "replayed: 2" in _text(browser, "replay-summary"), "the replay's summary")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Replayed"

    def applied() -> bool:
        browser.get(f"{console_stack.url('console')}/skus/SET-SKU")
        return _text(browser, "level-on_hand") == "5"

    _until(applied, "both replayed events applied")
    browser.get(f"{console_stack.url('console')}/actions")
    actions = _text(browser, "actions")
    assert "deadletter.dry_run" in actions and "deadletter.replay" in actions and "filtered set" in actions


async def _dead_letter_to_discard(stack: Stack) -> int:
    nc = await connect(NatsSettings(servers=[str(stack.nats_url)]), "console-test")
    try:
        return await dead_letter(nc.jetstream(), event_id="dl-discard", reason="a test's dead letter to discard")
    finally:
        await nc.close()


def test_discard_a_dead_letter_with_a_reason(browser: Any, console_stack: Stack, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    seq = asyncio.run(_dead_letter_to_discard(console_stack))
    _login(browser, console_stack)
    browser.get(f"{console_stack.url('console')}/deadletters")
    browser.find_element(By.ID, f"pick-{seq}").click()
    browser.find_element(By.ID, "discard-chosen").click()
    _until(lambda: "give the reason" in browser.page_source, "the reason asked for")
    # Nothing discarded without a reason: back on the dead letter's own page, whose form asks for one.
    assert browser.current_url.split("?")[0].endswith(f"/deadletters/{seq}") and _text(browser, "dl-reason")
    browser.find_element(By.ID, "discard-reason").send_keys("a test order")
    browser.find_element(By.ID, "discard-one").click()
    _until(lambda: f"discarded 1: {seq}" in browser.page_source, "the discard's answer")
    assert not browser.find_elements(By.ID, f"dl-{seq}")
    browser.save_screenshot(str(screenshots / "deadletter-discarded.png"))
    browser.get(f"{console_stack.url('console')}/actions")
    assert "deadletter.discard" in _text(browser, "actions")


async def _stream_messages(stack: Stack, stream: str) -> int:
    nc = await connect(NatsSettings(servers=[str(stack.nats_url)]), "console-test")
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


def test_a_forged_action_without_the_csrf_token_is_refused(
    browser: Any, console_stack: Stack, screenshots: Path
) -> None:
    _login(browser, console_stack)
    # The page's own origin and session cookie, but not the CSRF token: what a forged form would send.
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/deadletters/replay', {method: 'POST', credentials: 'same-origin',
              headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'all=true'})
          .then(r => done(r.status), e => done(String(e)));
        """
    )
    assert status == 403
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/deadletters/discard', {method: 'POST', credentials: 'same-origin',
              headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'seq=1&discard_reason=forged'})
          .then(r => done(r.status), e => done(String(e)));
        """
    )
    assert status == 403
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/deliveries/1/retry', {method: 'POST', credentials: 'same-origin',
              headers: {'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': 'forged'}, body: ''})
          .then(r => done(r.status), e => done(String(e)));
        """
    )
    assert status == 403
    # A login without the login form's own token (login CSRF: a page elsewhere logging the browser into
    # a session) is refused as well, the right admin token notwithstanding.
    forged = httpx.post(
        f"{console_stack.url('console')}/login", data={"token": console_stack.admin_token, "csrf": "forged"}
    )
    assert forged.status_code == 403 and "did not come from this console" in forged.text
    # The overview once the tests above have sent events, retried and replayed (README shows it): the
    # flaky channel's two failed attempts and its deliveries since, and DEADLETTER's count.
    browser.get(console_stack.url("console"))
    first = _text(browser, "overview")
    _until(lambda: _text(browser, "overview") != first, "a refresh")
    row = "document.querySelector('tr[data-channel=flaky] td.{}').innerText"
    sent, failed = browser.execute_script(f"return [{row.format('sent')}, {row.format('failed')}];")
    assert int(sent) >= 1 and int(failed) == 2, (sent, failed)
    count = asyncio.run(_stream_messages(console_stack, "DEADLETTER"))
    _until(lambda: _text(browser, "deadletter-count") == str(count), f"the dead letters counted ({count})")
    browser.save_screenshot(str(screenshots / "overview-after.png"))


_UNLABELLED = """
return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.innerText.trim())
  .map(e => e.outerHTML.slice(0, 120));
"""


@pytest.fixture
def shown(console_stack: Stack, flaky_endpoint: FlakyEndpoint) -> None:
    """What the pages of the two tests below show, whether the tests above ran first or not: order o-100
    on TEE-1 and the channel ``flaky``. Sent again, the webhooks are duplicates; a channel is kept as it is."""
    _send(console_stack, "inventory.received", "rcv-tee", {"sku": "TEE-1", "qty": 10})
    _send(console_stack, "order.created", "ord-100", {"order_id": "o-100", "lines": [{"sku": "TEE-1", "qty": 3}]})
    notifier = httpx.Client(
        base_url=console_stack.url("channel-notifier"),
        headers={"authorization": f"Bearer {console_stack.admin_token}"},
    )
    with notifier:
        if notifier.get("/channels/flaky").status_code == 404:
            flaky = {"name": "flaky", "kind": "webhook", "url": flaky_endpoint.url, "filters": {"skus": ["RETRY-*"]}}
            assert notifier.post("/channels", json=flaky).status_code == 201
        _until(lambda: notifier.get("/channels/flaky").status_code == 200, "the channel flaky")
    with httpx.Client(
        base_url=console_stack.url("inventory"), headers={"authorization": f"Bearer {console_stack.admin_token}"}
    ) as inventory:
        _until(lambda: inventory.get("/skus/TEE-1").json().get("on_hand") == 10, "TEE-1 received")


@pytest.mark.usefixtures("shown")
def test_every_control_is_labelled_and_reached_from_the_keyboard(browser: Any, console_stack: Stack) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _login(browser, console_stack)
    base = console_stack.url("console")
    for page in ("/", "/events", "/skus/TEE-1", "/channels", "/channels/flaky", "/deadletters", "/actions", "/login"):
        browser.get(base + page)
        assert browser.execute_script(_UNLABELLED) == [], page
    browser.get(base + "/channels/flaky")
    # Tab from the top: the skip link first, then the navigation; Enter follows a focused link.
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.execute_script("return document.activeElement.className") == "skip"
    ActionChains(browser).send_keys(Keys.TAB, Keys.TAB, Keys.ENTER).perform()
    _until(lambda: browser.current_url.endswith("/events"), "Events opened from the keyboard")


# Elements that reach past the viewport's right edge, other than inside a box that scrolls sideways on
# its own (a wide table): what would make the whole page scroll sideways or cut a control off.
_OVERFLOWING = """
const width = window.innerWidth;
const page = document.documentElement.scrollWidth;
const clipped = e => {
  for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
    if (getComputedStyle(a).overflowX !== 'visible') return true;
  }
  return false;
};
return (page > width ? ['the page is ' + page + ' px wide'] : []).concat(Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > width + 1 && !clipped(e))
  .map(e => e.outerHTML.slice(0, 120)));
"""
SCREENS = {"1280x800": (1280, 800, False), "phone": (390, 844, True)}


@pytest.mark.usefixtures("shown")
def test_every_page_fits_1280x800_and_a_phone_width_screen(
    browser: Any, console_stack: Stack, screenshots: Path
) -> None:
    """Each page at 1280x800 and at a phone's 390 px width: nothing reaches past the screen's edge but
    inside a box that scrolls sideways on its own (a wide table), the navigation is on screen, and a
    screenshot of each is saved (<page>-<screen>.png)."""
    from selenium.webdriver.common.by import By

    (seq,) = asyncio.run(
        _dead_letters_of_valid_events(console_stack, "a test's dead letter to look at", ("dl-look", "LOOK-SKU", 1))
    )
    _login(browser, console_stack)
    base = console_stack.url("console")
    browser.get(f"{base}/events?order=o-100")
    event = browser.find_element(By.CSS_SELECTOR, "#events a").get_attribute("href")
    pages = {
        "overview": "/",
        "events": "/events?order=o-100",
        "event": event.removeprefix(base),
        "sku": "/skus/TEE-1",
        "channels": "/channels",
        "channel": "/channels/flaky",
        "deadletters": "/deadletters",
        "deadletter": f"/deadletters/{seq}",
        "actions": "/actions",
        "login": "/login",
    }
    try:
        for screen, (width, height, mobile) in SCREENS.items():
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            )
            for name, page in pages.items():
                browser.get(base + page)
                _until(lambda: browser.find_elements(By.TAG_NAME, "h1"), f"the {name} page")
                assert browser.execute_script("return window.innerWidth") == width
                assert browser.execute_script(_OVERFLOWING) == [], (screen, name)
                if name != "login":
                    for link in browser.find_elements(By.CSS_SELECTOR, "nav a"):
                        assert link.is_displayed() and link.rect["x"] + link.rect["width"] <= width, (screen, link.text)
                browser.save_screenshot(str(screenshots / f"{name}-{screen}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
