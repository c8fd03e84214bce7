"""The headers a row is published with."""

from __future__ import annotations

import pytest

from services.outbox_relay.rows import OutboxRow, UnpublishableRow, publish_headers


def _row(headers: str, msg_id: str = "src:1") -> OutboxRow:
    return OutboxRow(7, "commerce.src.order.created", msg_id, headers, b"{}")


def test_msg_id_header_is_always_the_rows_msg_id() -> None:
    headers = publish_headers(_row('{"Nats-Msg-Id":"something-else","Stockwire-Source":"src"}'))
    assert headers == {"Nats-Msg-Id": "src:1", "Stockwire-Source": "src"}
    assert publish_headers(_row("")) == {"Nats-Msg-Id": "src:1"}


def test_non_string_values_are_published_as_json_text() -> None:
    assert publish_headers(_row('{"Attempt": 3, "Ok": true}')) == {"Attempt": "3", "Ok": "true", "Nats-Msg-Id": "src:1"}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"'])
def test_broken_headers_stop_the_relay_with_the_row_named(text: str) -> None:
    with pytest.raises(UnpublishableRow, match="outbox row 7"):
        publish_headers(_row(text))


def test_an_empty_msg_id_cannot_be_deduplicated() -> None:
    with pytest.raises(UnpublishableRow, match="empty msg_id"):
        publish_headers(_row("{}", msg_id=""))
