"""Render the chaos results (``.data/chaos/<form>.jsonl``) as the Markdown table of docs/reliability.md.

    python -m tests.chaos.table [.data/chaos/bounded.jsonl]

The newest row of each scenario wins; recoveries at or over the bound of the suite are in bold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .harness import RECOVERY_BOUND_S, results_path


def _load(row: dict[str, Any]) -> str:
    if row.get("orders") is None and "rate_offered" in row:
        return "sale cut short (a fault did not recover)"
    if row.get("orders") is None:
        return f"{row.get('webhooks', '?')} webhooks"
    return f"{row['orders']} orders, {row.get('webhooks')} webhooks, {row.get('rate_offered'):.0f}/s offered"


def _recovery(fault: dict[str, Any]) -> str:
    seconds = fault.get("recovery_s")
    if seconds is None:
        return "not recovered"
    return f"**{seconds:.1f}**" if seconds >= RECOVERY_BOUND_S else f"{seconds:.1f}"


def _survived(row: dict[str, Any]) -> str:
    recovered = [f.get("recovery_s") for f in row.get("faults") or []]
    if not row.get("ok") or None in recovered:
        return "no"
    if any(s >= RECOVERY_BOUND_S for s in recovered if s is not None):
        return "yes, slowly"
    return "yes"


def render(rows: list[dict[str, Any]]) -> str:
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        newest[row["scenario"]] = row
    lines = [
        "| scenario | load held | faults | survived | events lost | recovery s | what failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in newest.values():
        faults = row.get("faults") or []
        names = "; ".join(f["fault"] for f in faults)
        recovery = "; ".join(_recovery(f) for f in faults)
        lost = row.get("events_lost")
        failed = "; ".join(problem[:160] for problem in row.get("problems") or [])
        lines.append(
            f"| {row['scenario']} | {_load(row)} | {names} | {_survived(row)} | {'?' if lost is None else lost} "
            f"| {recovery} | {failed} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else results_path()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
