"""The headline benchmark: a flash sale through Stockwire against the synchronous design it replaces.

    python -m bench.flash_sale [--quick] [--seconds 20] [--rates 10000,20000,...] [--sync-rates 1000,2000,...]
                               [--nats-sync always|default] [--dialect commerce-engine|stockwire]
                               [--stockwire-only]

Measured in one run, on this machine, with the same simulator (orders, payments, shipments and returns
written in the ``--dialect`` chosen; stock receipts and counts in Stockwire's), the same three channel
sinks and the same server settings (uvicorn, uvloop, httptools, one worker per service):

1. Stockwire end to end (embedded nats-server, ingress, inventory, outbox-relay, channel-notifier):
   the offered rate is stepped up; a step is *sustained* when inventory decided orders at >= 90 % of
   the offered rate and the webhook -> all-channels p99 stayed under 500 ms.
2. The synchronous design (``bench/flash_sale_sync.py``): one Litestar handler that updates SQLite
   and calls the three channels inline before answering. Its webhook -> all-channels latency is the
   producer's request time (it answers after the channel calls). It runs once at Stockwire's first
   rate (the like-for-like latency), then steps up from its own, lower rates (its maximum).
3. Both at one rate with the storefront slow (300 ms) and the marketplace failing half its requests.

Events lost: webhooks the producer gave up on, channel updates that were never delivered (the
synchronous handler does not retry them), and channel caches that ended wrong. Stockwire must lose
none. Figures are printed and written to ``.data/bench/flash_sale.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.cpu import SERVICES_AND_NATS, SUM, floors, ms_per_order
from bench.support import Service, dump, machine, print_table
from libs.natsserver import free_port
from stockwire.demo.analysis import channel_divergences, percentile
from stockwire.demo.channels import SinkProcess, register_channels
from stockwire.demo.cpu import stack_meter
from stockwire.demo.flash_sale import FlashSale, SaleOptions
from stockwire.demo.report import build_report
from stockwire.demo.run import demo_env
from stockwire.sim.config import DIALECTS, Dialect, OrderMix, ProducerConfig, SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import Decision, compare_levels
from stockwire.sim.plan import Webhook
from stockwire.sim.producer import Producer, make_client
from stockwire.sim.runner import SaleRunner
from stockwire.sim.watch import InventoryApi
from stockwire.stack import DEFAULT_PORTS, Stack

P99_TARGET_MS = 500.0
SUSTAINED_SHARE = 0.9
TTL_S = 3.0


@dataclass
class Step:
    design: str
    scenario: str
    offered_opm: float
    processed_opm: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    healthy_channel_p99_ms: float
    orders: int
    lost: int
    lost_detail: str
    invariants_ok: bool
    failed: list[str]
    nominal_opm: float = 0.0
    """The step's target rate (what ``offered_opm`` measured the producer achieving)."""
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    """CPU-milliseconds per order of each process over the step (Stockwire's steps)."""

    @property
    def sustained(self) -> bool:
        return (
            self.processed_opm >= SUSTAINED_SHARE * self.offered_opm and self.p99_ms < P99_TARGET_MS and self.lost == 0
        )


def sale_config(orders_per_min: float, seconds: float, seed: int, dialect: Dialect = SimConfig.dialect) -> SimConfig:
    orders = max(20, round(orders_per_min / 60 * seconds))
    config = SimConfig(
        seed=seed,
        orders=orders,
        run_id=f"b{seed}",
        dialect=dialect,
        sku_prefix=f"B{seed}-",
        mix=OrderMix(mid_sale_adjustments=2, mid_sale_receipts=1),
        producer=ProducerConfig(concurrency=64, burst_factor=1.0, duplicate_rate=0.02, reorder_rate=0.05),
    )
    per_order = len(generate_plan(config).sale) / orders
    return replace(config, producer=replace(config.producer, rate=orders_per_min / 60 * per_order))


