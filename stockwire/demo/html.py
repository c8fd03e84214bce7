"""The report as one self-contained HTML page: tables and inline SVG charts, no scripts, no external assets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["bar_chart", "line_chart", "render_html"]

_PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")
Point = tuple[float, float]


def _nice_max(value: float) -> float:
    if value <= 0 or math.isnan(value):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _frame(
    width: int, height: int, pad: tuple[int, int, int, int], x_max: float, y_max: float, x_label: str, y_label: str
) -> list[str]:
    left, right, top, bottom = pad
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#cbd5e1"/>']
    for i in range(6):
        y = top + plot_h - plot_h * i / 5
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef2f7"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_max * i / 5)}</text>')
    for i in range(6):
        x = left + plot_w * i / 5
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_fmt(x_max * i / 5)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    return out


def line_chart(
    series: Mapping[str, Sequence[Point]], *, x_label: str, y_label: str, width: int = 720, height: int = 260
) -> str:
    """An SVG line chart of one or more series of (x, y) points."""
    pad = (60, 190, 12, 36)
    points = [p for values in series.values() for p in values if not math.isnan(p[1])]
    x_max = _nice_max(max((p[0] for p in points), default=1.0))
    y_max = _nice_max(max((p[1] for p in points), default=1.0))
    left, right, top, bottom = pad
    plot_w, plot_h = width - left - right, height - top - bottom
    out = _frame(width, height, pad, x_max, y_max, x_label, y_label)
    for index, (name, values) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        coords = " ".join(
            f"{left + plot_w * x / x_max:.1f},{top + plot_h - plot_h * y / y_max:.1f}"
            for x, y in values
            if not math.isnan(y)
        )
        if coords:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{coords}"/>')
        ly = top + 14 + index * 18
        out.append(f'<rect x="{width - right + 12}" y="{ly - 9}" width="12" height="3" fill="{colour}"/>')
        out.append(f'<text x="{width - right + 30}" y="{ly - 4}">{escape(name)}</text>')
    return _svg(width, height, out)


def bar_chart(
    bins: Sequence[tuple[float, float, int]],
    markers: Mapping[str, float],
    *,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 260,
) -> str:
    """An SVG histogram of (low, high, count) bins with vertical markers (e.g. p50, p99)."""
    pad = (60, 190, 12, 36)
    if not bins:
        return _svg(width, height, ['<text x="20" y="40">no data</text>'])
    x_max = _nice_max(max(high for _, high, _ in bins[:-1] or bins))
    y_max = _nice_max(max(count for _, _, count in bins))
    left, right, top, bottom = pad
    plot_w, plot_h = width - left - right, height - top - bottom
    out = _frame(width, height, pad, x_max, y_max, x_label, y_label)
    for low, high, count in bins:
        x0 = left + plot_w * min(low, x_max) / x_max
        x1 = left + plot_w * min(high, x_max) / x_max
        h = plot_h * count / y_max
        out.append(
            f'<rect x="{x0:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, x1 - x0 - 1):.1f}" '
            f'height="{h:.1f}" fill="#93c5fd"/>'
        )
    for index, (name, value) in enumerate(markers.items()):
        if math.isnan(value):
            continue
        colour = _PALETTE[(index + 1) % len(_PALETTE)]
        x = left + plot_w * min(value, x_max) / x_max
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{colour}" stroke-dasharray="4 3"/>'
        )
        ly = top + 14 + index * 18
        out.append(f'<rect x="{width - right + 12}" y="{ly - 9}" width="12" height="3" fill="{colour}"/>')
        out.append(f'<text x="{width - right + 30}" y="{ly - 4}">{escape(name)} {value:,.1f} ms</text>')
    return _svg(width, height, out)


def _svg(width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="system-ui, sans-serif" font-size="11" fill="#334155">' + "".join(body) + "</svg>"
    )


def _per_second(rows: Sequence[Mapping[str, Any]], key: str) -> list[Point]:
    out = []
    for before, after in itertools.pairwise(rows):
        dt = after["t"] - before["t"]
        if dt > 0 and after.get(key) is not None and before.get(key) is not None:
            out.append((after["t"], max(0.0, (after[key] - before[key]) / dt)))
    return out


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> list[Point]:
    return [(row["t"], float(row[key])) for row in rows if row.get(key) is not None]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell if isinstance(cell, _Raw) else escape(_cell(cell))}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Markup made here, not data: inserted as is."""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _badge(ok: bool) -> _Raw:
    return _Raw('<span class="ok">PASS</span>' if ok else '<span class="bad">FAIL</span>')


