"""The demo's progress lines: at most 100 columns, and a state is printed once."""

from __future__ import annotations

import io

from stockwire.demo.run import PROGRESS_WIDTH, _progress_printer, progress_line


def _row(t: float, scale: int = 1, lag: int | None = 5) -> dict[str, object]:
    return {
        "t": t,
        "requests": 123_456 * scale,
        "delivered": 120_000 * scale,
        "duplicates": 3_000 * scale,
        "spooled": 1_234 * scale,
        "retries": 7,
        "progress": 0.456,
        "orders_decided": 9_876 * scale,
        "orders_reserved": 8_765 * scale,
        "inventory_events": 50_000 * scale,
        "inventory_applied": 99_999 * scale,
        "inventory_lag": None if lag is None else lag * scale,
        "notifier_lag": 9_900 * scale,
        "channel_updates": 77_777 * scale,
    }


def test_progress_lines_fit_100_columns_and_keep_the_orders() -> None:
    for scale in (1, 1_000, 1_000_000):
        for lag in (None, 5):
            line = progress_line(_row(1234.5, scale, lag), 10_000 * scale)
            assert len(line) <= PROGRESS_WIDTH, line
            assert line.startswith("[ 1234s] sale  46% | orders ")
    line = progress_line(_row(3.0), 10_000)
    assert "orders 9,876/10,000, 8,765 reserved" in line and "applied 99,999 (lag 5)" in line and "sent 123,456" in line


def test_a_repeated_state_is_printed_once() -> None:
    out = io.StringIO()
    show = _progress_printer(out, 10_000)
    show(_row(1.0))
    show(_row(2.0))  # nothing changed but the clock: the final sample after settling
    later = {**_row(3.0), "orders_decided": 10_000}
    show(later)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "orders 10,000/10,000" in lines[1]


def test_a_line_that_says_nothing_new_but_the_time_is_not_printed() -> None:
    """Numbers the line does not show (deliveries, or channel updates cut off at 100 columns) change
    after the sale has settled: the lines printed are still all different."""
    out = io.StringIO()
    show = _progress_printer(out, 10_000)
    settled = {**_row(6.0), "orders_decided": 10_000}
    show(settled)
    show({**settled, "t": 9.0, "delivered": 130_000, "retries": 9})
    show({**settled, "t": 10.0, "channel_updates": 77_790})
    show({**settled, "t": 10.5, "channel_updates": 77_791})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    show({**settled, "t": 11.0, "inventory_applied": 100_000})
    assert [line.partition("]")[2] for line in out.getvalue().splitlines()][1:] == [
        progress_line({**settled, "inventory_applied": 100_000}, 10_000).partition("]")[2]
    ]
