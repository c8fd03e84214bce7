"""Inventory's dead-letter admin API over a real nats-server: guarded, bounded, and what it lists, shows and
replays is what DEADLETTER holds."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.http import create_service_app
from libs.natsserver import NatsServer
from libs.topology import COMMERCE, DEADLETTER
from services.inventory.deadletters import deadletter_router
from tests.support import BAD_INTEGERS, dead_letter, refusal_problem, stored_message

from .conftest import ADMIN_TOKEN, AUTH


@asynccontextmanager
async def _routes(nats_url: str | None) -> AsyncIterator[AsyncTestClient]:
    """The dead-letter routes in a service app of their own, on a NATS connection (None: not connected).

    The whole inventory app serves them too (its OpenAPI document and tests/e2e/api check them there); on
    their own, a test neither waits for inventory's consumer and sweeper nor runs into their shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.nc = await nats.connect(nats_url) if nats_url else None
        try:
            yield
        finally:
            if app.state.nc is not None:
                await app.state.nc.close()

    app = create_service_app("inventory", [deadletter_router(ADMIN_TOKEN)], lifespan=[lifespan])
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
async def admin(js: JetStreamContext, nats_server: NatsServer) -> AsyncIterator[AsyncTestClient]:
    async with _routes(nats_server.url) as client:
        yield client


async def _json(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/deadletters", None),
        ("GET", "/deadletters/1", None),
        ("POST", "/deadletters/replay", {"seqs": [1]}),
        ("POST", "/deadletters/discard", {"seqs": [1], "reason": "test order"}),
    ],
)
async def test_every_route_needs_the_admin_token(
    admin: AsyncTestClient, js: JetStreamContext, method: str, path: str, body: object
) -> None:
    await dead_letter(js, event_id="e1")
    for headers in ({}, {"authorization": "Bearer wrong"}):
        response = await admin.request(method, path, json=body, headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert (await js.stream_info(COMMERCE)).state.messages == 0
    assert (await js.stream_info(DEADLETTER)).state.messages == 1


async def test_list_with_filters_and_paging(admin: AsyncTestClient, js: JetStreamContext) -> None:
    await dead_letter(js, event_id="e1", reason="malformed: data.lines")
    await dead_letter(js, event_id="p1", event_type="payment.successful", reason="parked longer than 3600s")
    await dead_letter(js, event_id="m1", consumer="mailer", reason="smtp")

    page = await _json(await admin.get("/deadletters", headers=AUTH))
    assert [d["event_id"] for d in page["deadletters"]] == ["e1", "p1", "m1"]
    assert (page["scanned"], page["next_seq"], page["last_seq"]) == (3, None, 3)
    first = page["deadletters"][0]
    assert first["original_msg_id"] == "shop:e1" and first["original_stream"] == "COMMERCE"
    assert first["time"].endswith("Z") or first["time"].endswith("+00:00")

    async def ids(**params: Any) -> list[str]:
        found = await _json(await admin.get("/deadletters", params=params, headers=AUTH))
        return [d["event_id"] for d in found["deadletters"]]

    assert await ids(consumer="inventory") == ["e1", "p1"]
    assert await ids(subject="commerce.*.payment.>") == ["p1"]
    assert await ids(subject="commerce.shop.order") == ["e1", "m1"]
    assert await ids(reason="PARKED") == ["p1"]
    assert await ids(since=first["time"], until="2999-01-01T00:00:00Z") == ["e1", "p1", "m1"]
    assert await ids(until=first["time"]) == []
    limited = await _json(await admin.get("/deadletters", params={"limit": 2}, headers=AUTH))
    assert [d["seq"] for d in limited["deadletters"]] == [1, 2] and limited["next_seq"] == 3
    rest = await _json(await admin.get("/deadletters", params={"start_seq": 3}, headers=AUTH))
    assert [d["seq"] for d in rest["deadletters"]] == [3] and rest["next_seq"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"subject": "commerce.>.x"},
        {"subject": "commerce..x"},
        {"consumer": "a.b"},
        {"reason": ""},
        {"reason": "x" * 1001},
        {"since": "yesterday"},
        {"since": "2026-12-01T10:00:00"},
        {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        {"limit": 1001},
        {"scan": 10_001},
        {"consumr": "inventory"},
        *({"start_seq": bad} for bad in BAD_INTEGERS),
    ],
)
async def test_bad_filters_are_400(admin: AsyncTestClient, params: dict[str, Any]) -> None:
    response = await admin.get("/deadletters", params=params, headers=AUTH)
    assert refusal_problem(response) is None and response.status_code == 400, response.text


