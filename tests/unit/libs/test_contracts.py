"""Wire names built in one place: message ids and dead-letter headers."""

from __future__ import annotations

from libs.contracts import (
    DEADLETTER_HEADERS,
    HEADER_MSG_ID,
    HEADER_SOURCE,
    commerce_msg_id,
    deadletter_headers,
    deadletter_msg_id,
)


def test_message_ids_keep_their_published_formats() -> None:
    # Stored streams hold these ids: a change of format would defeat deduplication across an upgrade.
    assert commerce_msg_id("shop", "evt-1") == "shop:evt-1"
    assert deadletter_msg_id("inventory", "COMMERCE", 42) == "deadletter:inventory:COMMERCE:42"


def test_a_dead_letter_keeps_the_original_headers_under_its_own_message_id() -> None:
    original = {HEADER_MSG_ID: "shop:evt-1", HEADER_SOURCE: "shop"}
    headers = deadletter_headers(
        original,
        consumer="inventory",
        reason="x" * 5000,
        subject="commerce.shop.order~2Ecreated",
        stream="COMMERCE",
        stream_seq=7,
        delivery_count=3,
    )
    assert headers[HEADER_MSG_ID] == "deadletter:inventory:COMMERCE:7"
    assert headers[HEADER_SOURCE] == "shop"
    assert set(DEADLETTER_HEADERS) <= headers.keys()
    assert len(headers["Stockwire-Error"]) == 1000
    assert headers["Stockwire-Original-Seq"] == "7" and headers["Stockwire-Delivery-Count"] == "3"
    assert original[HEADER_MSG_ID] == "shop:evt-1"  # the caller's mapping is not changed
