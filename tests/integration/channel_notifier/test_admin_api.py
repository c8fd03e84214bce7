"""The admin API: guarded by the token, clear errors, nothing half-applied."""

from __future__ import annotations

from nats.js import JetStreamContext

from libs.signing import generate_standard_secret

from .conftest import Notifier
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
    ):
        assert path in paths, sorted(paths)
