"""The history checker on histories made by hand: each rule it enforces catches its violation."""

from __future__ import annotations

from collections import Counter

import pytest

from stockwire.sim.config import SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import GroundTruth
from stockwire.sim.producer import DeliveryStats
from stockwire.sim.runner import SimResult

from .harness import Stored, acknowledged_out_of_order, check_history

pytestmark = pytest.mark.chaos


def _result(acked: dict[str, float]) -> SimResult:
    config = SimConfig(orders=1)
    return SimResult(
        plan=generate_plan(config),
        truth=GroundTruth(),
        stats=DeliveryStats(),
        delivered_at=dict(acked),
        started_at=0.0,
        sale_started_at=0.0,
        sale_ended_at=1.0,
        ended_at=1.0,
        acknowledged_at=dict(acked),
    )


def _clean() -> tuple[dict[str, float], list[Stored], set[str], list[tuple[object, ...]]]:
    acked = {"a": 10.0, "b": 11.0, "c": 12.0}
    stored = [Stored(1, "a", 9.9), Stored(2, "b", 10.9), Stored(3, "c", 11.9)]
    inbox = {"shop:a", "shop:b", "shop:c"}
    ledger = [("shop:a", "S", "received", 1, None), ("shop:b", "S", "reserved", 1, "o1")]
    return acked, stored, inbox, ledger


def test_a_clean_history_passes() -> None:
    acked, stored, inbox, ledger = _clean()
    problems, figures = check_history(
        _result(acked), stored, inbox, ledger, 0, Counter({("inventory", "7"): 1}), "shop"
    )
    assert problems == [] and figures["lost"] == 0


def test_lost_duplicated_unsettled_and_repeated_are_each_caught() -> None:
    acked, stored, inbox, ledger = _clean()
    stored = [s for s in stored if s.event_id != "c"] + [Stored(4, "b", 10.9)]
    inbox.discard("shop:a")
    ledger.append(ledger[-1])
    problems, figures = check_history(
        _result(acked), stored, inbox, ledger, 1, Counter({("inventory", "7"): 2}), "shop"
    )
    text = " | ".join(problems)
    for expected in (
        "not in COMMERCE",
        "more than once",
        "never settled",
        "still parked",
        "applied more than once",
        "dead-lettered more than once",
    ):
        assert expected in text
    assert figures["lost"] == 2 and figures["applied_twice"] == 1


def test_an_event_acknowledged_earlier_must_be_published_earlier() -> None:
    # "a" was acknowledged at 10.0 (spooled); "b" reached ingress at 10.5, after that answer, yet "b" has
    # the lower sequence: the spooled event was overtaken.
    stored = [Stored(1, "b", 10.5), Stored(2, "a", 9.0)]
    overtaken = acknowledged_out_of_order({"a": 10.0, "b": 10.6}, stored)
    assert len(overtaken) == 1 and "a was acknowledged" in overtaken[0]
    # Concurrent requests (neither answered before the other arrived) may land in either order.
    assert acknowledged_out_of_order({"a": 10.6, "b": 10.7}, stored) == []
