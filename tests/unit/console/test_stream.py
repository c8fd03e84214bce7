"""EventFilter.admits: an order's events through the search form's other fields."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.contracts import HEADER_EVENT_TYPE, HEADER_SOURCE
from services.console.stream import EventFilter, StoredEvent

_AT = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)


def _event(event_type: str = "order.created", stored: str | None = "2026-12-08T10:00:00.123456789Z") -> StoredEvent:
    headers = {HEADER_SOURCE: "shop", HEADER_EVENT_TYPE: event_type}
    if stored is not None:
        headers["Nats-Time-Stamp"] = stored
    return StoredEvent(1, f"commerce.shop.{event_type}", headers, b'{"sku": "A-1"}')


@pytest.mark.parametrize(
    ("wanted", "admitted"),
    [
        (EventFilter(), True),
        (EventFilter(since=_AT), True),  # at since: inside
        (EventFilter(since=_AT + dt.timedelta(seconds=1)), False),
        (EventFilter(until=_AT), False),  # until is exclusive
        (EventFilter(until=_AT + dt.timedelta(seconds=1)), True),
        (EventFilter(since=_AT - dt.timedelta(days=1), until=_AT - dt.timedelta(hours=1)), False),
        (EventFilter(event_type="order.cancelled"), False),
        (EventFilter(text='"A-1"'), True),
        (EventFilter(text='"B-2"'), False),
        (EventFilter(source="store"), False),
    ],
)
def test_an_event_is_admitted_by_every_field_of_the_filter(wanted: EventFilter, admitted: bool) -> None:
    assert wanted.admits(_event()) is admitted


def test_an_event_without_a_stored_time_passes_the_time_bounds() -> None:
    assert EventFilter(since=_AT + dt.timedelta(days=1)).admits(_event(stored=None))
