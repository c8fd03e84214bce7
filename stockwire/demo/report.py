"""The flash-sale report: invariants and figures from an :class:`Observation`, as a JSON-ready dict.

Pure: everything measured is in the observation; :func:`build_report` only judges and summarises it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stockwire.sim.config import SimConfig
from stockwire.sim.model import Decision, Expectation, StockLevels, compare_levels, oversold_units
from stockwire.sim.runner import SimResult

from .analysis import Arrival, channel_divergences, histogram, latencies_to_channels, rates, summarise

__all__ = ["Invariant", "Observation", "SettleStep", "build_report"]


@dataclass(frozen=True)
class SettleStep:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Invariant:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Observation:
    config: SimConfig
    result: SimResult
    decisions: dict[str, Decision]
    expectation: Expectation
    actual: dict[str, StockLevels | None]
    versions: dict[str, int]
    worst_oversold: int
    inventory_kinds: dict[str, int]
    inventory_messages: int
    sources: Mapping[tuple[str, int], str]
    snapshots: Mapping[tuple[str, int], float]
    latest_snapshot: dict[str, tuple[int, int]]
    """SKU → (available, version) of the newest availability snapshot."""
    decision_times: list[float]
    caches: dict[str, dict[str, tuple[int, int]]]
    arrivals: dict[str, list[Arrival]]
    sink_counts: dict[str, dict[str, int]]
    buffers: dict[str, int]
    timeseries: list[dict[str, Any]]
    deadletters: list[dict[str, Any]]
    deadletter_allowed: int = 0
    ledger_verify: dict[str, Any] | None = None
    settle: list[SettleStep] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)


def _orders(observation: Observation) -> dict[str, Any]:
    decisions = observation.decisions
    states = Counter(state.value for state in observation.expectation.states.values())
    return {
        "sent": len(observation.result.truth.order_ids),
        "reserved": sum(1 for d in decisions.values() if d.accepted),
        "rejected": sum(1 for d in decisions.values() if not d.accepted),
        "expired": sum(1 for d in decisions.values() if d.expired),
        "paid_after_expiry_rejected": sum(1 for d in decisions.values() if d.rejected_later),
        "undecided": len(observation.expectation.undecided),
        "final_states": dict(sorted(states.items())),
    }


def _latency(observation: Observation) -> dict[str, Any]:
    sent_at = observation.result.delivered_at
    from_webhook: dict[tuple[str, int], float] = {}
    for key in observation.snapshots:
        event_id = observation.sources.get(key)
        if event_id is not None and event_id in sent_at:
            from_webhook[key] = sent_at[event_id]
    per_channel, all_channels, missing = latencies_to_channels(from_webhook, observation.arrivals)
    _, from_ledger, _ = latencies_to_channels(dict(observation.snapshots), observation.arrivals)
    all_ms = [s * 1000 for s in all_channels]
    return {
        "webhook_to_all_channels": summarise(all_channels, missing).as_dict(),
        "webhook_to_channel": {name: summarise(values).as_dict() for name, values in per_channel.items()},
        "ledger_to_all_channels": summarise(from_ledger).as_dict(),
        "histogram_ms": histogram(all_ms),
        "definition": (
            "from the moment the producer sent the webhook whose ledger row changed a SKU's availability, "
            "to the first arrival at a channel of that version or a newer one (the notifier coalesces); "
            "all channels = the slowest of the three"
        ),
    }


def _throughput(observation: Observation) -> dict[str, Any]:
    result = observation.result
    sale_s = max(1e-6, result.sale_ended_at - result.sale_started_at)
    orders = len(result.truth.order_ids)
    decided = sorted(t for t in observation.decision_times if t >= result.sale_started_at)
    processed_s = max(1e-6, (decided[-1] - result.sale_started_at) if decided else sale_s)
    first_send = min(result.delivered_at.values(), default=result.started_at)
    return {
        "sale_seconds": round(sale_s, 2),
        "orders_per_min_offered": round(orders / sale_s * 60, 1),
        "orders_per_min_processed": round(len(decided) / processed_s * 60, 1),
        "webhooks_per_s": round(len(result.delivered_at) / max(1e-6, result.ended_at - first_send), 1),
        "inventory_events_per_s": round(observation.inventory_messages / processed_s, 1),
        "orders_decided_per_s": rates(decided, result.sale_started_at),
    }


def _invariants(observation: Observation) -> list[Invariant]:
    expectation, result, stats = observation.expectation, observation.result, observation.result.stats
    final_oversold = oversold_units(level for level in observation.actual.values() if level is not None)
    mismatches = compare_levels(expectation.levels, observation.actual)
    final = {
        sku: (level.available, observation.latest_snapshot.get(sku, (0, 0))[1])
        for sku, level in observation.actual.items()
        if level is not None
    }
    divergences = channel_divergences(final, observation.caches, observation.buffers)
    out = [
        Invariant(
            "zero oversell",
            final_oversold == 0 and observation.worst_oversold == 0,
            f"{final_oversold} units oversold at the end; worst seen in any availability snapshot: "
            f"{observation.worst_oversold}",
        ),
        Invariant(
            "ledger equals the ground truth",
            not mismatches and not expectation.undecided and not expectation.anomalies,
            "every SKU's on_hand, reserved, committed and available match"
            if not mismatches and not expectation.undecided and not expectation.anomalies
            else "; ".join(
                [str(m) for m in mismatches[:6]]
                + [f"{len(expectation.undecided)} orders undecided"] * bool(expectation.undecided)
                + expectation.anomalies[:3]
            ),
        ),
        Invariant(
            "channel caches converged",
            not divergences,
            f"{len(observation.caches)} channels x {len(final)} SKUs show the final availability (less buffers)"
            if not divergences
            else "; ".join(str(d) for d in divergences[:6]),
        ),
        Invariant(
            "no webhook lost",
            stats.gave_up == 0 and stats.rejected == 0,
            f"{len(result.delivered_at)} events delivered; {stats.gave_up} given up, {stats.rejected} refused",
        ),
        Invariant(
            "forged webhooks refused",
            stats.forged_accepted == 0,
            f"{stats.forged_refused} refused, {stats.forged_accepted} accepted",
        ),
        Invariant(
            "nothing unexpected in DEADLETTER",
            len(observation.deadletters) <= observation.deadletter_allowed,
            f"{len(observation.deadletters)} dead letters (scenario allows {observation.deadletter_allowed})"
            + "".join(f"; {d['subject']}: {d['error']}" for d in observation.deadletters[:3]),
        ),
    ]
    verify = observation.ledger_verify
    if verify is not None:
        if verify.get("ran"):
            out.append(Invariant("ledger verify", bool(verify.get("ok")), _last_line(str(verify.get("output", "")))))
        else:
            out.append(Invariant("ledger verify", False, str(verify.get("output", "did not run"))))
    for step in observation.settle:
        if not step.ok:
            out.append(Invariant(f"settled: {step.name}", False, step.detail))
    return out


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _ledger_table(observation: Observation) -> list[dict[str, Any]]:
    rows = []
    for sku, want in sorted(observation.expectation.levels.items()):
        have = observation.actual.get(sku)
        spec = next((s for s in observation.result.plan.catalogue if s.sku == sku), None)
        rows.append(
            {
                "sku": sku,
                "hot": bool(spec and spec.hot),
                "demand": spec.demand if spec else None,
                "supplied": spec.stock if spec else None,
                "expected": want.as_dict(),
                "ledger": None if have is None else have.as_dict(),
                "version": observation.versions.get(sku),
                "ok": have == want,
            }
        )
    return rows


def _config(config: SimConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _dialect(config: SimConfig) -> dict[str, Any]:
    """Which dialect the orders were written in, and where each kind of webhook went."""
    if config.dialect == "commerce-engine":
        return {
            "name": "Commerce Engine webhooks",
            "profile": "commerce-engine",
            "sources": {"orders, payments, shipments, returns": config.order_source, "stock": config.source},
        }
    return {"name": "Stockwire's own dialect", "profile": "stockwire", "sources": {"everything": config.source}}


def build_report(observation: Observation, *, title: str = "Stockwire flash sale") -> dict[str, Any]:
    invariants = _invariants(observation)
    result = observation.result
    return {
        "title": title,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "ok": all(i.ok for i in invariants),
        "dialect": _dialect(observation.config),
        "invariants": [i.as_dict() for i in invariants],
        "webhooks": {
            **result.stats.as_dict(),
            "events_planned": result.plan.count(),
            "events_delivered": len(result.delivered_at),
            "follow_ups_sent": result.follow_ups_sent,
            "follow_ups_dropped": result.follow_ups_dropped,
        },
        "orders": _orders(observation),
        "events": {
            "applied_by_inventory": max((row.get("inventory_applied", 0) for row in observation.timeseries), default=0),
            "inventory_published": observation.inventory_messages,
            "by_kind": dict(sorted(observation.inventory_kinds.items())),
        },
        "ledger": {"skus": _ledger_table(observation), "verify": observation.ledger_verify},
        "channels": {
            name: {
                "buffer": observation.buffers.get(name, 0),
                "updates_received": len(observation.arrivals.get(name, [])),
                "counts": observation.sink_counts.get(name, {}),
            }
            for name in observation.caches
        },
        "latency": _latency(observation),
        "throughput": _throughput(observation),
        "timeseries": observation.timeseries,
        "deadletter": {"count": len(observation.deadletters), "messages": observation.deadletters[:50]},
        "settle": [dataclasses.asdict(step) for step in observation.settle],
        "faults": observation.faults,
        "phases_s": {k: round(v, 2) for k, v in result.phase_seconds.items()},
        "config": _config(observation.config),
    }


def failed(report: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return [i for i in report["invariants"] if not i["ok"]]