async def test_show_one_with_every_header_and_the_body(admin: AsyncTestClient, js: JetStreamContext) -> None:
    body = b'{"id": "e1", "sku": "\xc3\x84"}'
    seq = await dead_letter(js, event_id="e1", body=body, stream_seq=12)
    shown = await _json(await admin.get(f"/deadletters/{seq}", headers=AUTH))
    _subject, stored, _body = await stored_message(js, DEADLETTER, seq)
    assert shown["headers"] == stored
    assert shown["body"] == body.decode() and base64.b64decode(shown["body_base64"]) == body
    assert (shown["seq"], shown["original_seq"], shown["body_size"]) == (seq, 12, len(body))

    missing = await admin.get("/deadletters/99", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    for bad in BAD_INTEGERS[:2]:
        assert refusal_problem(await admin.get(f"/deadletters/{bad}", headers=AUTH)) is None


async def test_replay_by_sequence_then_again_is_a_duplicate(admin: AsyncTestClient, js: JetStreamContext) -> None:
    seq = await dead_letter(js, event_id="e1")
    dry = await _json(await admin.post("/deadletters/replay", json={"seqs": [seq], "dry_run": True}, headers=AUTH))
    assert dry["dry_run"] is True and dry["results"][0]["outcome"] == "would_replay"
    assert (await js.stream_info(COMMERCE)).state.messages == 0

    done = await _json(await admin.post("/deadletters/replay", json={"seqs": [seq, 99]}, headers=AUTH))
    replayed, unknown = done["results"]
    assert replayed == {
        "seq": seq,
        "outcome": "replayed",
        "detail": "",
        "subject": "commerce.shop.order.created",
        "stream": COMMERCE,
        "msg_id": f"replay:{seq}:shop:e1",
        "stream_seq": 1,
    }
    assert unknown["outcome"] == "skipped" and "no dead letter" in unknown["detail"]
    assert done["summary"] == {"replayed": 1, "duplicate": 0, "would_replay": 0, "skipped": 1, "failed": 0}
    _subject, headers, _body = await stored_message(js, COMMERCE, 1)
    assert headers["Stockwire-Replay-Of"] == str(seq) and headers["Stockwire-Original-Msg-Id"] == "shop:e1"

    again = await _json(
        await admin.post("/deadletters/replay", json={"all": True, "consumer": "inventory"}, headers=AUTH)
    )
    assert [(r["outcome"], r["stream_seq"]) for r in again["results"]] == [("duplicate", 1)]
    assert (await js.stream_info(COMMERCE)).state.messages == 1


async def test_discard_records_then_deletes_and_a_second_discard_is_missing(
    admin: AsyncTestClient, js: JetStreamContext
) -> None:
    body = b'{"id": "e1"}'
    first = await dead_letter(js, event_id="e1", body=body, stream_seq=12)
    kept = await dead_letter(js, event_id="e2")
    _subject, original, _body = await stored_message(js, DEADLETTER, first)

    done = await _json(
        await admin.post("/deadletters/discard", json={"seqs": [first, 99], "reason": "test order, Ä"}, headers=AUTH)
    )
    assert done == {"discarded": [first], "missing": [99]}
    page = await _json(await admin.get("/deadletters", headers=AUTH))
    assert [d["seq"] for d in page["deadletters"]] == [kept]
    assert (await admin.get(f"/deadletters/{first}", headers=AUTH)).status_code == 404

    record_seq = (await js.stream_info(DEADLETTER)).state.last_seq
    subject, headers, stored_body = await stored_message(js, DEADLETTER, record_seq)
    assert subject == "deadletter.discarded.inventory" and stored_body == b""
    assert headers["Stockwire-Discard-Reason"] == "test order, Ä"
    assert headers["Stockwire-Discarded-By"] == "admin"
    assert headers["Stockwire-Discarded-Seq"] == str(first)
    assert headers["Stockwire-Discarded-Subject"] == _subject
    assert headers["Stockwire-Discarded-At"].startswith("20")
    assert headers["Stockwire-Body-Sha256"] == hashlib.sha256(body).hexdigest()
    assert headers["Stockwire-Original-Subject"] == original["Stockwire-Original-Subject"]
    assert headers["Stockwire-Error"] == original["Stockwire-Error"]
    # The record is no dead letter: neither shown, replayed nor discarded.
    assert (await admin.get(f"/deadletters/{record_seq}", headers=AUTH)).status_code == 404
    again = await _json(
        await admin.post("/deadletters/discard", json={"seqs": [first, record_seq], "reason": "again"}, headers=AUTH)
    )
    assert again == {"discarded": [], "missing": [first, record_seq]}
    filtered = await _json(await admin.get("/deadletters", params={"consumer": "discarded"}, headers=AUTH))
    assert filtered["deadletters"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"seqs": [1]},
        {"reason": "x"},
        {"seqs": [], "reason": "x"},
        {"seqs": [0], "reason": "x"},
        {"seqs": [1], "reason": ""},
        {"seqs": [1], "reason": "   "},
        {"seqs": [1], "reason": "two\nlines"},
        {"seqs": [1], "reason": "x" * 501},
        {"seqs": [1], "reason": 5},
        {"seqs": [1.5], "reason": "x"},
        {"seqs": list(range(1, 502)), "reason": "x"},
        {"seqs": [1], "reason": "x", "unknown": 1},
        *({"seqs": [bad], "reason": "x"} for bad in BAD_INTEGERS),
    ],
)
async def test_a_discard_request_that_does_not_fit_is_400(
    admin: AsyncTestClient, js: JetStreamContext, body: dict[str, Any]
) -> None:
    await dead_letter(js, event_id="e1")
    response = await admin.post("/deadletters/discard", json=body, headers=AUTH)
    assert refusal_problem(response) is None and response.status_code == 400, response.text
    assert (await js.stream_info(DEADLETTER)).state.messages == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"seqs": [1], "all": True},
        {"seqs": []},
        {"seqs": [0]},
        {"seqs": [1], "consumer": "inventory"},
        {"seqs": [1], "limit": 5},
        {"all": True, "subject": "a.>.b"},
        {"all": True, "since": "2026-12-01T10:00:00"},
        {"all": True, "limit": 1001},
        {"seqs": [1], "unknown": 1},
        {"seqs": list(range(1, 1002))},
    ],
)
async def test_a_replay_request_that_does_not_fit_is_400(
    admin: AsyncTestClient, js: JetStreamContext, body: dict[str, Any]
) -> None:
    await dead_letter(js, event_id="e1")
    response = await admin.post("/deadletters/replay", json=body, headers=AUTH)
    assert refusal_problem(response) is None and response.status_code == 400, response.text
    assert (await js.stream_info(COMMERCE)).state.messages == 0


async def test_without_a_deadletter_stream_the_answer_is_503(admin: AsyncTestClient, js: JetStreamContext) -> None:
    await js.delete_stream(DEADLETTER)
    response = await admin.get("/deadletters", headers=AUTH)
    assert response.status_code == 503 and "does not exist" in response.json()["detail"]


async def test_without_nats_the_answer_is_503() -> None:
    async with _routes(None) as client:
        for response in (
            await client.get("/deadletters", headers=AUTH),
            await client.get("/deadletters/1", headers=AUTH),
            await client.post("/deadletters/replay", json={"seqs": [1]}, headers=AUTH),
        ):
            assert response.status_code == 503 and response.json() == {
                "error": "unavailable",
                "detail": "not connected to NATS; retry",
            }
