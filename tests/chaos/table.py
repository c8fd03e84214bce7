"""Render the chaos results (``.data/chaos/<form>.jsonl``) as the Markdown table of docs/reliability.md.

    python -m tests.chaos.table [.data/chaos/bounded.jsonl]

The newest row of each scenario wins.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .harness import results_path


def _load(row: dict[str, Any]) -> str:
    if row.get("orders") is None:
        return f"{row.get('webhooks', '?')} webhooks"
    return f"{row['orders']} orders, {row.get('webhooks')} webhooks, {row.get('rate_offered')}/s offered"


def _recovery(fault: dict[str, Any]) -> str:
    seconds = fault.get("recovery_s")
    return "not recovered" if seconds is None else f"{seconds:.1f}"


def render(rows: list[dict[str, Any]]) -> str:
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        newest[row["scenario"]] = row
    lines = [
        "| scenario | load held | faults survived | events lost | recovery s | invariants |",
        "|---|---|---|---|---|---|",
    ]
    for row in newest.values():
        faults = row.get("faults") or []
        names = "; ".join(f["fault"] for f in faults)
        recovery = "; ".join(_recovery(f) for f in faults)
        lost = row.get("events_lost")
        verdict = "all hold" if row.get("ok") else "FAILED: " + "; ".join(row.get("problems") or [])[:300]
        lines.append(
            f"| {row['scenario']} | {_load(row)} | {names} | {'?' if lost is None else lost} | {recovery} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else results_path()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