# --- Stockwire ---------------------------------------------------------------------------------------
def stockwire_step(stack: Stack, sinks: SinkProcess, config: SimConfig, scenario: str, settle_s: float) -> Step:
    options = SaleOptions(sim=config, settle_timeout_s=settle_s, verify_ledger=False, sample_interval_s=1.0)
    meter = stack_meter(stack, sinks)
    before = meter.read()
    outcome = uvloop.run(FlashSale(stack, sinks, options).run())
    after = meter.read()
    report = build_report(outcome, title=f"bench {scenario}")
    latency = report["latency"]
    hooks = report["webhooks"]
    failed = [f"{i['name']}: {i['detail']}" for i in report["invariants"] if not i["ok"]]
    diverged = next((i for i in report["invariants"] if i["name"] == "channel caches converged"), {"ok": True})
    ledger_ok = next((i for i in report["invariants"] if i["name"] == "ledger equals the ground truth"), {"ok": True})
    lost = hooks["gave_up"] + (0 if diverged["ok"] else 1) + (0 if ledger_ok["ok"] else 1)
    return Step(
        "stockwire",
        scenario,
        report["throughput"]["orders_per_min_offered"],
        report["throughput"]["orders_per_min_processed"],
        latency["webhook_to_all_channels"]["p50_ms"],
        latency["webhook_to_all_channels"]["p95_ms"],
        latency["webhook_to_all_channels"]["p99_ms"],
        latency["webhook_to_channel"].get("b2b", {}).get("p99_ms", math.nan),
        report["orders"]["sent"],
        lost,
        f"{hooks['gave_up']} webhooks given up; caches {'converged' if diverged['ok'] else 'DIVERGED'}; "
        f"ledger {'= ground truth' if ledger_ok['ok'] else 'DIFFERS'}",
        report["ok"],
        failed,
        cpu_ms_per_order=ms_per_order(before, after, report["orders"]["sent"]),
    )


# --- the synchronous design --------------------------------------------------------------------------
class _Answers:
    """A synchronous design decides in the answer to ``order.created``."""

    def __init__(self) -> None:
        self.answers: dict[str, Decision] = {}
        self.times: list[float] = []

    def on_answer(self, webhook: Webhook, document: dict[str, object]) -> None:
        if webhook.event_type == "order.created" and webhook.order_id and "decision" in document:
            if webhook.order_id not in self.answers:
                self.times.append(time.time())
            self.answers[webhook.order_id] = Decision(document["decision"] == "reserved")

    def decision(self, order_id: str) -> Decision | None:
        return self.answers.get(order_id)

    def decisions(self) -> dict[str, Decision]:
        return dict(self.answers)


async def _sync_sale(url: str, secret: str, sinks: SinkProcess, config: SimConfig) -> tuple[Step, dict[str, Any]]:
    plan = generate_plan(config)
    answers = _Answers()
    async with make_client(config.producer.concurrency, 30) as client, httpx.AsyncClient(timeout=10) as http:
        before = (await http.get(f"{url}/stats")).json()
        secrets = {source: secret for source in config.sources}
        producer = Producer(client, url, secrets, config.producer, random.Random(config.seed), lambda *_: None)
        producer.on_answer = answers.on_answer
        api = InventoryApi(http, url)
        result = await SaleRunner(plan, config, producer, answers, api).run()
        after = (await http.get(f"{url}/stats")).json()
        views = await api.skus(plan.skus)
    caches = {}
    for channel in sinks.channels:
        state = sinks.state(channel.name, since=1 << 40)
        caches[channel.name] = {sku: (v["available"], v["version"]) for sku, v in state["cache"].items()}
    final = {sku: (v.available, v.version) for sku, v in views.items() if v is not None}
    divergences = channel_divergences(final, caches, {c.name: c.buffer for c in sinks.channels})
    expectation = result.truth.expected(answers.decisions())
    mismatches = compare_levels(expectation.levels, {s: v.levels if v else None for s, v in views.items()})
    dropped = after["channel_failures"] - before["channel_failures"]
    decided = [t for t in answers.times if t >= result.sale_started_at]
    span = max(1e-6, (max(decided) if decided else result.sale_ended_at) - result.sale_started_at)
    sale_s = max(1e-6, result.sale_ended_at - result.sale_started_at)
    times_ms = [t * 1000 for t in producer.response_times]
    lost = result.stats.gave_up + dropped + len(divergences)
    step = Step(
        "synchronous",
        "",
        round(len(plan.orders) / sale_s * 60, 1),
        round(len(decided) / span * 60, 1),
        percentile(times_ms, 50),
        percentile(times_ms, 95),
        percentile(times_ms, 99),
        math.nan,
        len(plan.orders),
        lost,
        f"{result.stats.gave_up} webhooks given up; {dropped} channel updates dropped; "
        f"{len(divergences)} channel/SKU caches wrong at the end",
        not mismatches and result.stats.gave_up == 0 and not divergences,
        [str(m) for m in mismatches[:5]],
    )
    return step, {"channel_calls": after["channel_calls"] - before["channel_calls"], "dropped": dropped}


