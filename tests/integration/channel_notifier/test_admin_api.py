"""The admin API: guarded by the token, clear errors, nothing half-applied."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from libs.signing import generate_standard_secret
from tests.support import BAD_INTEGERS, refusal_problem, send_request

from .conftest import Notifier, NotifierFactory
from .support import AUTH


async def test_admin_api_needs_the_token(notifier: Notifier) -> None:
    assert (await notifier.client.get("/channels")).status_code == 401
    wrong = await notifier.client.get("/channels", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    assert (await notifier.client.get("/channels", headers=AUTH)).status_code == 200
    assert (await notifier.client.get("/healthz")).status_code == 200


async def test_channel_lifecycle(notifier: Notifier) -> None:
    created = await notifier.create_channel(name="shop", url="http://127.0.0.1:9/hook", buffer=2)
    assert created["secret"].startswith("whsec_")  # generated, shown once
    assert created["secrets"] == 1
    shown = await notifier.channel("shop")
    assert "secret" not in shown and shown["secrets"] == 1
    assert shown["filters"] == {"skus": [], "kinds": ["availability"]}
    assert shown["buffer"] == 2 and shown["enabled"] is True

    listed = (await notifier.client.get("/channels", headers=AUTH)).json()["channels"]
    assert [c["name"] for c in listed] == ["shop"]

    rotated = await notifier.client.patch("/channels/shop", json={"generate_secret": True}, headers=AUTH)
    assert rotated.status_code == 200
    assert rotated.json()["secrets"] == 2 and rotated.json()["secret"].startswith("whsec_")

    disabled = await notifier.client.patch("/channels/shop", json={"enabled": False}, headers=AUTH)
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"] == "disabled by an operator"

    assert (await notifier.client.delete("/channels/shop", headers=AUTH)).status_code == 204
    missing = await notifier.client.get("/channels/shop", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await notifier.client.delete("/channels/shop", headers=AUTH)).status_code == 404


async def test_invalid_channels_are_refused_with_clear_errors(notifier: Notifier) -> None:
    cases = [
        ({"name": "Bad Name", "url": "http://localhost:1/x"}, 422, "invalid_name"),
        ({"name": "a", "url": "http://localhost:1/x", "secret": "not-a-secret"}, 422, "invalid_secret"),
        ({"name": "a", "kind": "jetstream", "buffer": 3}, 422, "invalid_buffer"),
        ({"name": "a", "kind": "jetstream", "url": "http://localhost:1/x"}, 422, "invalid_url"),
        ({"name": "a"}, 422, "invalid_url"),
        ({"name": "a", "kind": "fax", "url": "http://localhost:1/x"}, 422, "invalid_kind"),
        ({"name": "a", "url": "http://localhost:1/x", "filters": {"kinds": ["reserved"]}}, 422, "invalid_filters"),
        ({"name": "a", "url": "http://localhost:1/x", "buffer": -1}, 422, "invalid_buffer"),
        ({"name": "a", "url": "http://localhost:1/x", "colour": "red"}, 400, "bad_request"),
    ]
    for body, status, code in cases:
        response = await notifier.client.post("/channels", json=body, headers=AUTH)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"] == code, (body, response.json())
        assert response.json()["detail"]
    assert (await notifier.client.get("/channels", headers=AUTH)).json()["channels"] == []


async def test_duplicate_name_is_a_conflict(notifier: Notifier) -> None:
    await notifier.create_channel(name="dup", url="http://localhost:1/x", secret=generate_standard_secret())
    again = await notifier.client.post("/channels", json={"name": "dup", "url": "http://localhost:2/x"}, headers=AUTH)
    assert again.status_code == 409 and again.json()["error"] == "channel_exists"
    assert (await notifier.channel("dup"))["url"] == "http://localhost:1/x"


async def test_deliveries_listing_validates_status(notifier: Notifier) -> None:
    await notifier.create_channel(name="d", url="http://localhost:1/x")
    bad = await notifier.client.get("/channels/d/deliveries", params={"status": "lost"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_status"
    assert (await notifier.client.get("/channels/nope/deliveries", headers=AUTH)).status_code == 404
    assert (await notifier.client.post("/deliveries/999999/retry", headers=AUTH)).status_code == 404


async def test_readiness_reports_each_check(js: JetStreamContext, notifier: Notifier) -> None:
    ready = await notifier.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "nats_connected": True,
        "store_writable": True,
        "consumer_bound": True,
        "channels_valid": True,
    }


async def test_metrics_are_exposed(notifier: Notifier) -> None:
    text = (await notifier.client.get("/metrics")).text
    assert "channel_notifier_deliveries_total" in text
    assert "channel_notifier_delivery_latency_seconds" in text


async def test_openapi_document_describes_the_admin_api(notifier: Notifier) -> None:
    response = await notifier.client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/channels",
        "/channels/{name}",
        "/channels/{name}/deliveries",
        "/channels/{name}/replay",
        "/deliveries/{delivery_id}/retry",
        "/channels/{name}/deliveries/{delivery_id}/attempts",
    ):
        assert path in paths, sorted(paths)
    listed = paths["/channels/{name}/deliveries/{delivery_id}/attempts"]["get"]["responses"]
    assert set(listed) >= {"200", "400", "401", "404"}
    schema = listed["200"]["content"]["application/json"]["schema"]
    attempt = response.json()["components"]["schemas"]["AttemptOut"]
    assert schema["$ref"].endswith("/AttemptsOut") and "outcome" in attempt["required"]


# -- no input answers 500: every number bounded where it enters, every refusal a 4xx {error, detail} ---

_HUGE = 2**63
_URL = "http://127.0.0.1:9/hook"
_BAD_REQUESTS: list[tuple[str, str, object]] = [
    # (method, path, JSON body (bytes: sent as they are) or None); the channel "shop" exists.
    *(("GET", f"/channels/shop/deliveries?after_id={value}", None) for value in BAD_INTEGERS),
    *(("GET", f"/channels/shop/deliveries?limit={value}", None) for value in [*BAD_INTEGERS, "0", "1001"]),
    ("GET", "/channels/shop/deliveries?status=" + "x" * 10_000, None),
    ("GET", "/channels/" + "n" * 10_000, None),
    ("GET", "/channels/a%00b", None),
    ("GET", "/channels/a%00b/deliveries", None),
    ("PATCH", "/channels/a%00b", {"enabled": False}),
    ("DELETE", "/channels/a%00b", None),
    ("DELETE", "/channels/" + "n" * 10_000, None),
    *(("POST", f"/deliveries/{value}/retry", None) for value in [*BAD_INTEGERS, "0"]),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": _HUGE}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": 2**31}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": 2**64}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": -1}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": 1.5}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": True}),
    ("POST", "/channels", {"name": "b" * 10_000, "url": _URL}),
    ("POST", "/channels", {"name": "b\x00", "url": _URL}),
    ("POST", "/channels", {"name": 7, "url": _URL}),
    ("POST", "/channels", {"name": "b", "url": _URL + "?" + "q" * 10_000}),
    ("POST", "/channels", {"name": "b", "url": 7}),
    ("POST", "/channels", {"name": "b", "url": "http://a..b/"}),
    ("POST", "/channels", {"name": "b", "url": "http://" + "a" * 64 + ".example/"}),
    ("POST", "/channels", {"name": "b", "url": _URL, "kind": "x" * 10_000}),
    ("POST", "/channels", {"name": "b", "url": _URL, "secret": "whsec_" + "A" * 10_000}),
    ("POST", "/channels", {"name": "b", "url": _URL, "secrets": ["whsec_x"] * 1000}),
    ("POST", "/channels", {"name": "b", "url": _URL, "secrets": [generate_standard_secret()] * 1000}),
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": {"skus": ["A"] * 10_000}}),
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": {"skus": ["A" * 10_000]}}),
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": {"kinds": ["x"] * 10_000}}),
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": {"kinds": ["x" * 10_000]}}),
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": []}),
    ("POST", "/channels", {"name": "b", "url": _URL, "unknown": 1}),
    ("POST", "/channels", {"name": "b", "url": _URL, "buffer": "5"}),  # a number as a string: not a number
    ("POST", "/channels", {"name": "b", "url": _URL, "filters": {"skus": ["A"]}, "enabled": 1}),
    ("POST", "/channels", [1, 2]),
    ("POST", "/channels", None),
    ("POST", "/channels", b'{"name": "b", "url": "' + _URL.encode() + b'", "buffer": ' + b"9" * 5000 + b"}"),
    ("POST", "/channels", b'{"name": "b", "filters": {"skus": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
    ("POST", "/channels", b"[" * 100_000),
    ("POST", "/channels", b"\xff\xfe"),
    ("PATCH", "/channels/shop", {"buffer": _HUGE}),
    ("PATCH", "/channels/shop", {"buffer": 2**31}),
    ("PATCH", "/channels/shop", {"buffer": -1}),
    ("PATCH", "/channels/shop", {"url": "https://[64:ff9b::a9fe:a9fe]/"}),
    ("PATCH", "/channels/shop", {"secrets": [generate_standard_secret()] * 1000}),
    ("PATCH", "/channels/shop", {"filters": {"skus": ["A"] * 10_000}}),
    ("PATCH", "/channels/shop", {"enabled": "yes"}),
    ("PATCH", "/channels/shop", b"{" * 100_000),
    ("POST", "/channels/shop/replay", {"since": "99999-01-01T00:00:00Z"}),
    # Times nats-server cannot hold as int64 nanoseconds (it would start from the stream's beginning).
    ("POST", "/channels/shop/replay", {"since": "9999-12-31T23:59:59Z"}),
    ("POST", "/channels/shop/replay", {"since": "2262-04-11T23:47:17Z"}),
    ("POST", "/channels/shop/replay", {"since": "0001-01-01T00:00:00Z"}),
    ("POST", "/channels/shop/replay", {"since": "1677-09-21T00:12:43"}),
    ("POST", "/channels/shop/replay", {"since": _HUGE}),
    ("POST", "/channels/shop/replay", {"since": "x" * 10_000}),
    ("POST", "/channels/shop/replay", {}),
]


async def _refuses_every_bad_request(notifier: Notifier) -> None:
    await notifier.create_channel(name="shop", url=_URL)
    before = await notifier.channel("shop")
    wrong = []
    for method, path, body in _BAD_REQUESTS:
        problem = refusal_problem(await send_request(notifier.client, method, path, body, AUTH))
        if problem is not None:
            wrong.append((method, path[:60], str(body)[:60], problem))
    assert not wrong, "\n".join(map(str, wrong))
    # Nothing was half-applied: the channel is as it was, and no other channel exists.
    assert await notifier.channel("shop") == before
    listed = (await notifier.client.get("/channels", headers=AUTH)).json()["channels"]
    assert [c["name"] for c in listed] == ["shop"]


async def test_no_input_answers_500(notifier: Notifier) -> None:
    await _refuses_every_bad_request(notifier)


@pytest.mark.postgres
async def test_no_input_answers_500_on_postgresql(notifier_factory: NotifierFactory, postgres_url: str) -> None:
    async with notifier_factory(database_url=postgres_url) as notifier:
        await _refuses_every_bad_request(notifier)


@pytest.mark.parametrize(
    ("since", "status"),
    [
        ("9999-12-31T23:59:59Z", 422),
        ("2263-01-01T00:00:00+05:00", 422),
        ("1000-01-01T00:00:00Z", 422),
        ("2262-04-11T23:47:16Z", 202),
        ("2262-04-12T05:00:00+05:30", 202),  # 23:30 UTC, inside
        ("1677-09-21T00:12:44Z", 202),
    ],
)
async def test_a_replay_from_a_time_jetstream_cannot_start_at_is_refused(
    notifier: Notifier, since: str, status: int
) -> None:
    await notifier.create_channel(name="shop", url=_URL)
    answer = await notifier.client.post("/channels/shop/replay", json={"since": since}, headers=AUTH)
    assert answer.status_code == status, answer.text
    if status == 422:
        assert answer.json()["error"] == "invalid_since"
        assert "2262-04-11T23:47:16+00:00" in answer.json()["detail"]
