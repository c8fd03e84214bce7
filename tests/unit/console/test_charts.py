"""Availability over a SKU's ledger trail, and its SVG."""

from __future__ import annotations

from services.console.charts import availability_points, line_chart


def test_availability_follows_the_deltas_from_the_state_before_the_first_row() -> None:
    rows = [
        {"occurred_at": "t1", "on_hand_delta": 10, "reserved_delta": 0, "committed_delta": 0},
        {"occurred_at": "t2", "on_hand_delta": 0, "reserved_delta": 3, "committed_delta": 0},
        {"occurred_at": "t3", "on_hand_delta": -3, "reserved_delta": -3, "committed_delta": 0},
        {"occurred_at": "t4", "on_hand_delta": 0, "reserved_delta": -2, "committed_delta": 2},
    ]
    assert availability_points(rows) == [("t1", 10), ("t2", 7), ("t3", 7), ("t4", 7)]
    start = {"on_hand": 5, "reserved": 2, "committed": 0}
    assert availability_points(rows[:2], start) == [("t1", 13), ("t2", 10)]


def test_the_chart_is_a_labelled_svg_step_line_and_an_empty_trail_says_so() -> None:
    svg = line_chart([("2026-12-01T10:00:00", 10), ("2026-12-01T11:00:00", 4)], title="Available <A>")
    assert svg.startswith('<svg class="chart"') and 'aria-label="Available &lt;A&gt;"' in svg
    assert 'class="line"' in svg and ">10<" in svg
    assert "No ledger rows" in line_chart([], title="x")