def sync_step(url: str, secret: str, sinks: SinkProcess, config: SimConfig, scenario: str) -> Step:
    step, _ = uvloop.run(_sync_sale(url, secret, sinks, config))
    step.scenario = scenario
    return step


# --- driver ------------------------------------------------------------------------------------------
def _degrade(sinks: SinkProcess, on: bool) -> None:
    sinks.control("storefront", delay_s=0.3 if on else 0.0)
    sinks.control("marketplace", fail_ratio=0.5 if on else 0.0)


def _step_up(run: Any, rates: Sequence[float], seconds: float, seed: int, label: str, dialect: Dialect) -> list[Step]:
    steps = []
    for n, rate in enumerate(rates):
        step = run(sale_config(rate, seconds, seed + n, dialect), f"{rate:,.0f}/min offered")
        step.nominal_opm = rate
        steps.append(step)
        print(
            f"  {label} {rate:>8,.0f} orders/min offered: processed {step.processed_opm:,.0f}/min, "
            f"p99 {step.p99_ms:,.1f} ms, lost {step.lost} -> {'sustained' if step.sustained else 'NOT sustained'}",
            flush=True,
        )
        if not step.sustained:
            break
    return steps


def _best(steps: Sequence[Step]) -> float:
    sustained = [s.processed_opm for s in steps if s.sustained]
    return max(sustained, default=0.0)


def _best_step(steps: Sequence[Step]) -> str:
    """The highest step sustained, as asked for: the producer's achieved rate runs a little under it."""
    sustained = [s.nominal_opm for s in steps if s.sustained]
    return f"the {max(sustained):,.0f}/min step" if sustained else "no step"


CPU_COLUMNS = (*SERVICES_AND_NATS, SUM, "simulator", "sinks")


def print_cpu(steps: Sequence[Step], degraded: Step | None, floor_ms: dict[str, float]) -> None:
    """CPU-milliseconds per order of each process, per Stockwire step, and the floor of the work."""
    measured = [*steps, *([degraded] if degraded else [])]
    print_table(
        "Stockwire: CPU-milliseconds per order (user + system, each process with its children)",
        ["scenario", "orders", *CPU_COLUMNS],
        [[s.scenario, s.orders, *(s.cpu_ms_per_order.get(c, math.nan) for c in CPU_COLUMNS)] for s in measured],
    )
    print_table(
        "Floor: CPU-milliseconds of the bare work, measured in this process",
        ["work", "ms"],
        [[name, f"{ms:.4f}"] for name, ms in floor_ms.items()],
    )


