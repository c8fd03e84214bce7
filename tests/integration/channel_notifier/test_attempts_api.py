"""Each delivery attempt, as the admin API lists it: a channel that fails, then answers, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from nats.js import JetStreamContext

from services.channel_notifier.domain.records import ATTEMPTS_KEPT
from tests.support import BAD_INTEGERS, eventually, refusal_problem, send_request

from .conftest import Notifier, NotifierFactory
from .support import AUTH, availability, publish


async def _attempts(notifier: Notifier, channel: str, delivery_id: int, **params: Any) -> list[dict[str, Any]]:
    path = f"/channels/{channel}/deliveries/{delivery_id}/attempts"
    response = await notifier.client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["attempts"]  # type: ignore[no-any-return]


async def _failing_then_answered(js: JetStreamContext, notifier: Notifier, sinks: Callable[..., Any]) -> None:
    sink = await sinks("shop", status=500)
    await notifier.create_channel(name="shop", url=sink.url, secret=sink.secret)
    await publish(js, availability("A", 1, 5))
    rows: list[dict[str, Any]] = []

    async def failed_twice() -> bool:
        rows[:] = await notifier.deliveries("shop")
        return bool(rows) and rows[0]["attempts"] >= 2

    await eventually(failed_twice, timeout=15, what="two failed attempts")
    sink.sink.behaviour.status = 200
    await eventually(lambda: _delivered(notifier), timeout=15, what="the delivery answered once the channel recovers")
    (row,) = await notifier.deliveries("shop")
    kept = await _attempts(notifier, "shop", row["id"])
    newest, *failures = kept
    assert (newest["status_code"], newest["outcome"], newest["error"], newest["channel"]) == (
        200,
        "delivered",
        None,
        "shop",
    )
    assert len(failures) >= 2
    assert {(a["status_code"], a["outcome"], a["error"]) for a in failures} == {(500, "http_error", "HTTP 500")}
    assert [a["seq"] for a in kept] == list(range(len(kept), 0, -1))
    assert [a["attempt"] for a in failures][-2:] == [2, 1]  # numbered within the delivery's run
    assert all(a["delivery_id"] == row["id"] and a["latency_ms"] >= 0 for a in kept)
    assert [a["started_at"] for a in kept] == sorted((a["started_at"] for a in kept), reverse=True)
    assert newest["started_at"] <= row["delivered_at"]
    assert len(await _attempts(notifier, "shop", row["id"], limit=1)) == 1
    # The listing embeds each delivery's newest attempts when asked, and only then.
    listed = await notifier.client.get("/channels/shop/deliveries", params={"attempts": 2}, headers=AUTH)
    (embedded,) = listed.json()["deliveries"]
    assert [a["seq"] for a in embedded["recent_attempts"]] == [a["seq"] for a in kept[:2]]
    assert embedded["attempts"] == 0  # the failed attempts of its current run, as before
    assert "recent_attempts" not in row
    # Unknown deliveries, another channel's, bad numbers: 4xx with {error, detail}.
    await notifier.create_channel(name="other", url=sink.url, secret=sink.secret)
    wrong = []
    for path in [
        f"/channels/other/deliveries/{row['id']}/attempts",
        f"/channels/shop/deliveries/{row['id'] + 1000}/attempts",
        f"/channels/nobody/deliveries/{row['id']}/attempts",
        f"/channels/a%00b/deliveries/{row['id']}/attempts",
        *(f"/channels/shop/deliveries/{value}/attempts" for value in [*BAD_INTEGERS, "0"]),
        *(f"/channels/shop/deliveries/{row['id']}/attempts?limit={v}" for v in ["0", str(ATTEMPTS_KEPT + 1), "x"]),
        *(f"/channels/shop/deliveries?attempts={v}" for v in ["-1", str(ATTEMPTS_KEPT + 1), "x"]),
    ]:
        problem = refusal_problem(await send_request(notifier.client, "GET", path, None, AUTH))
        if problem is not None:
            wrong.append((path, problem))
    assert not wrong, wrong
    for path in [f"/channels/other/deliveries/{row['id']}/attempts", f"/channels/shop/deliveries/{row['id']}/attempts"]:
        assert (await notifier.client.get(path)).status_code == 401
    missing = await notifier.client.get(f"/channels/other/deliveries/{row['id']}/attempts", headers=AUTH)
    assert missing.status_code == 404 and set(missing.json()) >= {"error", "detail"}


async def _delivered(notifier: Notifier) -> bool:
    rows = await notifier.deliveries("shop")
    return bool(rows) and rows[0]["status"] == "delivered"


async def test_a_deliverys_attempts_are_listed_newest_first(
    js: JetStreamContext, notifier: Notifier, sinks: Callable[..., Any]
) -> None:
    await _failing_then_answered(js, notifier, sinks)


@pytest.mark.postgres
async def test_a_deliverys_attempts_are_listed_on_postgresql(
    js: JetStreamContext, notifier_factory: NotifierFactory, sinks: Callable[..., Any], postgres_url: str
) -> None:
    async with notifier_factory(database_url=postgres_url) as notifier:
        await _failing_then_answered(js, notifier, sinks)
