"""Wire names built in one place: message ids and dead-letter headers."""

from __future__ import annotations

import hashlib

from libs.contracts import (
    DEADLETTER_HEADERS,
    HEADER_EVENT_ID,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_MSG_ID,
    HEADER_REPLAY_OF,
    HEADER_SOURCE,
    commerce_msg_id,
    deadletter_headers,
    deadletter_msg_id,
    deadletter_original_msg_id,
    replay_headers,
    replay_msg_id,
)


def test_message_ids_keep_their_published_formats() -> None:
    # Stored streams hold these ids: a change of format would defeat deduplication across an upgrade.
    assert commerce_msg_id("shop", "evt-1") == "shop:evt-1"
    assert deadletter_msg_id("inventory", "COMMERCE", 42) == "deadletter:inventory:COMMERCE:42"
    assert replay_msg_id(42, "shop:evt-1") == "replay:42:shop:evt-1"


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


def test_a_long_original_id_is_hashed_in_the_replay_id() -> None:
    longest_kept = "s:" + "e" * (256 - len("replay:42:") - 2)
    assert replay_msg_id(42, longest_kept) == f"replay:42:{longest_kept}"
    hashed = replay_msg_id(42, longest_kept + "x")
    assert hashed == "replay:42:sha256:" + hashlib.sha256((longest_kept + "x").encode()).hexdigest()
    assert replay_msg_id(43, longest_kept + "x") != hashed, "one replay id per dead letter"


def test_the_original_id_of_a_dead_letter_is_its_header_or_for_earlier_releases_source_and_event_id() -> None:
    both = {HEADER_ORIGINAL_MSG_ID: "a:b", HEADER_SOURCE: "s", HEADER_EVENT_ID: "e"}
    assert deadletter_original_msg_id(both) == "a:b"
    assert deadletter_original_msg_id({HEADER_SOURCE: "shop", HEADER_EVENT_ID: "evt-1"}) == "shop:evt-1"
    assert deadletter_original_msg_id({HEADER_SOURCE: "shop"}) is None


def test_a_replayed_message_dead_lettered_again_keeps_its_first_id() -> None:
    def dead_letter(original: dict[str, str], stream_seq: int) -> dict[str, str]:
        return deadletter_headers(
            original,
            consumer="inventory",
            reason="r",
            subject="commerce.shop.x",
            stream="COMMERCE",
            stream_seq=stream_seq,
            delivery_count=1,
        )

    dead = dead_letter({HEADER_MSG_ID: "shop:evt-1", HEADER_SOURCE: "shop"}, 7)
    replayed = replay_headers(dead, deadletter_seq=3, original_msg_id="shop:evt-1")
    assert replayed == {
        HEADER_SOURCE: "shop",
        HEADER_ORIGINAL_MSG_ID: "shop:evt-1",
        HEADER_REPLAY_OF: "3",
        HEADER_MSG_ID: "replay:3:shop:evt-1",
    }
    again = dead_letter(replayed, 9)
    assert again[HEADER_ORIGINAL_MSG_ID] == "shop:evt-1", "not the replay's own id"
    assert again[HEADER_MSG_ID] == "deadletter:inventory:COMMERCE:9"
    assert replay_headers(again, deadletter_seq=5, original_msg_id="shop:evt-1")[HEADER_REPLAY_OF] == "5"
