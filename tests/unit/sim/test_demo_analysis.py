from __future__ import annotations

import math

import pytest

from stockwire.demo.analysis import (
    ChannelDivergence,
    channel_divergences,
    histogram,
    latencies_to_channels,
    percentile,
    rates,
    summarise,
)


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_a_channel_reflects_a_version_at_the_first_arrival_of_that_version_or_a_newer_one() -> None:
    changes = {("A", 1): 10.0, ("A", 2): 10.5, ("A", 3): 11.0, ("B", 1): 10.0}
    arrivals = {
        # storefront got every version; marketplace had 1 and 2 coalesced into 3; b2b never saw B.
        "storefront": [("A", 1, 5, 10.1), ("A", 2, 4, 10.6), ("A", 3, 3, 11.2), ("B", 1, 9, 10.3)],
        "marketplace": [("A", 3, 0, 11.5), ("B", 1, 6, 10.2)],
        "b2b": [("A", 2, 4, 10.7), ("A", 1, 5, 10.9), ("A", 3, 3, 11.1)],
    }
    per_channel, all_channels, missing = latencies_to_channels(changes, arrivals)
    assert per_channel["storefront"] == pytest.approx([0.1, 0.1, 0.2, 0.3])
    assert per_channel["marketplace"] == pytest.approx([1.5, 1.0, 0.5, 0.2])
    # b2b: version 1 arrived late, but version 2 (newer) arrived first.
    assert per_channel["b2b"] == pytest.approx([0.7, 0.2, 0.1])
    assert all_channels == pytest.approx([1.5, 1.0, 0.5])
    assert missing == 1


def test_summaries_are_in_milliseconds() -> None:
    summary = summarise([0.010, 0.020, 0.030, 0.040], missing=2)
    assert summary.as_dict() == {
        "count": 4,
        "p50_ms": 20.0,
        "p95_ms": 40.0,
        "p99_ms": 40.0,
        "max_ms": 40.0,
        "missing": 2,
    }


def test_divergences_account_for_each_channels_buffer() -> None:
    final = {"A": (10, 7), "B": (2, 3)}
    caches = {
        "storefront": {"A": (10, 7), "B": (2, 3)},
        "marketplace": {"A": (7, 7), "B": (0, 3)},
        "b2b": {"A": (10, 6)},
    }
    assert channel_divergences(final, caches, {"marketplace": 3}) == [
        ChannelDivergence("b2b", "A", 10, 7, 10, 6),
        ChannelDivergence("b2b", "B", 2, 3, None, None),
    ]


def test_histogram_keeps_every_value() -> None:
    values = [float(v) for v in range(1000)] + [50_000.0]
    bins = histogram(values, bins=10)
    assert sum(count for _, _, count in bins) == len(values)
    assert bins[-1][1] == 50_000.0


def test_rates_fill_empty_seconds() -> None:
    assert rates([100.2, 100.7, 102.1], start=100.0) == [(0.0, 2), (1.0, 0), (2.0, 1)]
