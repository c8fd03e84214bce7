"""The HTTP API on a real SQLite store (and the one race that matters, also on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from tests.support import BAD_INTEGERS, eventually, refusal_problem, send_request

from .conftest import AUTH, ClientFactory, drained, publish, sku


async def _stock(js: JetStreamContext, name: str, qty: int) -> None:
    await publish(js, "inventory.received", f"stock-{name}-{qty}", {"sku": name, "qty": qty})
    await eventually(lambda: drained(js), what="stock received")


def _reservation(reservation_id: str, *lines: tuple[str, int], ttl_s: float | None = None) -> dict:
    body: dict = {"reservation_id": reservation_id, "lines": [{"sku": s, "qty": q} for s, q in lines]}
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    return body


async def test_writes_need_the_admin_token(inventory: AsyncTestClient) -> None:
    body = _reservation("r1", ("A", 1))
    assert (await inventory.post("/reservations", json=body)).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    response = await inventory.post("/reservations", json=body, headers=wrong)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert (await inventory.delete("/reservations/r1")).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"reservation_id": "r1"}, 400, "bad_request"),
        (_reservation("r1"), 422, "invalid_reservation"),
        (_reservation("r1", ("A", 0)), 422, "invalid_reservation"),
        (_reservation("r1", ("", 1)), 422, "invalid_reservation"),
        (_reservation("r1", ("A", 1), ttl_s=0), 422, "invalid_ttl"),
        (_reservation("", ("A", 1)), 422, "invalid_reservation"),
    ],
)
async def test_bad_reservation_requests_get_a_clear_error(
    inventory: AsyncTestClient, body: dict, status: int, code: str
) -> None:
    response = await inventory.post("/reservations", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]


async def test_reserve_all_lines_or_none_repeat_and_release(inventory: AsyncTestClient, js: JetStreamContext) -> None:
    await _stock(js, "A", 2)
    await _stock(js, "B", 1)
    created = await inventory.post("/reservations", json=_reservation("r1", ("A", 1), ("B", 1)), headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "reserved"
    assert created.json()["expires_at"] > 0
    again = await inventory.post("/reservations", json=_reservation("r1", ("A", 1), ("B", 1)), headers=AUTH)
    assert again.status_code == 200
    other = await inventory.post("/reservations", json=_reservation("r1", ("A", 2)), headers=AUTH)
    assert other.status_code == 409 and other.json()["error"] == "reservation_exists"

    short = await inventory.post("/reservations", json=_reservation("r2", ("A", 1), ("B", 1)), headers=AUTH)
    assert short.status_code == 409
    assert short.json()["error"] == "insufficient_stock"
    assert short.json()["short"] == [{"sku": "B", "requested": 1, "available": 0}]
    assert (await sku(inventory, "A"))["reserved"] == 1  # r2's A line was not taken either

    released = await inventory.delete("/reservations/r1", headers=AUTH)
    assert released.status_code == 200 and released.json()["state"] == "released"
    assert (await sku(inventory, "B"))["available"] == 1
    assert (await inventory.delete("/reservations/r1", headers=AUTH)).json()["state"] == "released"
    missing = await inventory.delete("/reservations/nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_reservation"


async def test_a_lapsed_reservation_counts_only_for_the_skus_it_holds(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    # SQL wildcards and a quote in a SKU: the lapsed lines are found by the SKU's JSON text.
    odd, plain, other = 'L%_"x', "L", "M"
    for name in (odd, plain, other):
        await _stock(js, name, 2)
    lapsing = _reservation("lapsing", (odd, 1), (other, 1), ttl_s=1)
    assert (await inventory.post("/reservations", json=lapsing, headers=AUTH)).status_code == 201
    held = _reservation("held", (plain, 1))
    assert (await inventory.post("/reservations", json=held, headers=AUTH)).status_code == 201

    async def lapsed() -> bool:
        return (await sku(inventory, odd))["available"] == 2

    await eventually(lapsed, timeout=5, what="the lapsed reservation released on read")
    assert (await sku(inventory, other))["available"] == 2
    assert (await sku(inventory, plain))["available"] == 1, "a SKU the lapsed reservation does not hold"


async def test_a_lapsed_reservation_reads_as_released_before_the_sweeper_runs(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    await _stock(js, "A", 1)
    response = await inventory.post("/reservations", json=_reservation("r1", ("A", 1), ttl_s=1), headers=AUTH)
    assert response.status_code == 201
    assert (await sku(inventory, "A"))["available"] == 0

    async def released() -> bool:
        return (await sku(inventory, "A"))["available"] == 1

    await eventually(released, timeout=5, what="lapsed reservation counted as released")
    assert (await inventory.get("/reservations/r1")).json()["state"] == "expired"
    ledger = (await inventory.get("/skus/A/ledger")).json()["entries"]
    assert [e["kind"] for e in ledger] == ["received", "reserved"]  # nothing written yet

    # The next writer (here another checkout) writes the expiry before deciding.
    second = await inventory.post("/reservations", json=_reservation("r2", ("A", 1)), headers=AUTH)
    assert second.status_code == 201
    ledger = (await inventory.get("/skus/A/ledger")).json()["entries"]
    assert [e["kind"] for e in ledger] == ["received", "reserved", "expired", "reserved"]


async def test_fifty_concurrent_checkouts_for_the_last_unit_get_exactly_one_201(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    await _stock(js, "LAST", 1)
    responses = await asyncio.gather(
        *(inventory.post("/reservations", json=_reservation(f"r{i}", ("LAST", 1)), headers=AUTH) for i in range(50))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1
    assert statuses.count(409) == 49
    assert (await sku(inventory, "LAST"))["available"] == 0


@pytest.mark.postgres
async def test_fifty_concurrent_checkouts_on_postgresql_get_exactly_one_201(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory, postgres_url: str
) -> None:
    async with inventory_factory(nats_server.url, database_url=postgres_url, pool_size=20) as client:
        await _stock(js, "LAST", 1)
        responses = await asyncio.gather(
            *(client.post("/reservations", json=_reservation(f"r{i}", ("LAST", 1)), headers=AUTH) for i in range(50))
        )
        assert sorted(r.status_code for r in responses).count(201) == 1
        assert (await sku(client, "LAST"))["reserved"] == 1


async def test_skus_with_slashes_and_the_ledger_pages(inventory: AsyncTestClient, js: JetStreamContext) -> None:
    name = "GIFT.CARD/50 EUR"
    for i in range(5):
        await publish(js, "inventory.received", f"g{i}", {"sku": name, "qty": 1})
    await eventually(lambda: drained(js), what="receipts applied")
    assert (await sku(inventory, name))["on_hand"] == 5
    path = f"/skus/{quote(name, safe='')}/ledger"
    first = (await inventory.get(path, params={"limit": 3})).json()
    assert [e["version"] for e in first["entries"]] == [1, 2, 3]
    assert first["next_after"] == 3
    rest = (await inventory.get(path, params={"limit": 3, "after": first["next_after"]})).json()
    assert [e["version"] for e in rest["entries"]] == [4, 5]
    assert rest["next_after"] is None
    assert rest["entries"][0]["prev_hash"] == first["entries"][-1]["hash"]
    assert (await inventory.get("/skus/unknown")).status_code == 404
    assert (await inventory.get("/orders/unknown")).json()["error"] == "unknown_order"


async def test_an_order_takes_over_its_checkout_reservation(inventory: AsyncTestClient, js: JetStreamContext) -> None:
    await _stock(js, "A", 1)
    assert (
        await inventory.post("/reservations", json=_reservation("cart-1", ("A", 1)), headers=AUTH)
    ).status_code == 201
    data = {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}], "reservation_id": "cart-1"}
    await publish(js, "order.created", "c1", data)
    await eventually(lambda: drained(js), what="order applied")
    assert (await inventory.get("/orders/o1")).json()["state"] == "reserved"
    assert (await inventory.get("/reservations/cart-1")).json()["state"] == "converted"
    assert (await sku(inventory, "A"))["reserved"] == 1


# -- no input answers 500: every number bounded where it enters, every refusal a 4xx {error, detail} ---

_HUGE = 2**63
_BAD_REQUESTS: list[tuple[str, str, object]] = [
    # (method, path, JSON body or None)
    *(("GET", f"/skus/X/ledger?after={value}", None) for value in BAD_INTEGERS),
    *(("GET", f"/skus/X/ledger?limit={value}", None) for value in [*BAD_INTEGERS, "0", "1001"]),
    ("GET", "/skus/" + "S" * 10_000, None),
    ("GET", "/skus/" + "S" * 10_000 + "/ledger", None),
    ("GET", "/skus/A%00B", None),
    ("GET", "/skus/A%00B/ledger", None),
    ("GET", "/orders/" + "o" * 10_000, None),
    ("GET", "/orders/o%00", None),
    ("GET", "/reservations/" + "r" * 10_000, None),
    ("GET", "/reservations/r%00", None),
    ("DELETE", "/reservations/" + "r" * 10_000, None),
    ("DELETE", "/reservations/r%00", None),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": _HUGE}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 2**64}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": -(2**63) - 1}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": -1}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": "1"}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1.5}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": True}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": None}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A" * 100_000, "qty": 1}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A\x00", "qty": 1}]}),
    ("POST", "/reservations", {"reservation_id": "r" * 100_000, "lines": [{"sku": "A", "qty": 1}]}),
    ("POST", "/reservations", {"reservation_id": "r\x00", "lines": [{"sku": "A", "qty": 1}]}),
    ("POST", "/reservations", {"reservation_id": 7, "lines": [{"sku": "A", "qty": 1}]}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}] * 10_000}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": {"sku": "A"}}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": 1e308}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": _HUGE}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": -1}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": "1"}),
    ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "extra": 1}),
    ("POST", "/reservations", [1, 2, 3]),
    ("POST", "/reservations", "text"),
    ("POST", "/reservations", None),
]
_RAW_BODIES = [
    b'{"reservation_id": "r1", "lines": [{"sku": "A", "qty": ' + b"9" * 5000 + b"}]}",
    b'{"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": 1e400}',
    b'{"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": NaN}',
    b'{"reservation_id": "r1", "lines": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"[" * 100_000,
    b"\xff\xfe",
    b"{",
]


def _assert_refused(response: Any, what: object) -> None:
    problem = refusal_problem(response)
    assert problem is None, (what, problem)


@pytest.mark.parametrize(("method", "path", "body"), _BAD_REQUESTS, ids=lambda v: str(v)[:60])
async def test_no_input_answers_500(inventory: AsyncTestClient, method: str, path: str, body: object) -> None:
    response = await send_request(inventory, method, path, body, AUTH)
    _assert_refused(response, (method, path[:80], str(body)[:80]))


@pytest.mark.parametrize("raw", _RAW_BODIES, ids=lambda v: v[:40].decode("latin-1"))
async def test_no_json_body_answers_500(inventory: AsyncTestClient, raw: bytes) -> None:
    _assert_refused(await send_request(inventory, "POST", "/reservations", raw, AUTH), raw[:80])


@pytest.mark.postgres
async def test_no_input_answers_500_on_postgresql(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory, postgres_url: str
) -> None:
    """PostgreSQL refuses more than SQLite (NUL in text, integers past BIGINT): the same table, one database."""
    async with inventory_factory(nats_server.url, database_url=postgres_url) as client:
        for method, path, body in [*_BAD_REQUESTS, *(("POST", "/reservations", raw) for raw in _RAW_BODIES)]:
            response = await send_request(client, method, path, body, AUTH)
            _assert_refused(response, (method, path[:80], str(body)[:80]))


async def test_orders_are_keyed_per_source_and_looked_up_by_number(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    await publish(js, "inventory.received", "r1", {"sku": "MUG", "qty": 5})
    order = {"order_id": "1001", "lines": [{"sku": "MUG", "qty": 2}]}
    await publish(js, "order.created", "c1", order, source="ce")
    await publish(js, "order.created", "c1", order, source="erp")
    await publish(js, "payment.successful", "p1", {"order_id": "1001"}, source="erp")
    await eventually(lambda: drained(js), what="both orders applied")
    assert (await sku(inventory, "MUG"))["available"] == 1  # type: ignore[index]

    ambiguous = await inventory.get("/orders/1001")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["error"] == "ambiguous_order" and "ce, erp" in ambiguous.json()["detail"]
    ce = (await inventory.get("/orders/1001?source=ce")).json()
    erp = (await inventory.get("/orders/1001?source=erp")).json()
    assert (ce["source"], ce["state"], erp["source"], erp["state"]) == ("ce", "reserved", "erp", "committed")
    assert [e["msg_id"] for e in erp["events"]] == ["erp:c1", "erp:p1"]
    unknown = await inventory.get("/orders/1001?source=shop")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_order")
    bad = await inventory.get("/orders/1001?source=Not%20A%20Source")
    assert bad.status_code == 400 and {"error", "detail"} <= set(bad.json())
    await publish(js, "order.created", "c2", {"order_id": "1002", "lines": [{"sku": "MUG", "qty": 1}]}, source="ce")
    await eventually(lambda: drained(js), what="the order applied")
    one = (await inventory.get("/orders/1002")).json()  # the one source that has it
    assert (one["order_id"], one["source"], one["state"]) == ("1002", "ce", "reserved")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "key"),
    [
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": "1"}]}, "application/json", 400, "lines[0].qty"),
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "ttl_s": "60"}, "application/json", 400, "ttl_s"),
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}], "extra": 1}, "application/json", 400, "body"),
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1, "note": "x"}]}, "application/json", 400, "lines[0]"),
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}]}, "text/plain", 415, None),
        ({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}]}, None, 415, None),
    ],
)
async def test_a_body_is_read_as_strictly_as_it_is_declared(
    inventory: AsyncTestClient, js: JetStreamContext, body: dict, content_type: str | None, status: int, key: str | None
) -> None:
    """A reservation that stock could satisfy, refused for its body alone: a number sent as a string, a field
    the request does not have, a media type that is not JSON. Nothing is reserved."""
    await _stock(js, "A", 5)
    headers = {**AUTH, **({"content-type": content_type} if content_type else {})}
    raw = json.dumps(body).encode()
    response = await inventory.post("/reservations", content=raw, headers=headers)
    assert response.status_code == status, response.text
    assert refusal_problem(response) is None
    if key is not None:
        problems = response.json()["problems"]
        assert problems[0]["source"] == "body" and key in problems[0]["key"] + problems[0]["message"], problems
    assert (await sku(inventory, "A"))["reserved"] == 0
    # The same request with the declared types and media type is taken.
    good = {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}]}
    assert (await inventory.post("/reservations", json=good, headers=AUTH)).status_code == 201


@pytest.mark.parametrize("qty", ["99999999999999999999999", "1.0e10", "5e9"])
async def test_a_huge_integral_number_is_out_of_range_like_a_huge_integer(inventory: AsyncTestClient, qty: str) -> None:
    """JSON Schema's integers include 1.0e10: it is refused by the quantity's bound (422), as the same value
    written as digits is, not as a number of another type."""
    raw = b'{"reservation_id": "r1", "lines": [{"sku": "A", "qty": ' + qty.encode() + b"}]}"
    response = await inventory.post("/reservations", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert (response.status_code, response.json()["error"]) == (422, "invalid_reservation"), response.text
