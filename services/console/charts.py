"""A small server-rendered SVG line chart (no script): availability over a SKU's ledger trail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["availability_points", "line_chart"]


def availability_points(
    entries: Sequence[Mapping[str, Any]], start: Mapping[str, int] | None = None
) -> list[tuple[str, int]]:
    """(occurred_at, available) after each ledger row, from running sums of its deltas (from ``start``'s
    on_hand, reserved and committed when the trail begins after version 1)."""
    on_hand = int((start or {}).get("on_hand", 0))
    reserved = int((start or {}).get("reserved", 0))
    committed = int((start or {}).get("committed", 0))
    points: list[tuple[str, int]] = []
    for entry in entries:
        on_hand += int(entry.get("on_hand_delta") or 0)
        reserved += int(entry.get("reserved_delta") or 0)
        committed += int(entry.get("committed_delta") or 0)
        points.append((str(entry.get("occurred_at") or entry.get("version")), on_hand - reserved - committed))
    return points


def line_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 640, height: int = 180) -> str:
    """An SVG step line of ``points`` (label, value) with its min and max marked; empty: a note."""
    if not points:
        return '<p class="muted">No ledger rows to chart.</p>'
    pad_left, pad, inner_w, inner_h = 48, 12, width - 60, height - 36
    values = [v for _, v in points]
    low, high = min(0, *values), max(1, *values)
    span = high - low or 1
    step = inner_w / len(points)

    def y(value: int) -> float:
        return pad + inner_h - (value - low) / span * inner_h

    # Each row's value holds until the next row: a step line across the whole width.
    path = [f"M{pad_left:.1f},{y(points[0][1]):.1f}"]
    for i, (_, value) in enumerate(points[1:], start=1):
        path.append(f"H{pad_left + i * step:.1f}V{y(value):.1f}")
    path.append(f"H{pad_left + inner_w:.1f}")
    zero = y(0)
    first, last = escape(points[0][0][:19]), escape(points[-1][0][:19])
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{pad_left}" y1="{zero:.1f}" x2="{pad_left + inner_w}" y2="{zero:.1f}" class="axis"/>'
        f'<text x="{pad_left - 6}" y="{y(high) + 4:.1f}" text-anchor="end">{high}</text>'
        f'<text x="{pad_left - 6}" y="{y(low) + 4:.1f}" text-anchor="end">{low}</text>'
        f'<path d="{"".join(path)}" class="line"/>'
        f'<text x="{pad_left}" y="{height - 4}">{first}</text>'
        f'<text x="{pad_left + inner_w}" y="{height - 4}" text-anchor="end">{last}</text>'
        "</svg>"
    )
