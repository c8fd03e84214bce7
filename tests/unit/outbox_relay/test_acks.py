"""What a batch's PubAcks mean for its rows."""

from __future__ import annotations

import pytest

from services.outbox_relay.acks import Ack, settle_batch


def test_all_acknowledged_rows_are_published_and_duplicates_counted() -> None:
    outcome = settle_batch([1, 2, 3], [Ack("S", 10), Ack("S", 7, duplicate=True), Ack("S", 11)])
    assert outcome.ok
    assert outcome.published == [1, 2, 3]
    assert (outcome.new, outcome.duplicates) == (2, 1)
    assert outcome.first_error is None


def test_a_failure_keeps_acknowledged_neighbours_and_retries_the_rest() -> None:
    outcome = settle_batch([1, 2, 3, 4], [Ack("S", 1), None, Ack("S", 2, duplicate=True), RuntimeError("gone")])
    assert not outcome.ok
    assert outcome.published == [1, 3]
    assert outcome.failed == [2, 4]
    assert outcome.first_error == "no PubAck in time"
    assert outcome.stored_after_failure == 0, "a duplicate behind a failure was stored earlier, in order"


def test_a_new_message_stored_after_a_refused_one_is_reported() -> None:
    outcome = settle_batch([1, 2], [ValueError("refused"), Ack("S", 5)])
    assert outcome.failed == [1] and outcome.published == [2]
    assert outcome.stored_after_failure == 1
    assert outcome.first_error == "ValueError: refused"


def test_one_result_per_row() -> None:
    with pytest.raises(ValueError):
        settle_batch([1, 2], [Ack("S", 1)])