def render_html(report: Mapping[str, Any]) -> str:
    rows = report.get("timeseries", [])
    latency = report["latency"]
    all_ch = latency["webhook_to_all_channels"]
    throughput = report["throughput"]
    webhooks, orders = report["webhooks"], report["orders"]
    headline = _table(
        ["figure", "value"],
        [
            [
                "orders sent / reserved / rejected",
                f"{orders['sent']:,} / {orders['reserved']:,} / {orders['rejected']:,}",
            ],
            ["orders per minute (processed)", throughput["orders_per_min_processed"]],
            ["orders per minute (offered)", throughput["orders_per_min_offered"]],
            ["webhooks per second", throughput["webhooks_per_s"]],
            ["inventory events per second", throughput["inventory_events_per_s"]],
            ["events applied by inventory", report["events"].get("applied_by_inventory", 0)],
            [
                "webhook → all channels p50 / p95 / p99 (ms)",
                f"{_cell(all_ch['p50_ms'])} / {_cell(all_ch['p95_ms'])} / {_cell(all_ch['p99_ms'])}",
            ],
            [
                "webhooks accepted / duplicate / spooled / refused",
                f"{webhooks['accepted']:,} / {webhooks['duplicate']:,} / {webhooks['spooled']:,} / "
                f"{webhooks['rejected'] + webhooks['forged_refused']:,}",
            ],
            ["producer retries / given up", f"{webhooks['retries']:,} / {webhooks['gave_up']:,}"],
        ],
    )
    invariants = _table(
        ["invariant", "", "detail"], [[i["name"], _badge(i["ok"]), i["detail"]] for i in report["invariants"]]
    )
    charts = [
        (
            "Throughput",
            line_chart(
                {
                    "webhooks delivered/s": _per_second(rows, "delivered"),
                    "orders decided/s": _per_second(rows, "orders_decided"),
                    "inventory events/s": _per_second(rows, "inventory_events"),
                    "channel updates/s": _per_second(rows, "channel_updates"),
                },
                x_label="seconds since start",
                y_label="per second",
            ),
        ),
        (
            "Consumer lag (pending + unacknowledged)",
            line_chart(
                {
                    "inventory (COMMERCE)": _series(rows, "inventory_lag"),
                    "notifier (INVENTORY)": _series(rows, "notifier_lag"),
                },
                x_label="seconds since start",
                y_label="messages",
            ),
        ),
        (
            "Webhook → all channels latency",
            bar_chart(
                [tuple(b) for b in latency["histogram_ms"]],
                {"p50": all_ch["p50_ms"], "p95": all_ch["p95_ms"], "p99": all_ch["p99_ms"]},
                x_label="milliseconds",
                y_label="changes",
            ),
        ),
    ]
    per_channel = _table(
        ["channel", "buffer", "updates received", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [
                name,
                info["buffer"],
                info["updates_received"],
                *(
                    latency["webhook_to_channel"].get(name, {}).get(k, math.nan)
                    for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
                ),
            ]
            for name, info in report["channels"].items()
        ],
    )
    ledger_rows = []
    for row in report["ledger"]["skus"]:
        want, have = row["expected"], row["ledger"] or {}
        ledger_rows.append(
            [
                row["sku"],
                "hot" if row["hot"] else "",
                row["demand"],
                row["supplied"],
                f"{want['on_hand']} / {want['reserved']} / {want['committed']}",
                f"{have.get('on_hand')} / {have.get('reserved')} / {have.get('committed')}",
                have.get("available"),
                row["version"],
                _badge(row["ok"]),
            ]
        )
    ledger = _table(
        [
            "sku",
            "",
            "demand",
            "supplied",
            "expected on hand / reserved / committed",
            "ledger",
            "available",
            "version",
            "",
        ],
        ledger_rows,
    )
    faults = (
        _table(
            ["fault", "at share of sale", "started (s)", "done (s)", "ok"],
            [[f["name"], f["at"], f.get("started_s"), f.get("done_s"), f.get("ok")] for f in report.get("faults", [])],
        )
        if report.get("faults")
        else "<p>none</p>"
    )
    settle = _table(
        ["waited for", "ok", "seconds", "detail"],
        [[s["name"], s["ok"], s["seconds"], s["detail"] if not s["ok"] else ""] for s in report.get("settle", [])],
    )
    verdict = "all invariants hold" if report["ok"] else "SOME INVARIANTS FAILED"
    sections = "".join(f"<h2>{escape(title)}</h2>{svg}" for title, svg in charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #0f172a; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #e2e8f0; padding: 4px 10px; text-align: left; vertical-align: top; }}
th {{ background: #f1f5f9; }}
.ok {{ color: #fff; background: #059669; padding: 1px 6px; border-radius: 3px; font-weight: 600; }}
.bad {{ color: #fff; background: #dc2626; padding: 1px 6px; border-radius: 3px; font-weight: 600; }}
.verdict {{ font-size: 1.2rem; font-weight: 600; color: {"#059669" if report["ok"] else "#dc2626"}; }}
small {{ color: #64748b; }}
</style></head><body>
<h1>{escape(report["title"])}</h1>
<p class="verdict">{escape(verdict)}</p>
<p><small>{escape(report["generated_at"])} · {report["machine"]["cpus"]} CPUs
 · Python {escape(report["machine"]["python"])} · seed {report["config"]["seed"]}
 · {report["config"]["orders"]:,} orders · {escape(report["dialect"]["name"])}</small></p>
<h2>Invariants</h2>{invariants}
<h2>Headline</h2>{headline}
{sections}
<p><small>{escape(latency["definition"])}</small></p>
<h2>Channels</h2>{per_channel}
<h2>Ledger against the ground truth</h2>{ledger}
<h2>Faults injected</h2>{faults}
<h2>Settling</h2>{settle}
</body></html>
"""