def _stockwire_only(steps: Sequence[Step], floor_ms: dict[str, float], results: dict[str, Any], out: Path) -> int:
    """The report of ``--stockwire-only``: the step-up, the CPU per order and the floors."""
    print_cpu(steps, None, floor_ms)
    lost = sum(s.lost for s in steps)
    print(f"\n  Stockwire max sustained: {_best(steps):,.0f} orders/min processed, {_best_step(steps)}; lost {lost}")
    results.update(
        {
            "steps": [asdict(s) | {"sustained": s.sustained} for s in steps],
            "stockwire_max_sustained_opm": _best(steps),
            "stockwire_lost": lost,
            "floor_cpu_ms": floor_ms,
        }
    )
    dump(out, results)
    print(f"\nwritten to {out}")
    return 0 if lost == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short steps at low rates (proves it runs)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each step's sale")
    parser.add_argument("--rates", default=None, help="comma-separated orders/min to step through")
    parser.add_argument("--degraded-rate", type=float, default=None, help="orders/min for the degraded runs")
    parser.add_argument(
        "--sync-rates",
        default=None,
        help="comma-separated orders/min for the synchronous design's own step-up (it tops out far lower)",
    )
    parser.add_argument("--out", default=".data/bench/flash_sale.json")
    parser.add_argument(
        "--stockwire-only",
        action="store_true",
        help="only Stockwire's step-up, its CPU per order and the floors (no degraded or synchronous runs)",
    )
    parser.add_argument(
        "--nats-sync",
        choices=["always", "default"],
        default="always",
        help="the embedded nats-server's JetStream sync_interval: always (fsync before each ack) or default (2m)",
    )
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default=SimConfig.dialect,
        help="how orders, payments, shipments and returns are written (default %(default)s)",
    )
    args = parser.parse_args(argv)
    dialect: Dialect = args.dialect
    seconds = args.seconds or (6.0 if args.quick else 20.0)
    rates = (
        [float(r) for r in args.rates.split(",")]
        if args.rates
        else ([1500, 3000, 6000, 12000] if args.quick else [10000, 20000, 30000, 40000, 50000, 60000, 75000])
    )
    sync_rates = (
        [float(r) for r in args.sync_rates.split(",")]
        if args.sync_rates
        else ([500, 1000, 1500, 3000] if args.quick else [1000, 2000, 3000, 4000, 6000, 8000])
    )
    degraded_rate = args.degraded_rate or (3000 if args.quick else 10000)
    settle_s = 120.0 if args.quick else 300.0
    print(
        f"flash-sale benchmark on {machine()}; steps of {seconds:g} s; NATS sync {args.nats_sync}; dialect {dialect}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="stockwire-bench-"))
    sinks = SinkProcess(sink=io.StringIO(), log_dir=work)
    sinks.start()
    results: dict[str, Any] = {
        "machine": machine(),
        "seconds_per_step": seconds,
        "rates": rates,
        "nats_sync": args.nats_sync,
        "dialect": dialect,
    }
    try:
        stack = Stack(
            data_dir=work / "stockwire",
            ports={name: free_port() for name in DEFAULT_PORTS},
            nats_port=free_port(),
            env=demo_env(TTL_S),
            sink=io.StringIO(),
            embedded_sync_interval="always" if args.nats_sync == "always" else "2m",
        )
        try:
            stack.start()
            register_channels(stack.url("channel-notifier"), stack.admin_token, sinks)
            print("stockwire:", flush=True)
            run = lambda config, scenario: stockwire_step(stack, sinks, config, scenario, settle_s)  # noqa: E731
            stockwire_steps = _step_up(run, rates, seconds, 100, "stockwire  ", dialect)
            if args.stockwire_only:
                assert stack.nats_url is not None
                floor = sinks.channels[0].name
                floor_ms = floors(stack.nats_url, sinks.url(floor), sinks.secret(floor), work)
                return _stockwire_only(stockwire_steps, floor_ms, results, Path(args.out))
            _degrade(sinks, True)
            degraded_sw = stockwire_step(
                stack, sinks, sale_config(degraded_rate, seconds, 900, dialect), "slow + failing channel", settle_s
            )
            _degrade(sinks, False)
            print(f"  degraded: p99 {degraded_sw.p99_ms:,.1f} ms, lost {degraded_sw.lost}", flush=True)
            assert stack.nats_url is not None
            floor = sinks.channels[0].name
            floor_ms = floors(stack.nats_url, sinks.url(floor), sinks.secret(floor), work)
        finally:
            stack.stop()
        secret = "bench-sync-secret"
        port = free_port()
        targets = [
            {"name": c.name, "url": sinks.url(c.name), "secret": sinks.secret(c.name), "buffer": c.buffer}
            for c in sinks.channels
        ]
        env = {"SYNC_DB": str(work / "sync.db"), "SYNC_SECRET": secret, "SYNC_CHANNELS": json.dumps(targets)}
        with Service(
            [sys.executable, "-m", "bench.flash_sale_sync", str(port)], env, f"http://127.0.0.1:{port}/healthz"
        ):
            url = f"http://127.0.0.1:{port}"
            print("synchronous:", flush=True)
            run_sync = lambda config, scenario: sync_step(url, secret, sinks, config, scenario)  # noqa: E731
            # The same offered rate as Stockwire's first step, for a like-for-like latency, then its own
            # step-up from lower rates, for its maximum.
            sync_same = run_sync(
                sale_config(rates[0], seconds, 499, dialect), f"{rates[0]:,.0f}/min offered (as Stockwire)"
            )
            sync_same.nominal_opm = rates[0]
            print(
                f"  synchronous at Stockwire's first rate, {rates[0]:,.0f} orders/min offered: processed "
                f"{sync_same.processed_opm:,.0f}/min, p99 {sync_same.p99_ms:,.1f} ms, lost {sync_same.lost}",
                flush=True,
            )
            sync_steps = _step_up(run_sync, sync_rates, seconds, 500, "synchronous", dialect)
            _degrade(sinks, True)
            degraded_sync = sync_step(
                url, secret, sinks, sale_config(degraded_rate, seconds, 990, dialect), "slow + failing channel"
            )
            _degrade(sinks, False)
            print(f"  degraded: p99 {degraded_sync.p99_ms:,.1f} ms, lost {degraded_sync.lost}", flush=True)
    finally:
        sinks.stop()
    everything = [*stockwire_steps, degraded_sw, sync_same, *sync_steps, degraded_sync]
    print_table(
        "Flash sale: orders/min and webhook -> all channels latency (ms)",
        [
            "design",
            "scenario",
            "orders",
            "offered/min",
            "processed/min",
            "p50",
            "p95",
            "p99",
            "b2b p99",
            "lost",
            "sustained",
        ],
        [
            [
                s.design,
                s.scenario,
                s.orders,
                s.offered_opm,
                s.processed_opm,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.healthy_channel_p99_ms,
                s.lost,
                "yes" if s.sustained else "no",
            ]
            for s in everything
        ],
    )
    print_cpu(stockwire_steps, degraded_sw, floor_ms)
    sw_best, sync_best = _best(stockwire_steps), _best(sync_steps)
    at_10k = next((s for s in stockwire_steps if s.nominal_opm == 10000), None)
    print("\nHeadline")
    print(
        f"  Stockwire max sustained:   {sw_best:,.0f} orders/min processed, {_best_step(stockwire_steps)} "
        "(target >= 30,000)"
    )
    print(f"  synchronous max sustained: {sync_best:,.0f} orders/min processed, {_best_step(sync_steps)}")
    if sync_best:
        print(f"  ratio:                     {sw_best / sync_best:,.2f}x")
    else:
        print(
            "  ratio:                     n/a: the synchronous design sustained none of the steps from "
            f"{sync_rates[0]:,.0f}"
        )
    first_sw, first_sync = stockwire_steps[0], sync_same
    print(
        f"  p99 at {rates[0]:,.0f} orders/min: synchronous {first_sync.p99_ms:,.0f} ms, Stockwire "
        f"{first_sw.p99_ms:,.0f} ms ({first_sync.p99_ms / first_sw.p99_ms:,.2f}x)"
    )
    if at_10k:
        print(f"  Stockwire p99 at ~10,000 orders/min: {at_10k.p99_ms:,.1f} ms (target < 500)")
    print(
        f"  slow + failing channel, Stockwire:   p99 {degraded_sw.p99_ms:,.1f} ms, lost {degraded_sw.lost} "
        f"({degraded_sw.lost_detail}); healthy channel p99 {degraded_sw.healthy_channel_p99_ms:,.1f} ms"
    )
    print(
        f"  slow + failing channel, synchronous: p99 {degraded_sync.p99_ms:,.1f} ms, lost {degraded_sync.lost} "
        f"({degraded_sync.lost_detail}); processed {degraded_sync.processed_opm:,.0f}/min"
    )
    lost_total = sum(s.lost for s in [*stockwire_steps, degraded_sw])
    print(f"  Stockwire events lost over every run: {lost_total} (target 0)")
    results.update(
        {
            "steps": [asdict(s) | {"sustained": s.sustained} for s in everything],
            "stockwire_max_sustained_opm": sw_best,
            "synchronous_max_sustained_opm": sync_best,
            "ratio": sw_best / sync_best if sync_best else None,
            "stockwire_lost": lost_total,
            "floor_cpu_ms": floor_ms,
        }
    )
    dump(Path(args.out), results)
    print(f"\nwritten to {args.out}")
    return 0 if lost_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
