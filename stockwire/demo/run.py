"""``stockwire demo``: a fresh stack, three channel sinks, a flash sale, and the report.

Everything runs on 127.0.0.1: the embedded nats-server, the four services and the console, the sinks. Service logs go
to ``<data dir>/logs`` (``--show-logs`` prints them too); the terminal shows one progress line a
second, then the invariants and the headline figures. The exit status is 0 only if every invariant holds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import uvloop

from libs.natsserver import free_port, port_free
from stockwire.sim.catalogue import assortment
from stockwire.sim.config import ProducerConfig, SimConfig
from stockwire.stack import DEFAULT_PORTS, EMBEDDED_NATS_PORT, Stack

from .channels import SinkProcess, register_channels
from .cpu import SERVICES_AND_NATS, SUM, ms_per_order, stack_meter
from .flash_sale import FlashSale, SaleOptions
from .html import render_html
from .report import build_report

__all__ = [
    "PROGRESS_WIDTH",
    "DemoSettings",
    "demo_env",
    "dialect_line",
    "pick_ports",
    "prepare_data_dir",
    "progress_line",
    "run_demo",
    "write_report",
]

_MARKER = ".stockwire-demo"


@dataclass
class DemoSettings:
    sim: SimConfig
    data_dir: Path = Path(".data/demo")
    report_dir: Path = Path(".data/reports")
    reservation_ttl_s: float = 8.0
    settle_timeout_s: float = 300.0
    show_logs: bool = False
    default_ports: bool = True
    """Use the usual ports where free (tests set False: every port is a free one)."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    report_paths: tuple[Path, Path] | None = None
    """Set once the report is written: (JSON, HTML)."""


def demo_env(reservation_ttl_s: float) -> dict[str, str]:
    """Service settings for a demo: a short reservation TTL (abandoned carts visibly expire) and
    a notifier that retries a recovered channel within seconds rather than minutes."""
    return {
        "STOCKWIRE__INVENTORY__RESERVATION_TTL_S": str(reservation_ttl_s),
        "STOCKWIRE__INVENTORY__SWEEP_INTERVAL_S": "0.5",
        "STOCKWIRE__CHANNEL_NOTIFIER__RETRY_CAP_S": "2",
        "STOCKWIRE__CHANNEL_NOTIFIER__BREAKER_OPEN_S": "1",
        "STOCKWIRE__CHANNEL_NOTIFIER__BREAKER_OPEN_MAX_S": "2",
        "STOCKWIRE__CHANNEL_NOTIFIER__POLL_INTERVAL_S": "0.5",
    }


def pick_ports(prefer_defaults: bool = True) -> tuple[dict[str, int], int]:
    """The usual ports where free (a running ``stockwire up`` keeps them), free ones otherwise."""

    def usable(port: int) -> bool:
        return prefer_defaults and port_free(port)

    ports = {name: port if usable(port) else free_port() for name, port in DEFAULT_PORTS.items()}
    nats = EMBEDDED_NATS_PORT if usable(EMBEDDED_NATS_PORT) else free_port()
    return ports, nats


def prepare_data_dir(path: Path) -> None:
    """Start from an empty directory; only ever delete one this command created (it holds a marker)."""
    if path.exists() and any(path.iterdir()):
        if not (path / _MARKER).is_file():
            raise SystemExit(f"stockwire demo: {path} is not empty and was not made by the demo; choose --data-dir")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / _MARKER).write_text("scratch space of `stockwire demo`; deleted at the next run\n")


def write_report(report: Mapping[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path


PROGRESS_WIDTH = 100


def progress_line(row: Mapping[str, Any], total_orders: int) -> str:
    """One progress line of at most :data:`PROGRESS_WIDTH` columns; the least useful parts go first
    when the numbers are long."""

    def lag(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    decided, reserved = row["orders_decided"], row["orders_reserved"]
    head = f"[{row['t']:5.0f}s] sale {row['progress'] * 100:3.0f}%"
    parts = [  # most useful first
        f"orders {decided:,}/{total_orders:,}, {reserved:,} reserved",
        f"applied {row['inventory_applied']:,} (lag {lag(row['inventory_lag'])})",
        f"sent {row['requests']:,}",
        f"notifier lag {lag(row['notifier_lag'])}",
        f"spooled {row['spooled']:,}",
        f"channel updates {row['channel_updates']:,}",
    ]
    while len(" | ".join([head, *parts])) > PROGRESS_WIDTH and len(parts) > 1:
        parts.pop()
    return " | ".join([head, *parts])[:PROGRESS_WIDTH]


def _progress_printer(out: TextIO, total_orders: int) -> Any:
    last: list[str] = []

    def show(row: Mapping[str, Any]) -> None:
        # Once the sale has settled, samples differ in the clock, or in numbers the line leaves out
        # (channel updates past 100 columns, deliveries): a line that would say what the last one said
        # but for its time is not printed.
        line = progress_line(row, total_orders)
        said = line.partition("]")[2]
        if last and last[0] == said:
            return
        last[:] = [said]
        out.write(line + "\n")
        out.flush()

    return show


def _print_summary(report: Mapping[str, Any], paths: tuple[Path, Path], out: TextIO) -> None:
    latency = report["latency"]["webhook_to_all_channels"]
    orders, hooks, thr = report["orders"], report["webhooks"], report["throughput"]
    lines = [
        "",
        f"Dialect: {report['dialect']['name']} ("
        + ", ".join(f"{what} → {source}" for what, source in report["dialect"]["sources"].items())
        + ")",
        "",
        "Invariants:",
        *(f"  [{'PASS' if i['ok'] else 'FAIL'}] {i['name']}: {i['detail']}" for i in report["invariants"]),
        "",
        f"  webhooks: {hooks['accepted']:,} accepted, {hooks['duplicate']:,} duplicates, {hooks['spooled']:,} "
        f"spooled, {hooks['rejected'] + hooks['forged_refused']:,} refused, {hooks['retries']:,} retries",
        f"  orders:   {orders['sent']:,} sent, {orders['reserved']:,} reserved, {orders['rejected']:,} rejected, "
        f"{orders['expired']:,} reservations expired",
        f"  events:   {report['events']['applied_by_inventory']:,} applied by inventory, "
        f"{report['events']['inventory_published']:,} inventory events published",
        f"  speed:    {thr['orders_per_min_processed']:,} orders/min processed "
        f"({thr['orders_per_min_offered']:,} offered), {thr['inventory_events_per_s']:,} inventory events/s",
        f"  latency:  webhook → all channels p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, "
        f"p99 {latency['p99_ms']} ms ({latency['count']:,} changes)",
        *_cpu_lines(report.get("cpu_ms_per_order") or {}),
        "",
        f"Report: {paths[1]}  (JSON: {paths[0]})",
        "All invariants hold." if report["ok"] else "SOME INVARIANTS FAILED.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _cpu_lines(cpu: Mapping[str, float]) -> list[str]:
    """CPU-milliseconds per order (user + system, from the OS) of the four services and nats-server, and
    their sum: seeding, the sale and the settle wait together, so fixed costs are spread over the orders."""
    if SUM not in cpu:
        return []
    each = ", ".join(f"{name} {cpu[name]:.2f}" for name in SERVICES_AND_NATS)
    return [f"  cpu:      {cpu[SUM]:.2f} ms per order for the services and NATS ({each})"]


def dialect_line(config: SimConfig) -> str:
    if config.dialect == "commerce-engine":
        return (
            f"orders, payments, shipments and returns as Commerce Engine's webhooks to source '{config.order_source}', "
            f"stock receipts and counts in Stockwire's dialect to '{config.source}'"
        )
    return f"everything in Stockwire's own dialect to source '{config.source}'"


def run_demo(settings: DemoSettings, out: TextIO = sys.stdout) -> int:
    if not settings.show_logs:
        # The progress lines are the demo's output; connection chatter would interleave with them.
        for name in ("stockwire.bus", "stockwire.topology"):
            logging.getLogger(name).setLevel(logging.WARNING)
    prepare_data_dir(settings.data_dir)
    ports, nats_port = pick_ports(settings.default_ports)
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_sink: TextIO = sys.stdout if settings.show_logs else open(os.devnull, "w")  # noqa: SIM115
    stack = Stack(
        data_dir=settings.data_dir,
        ports=ports,
        nats_port=nats_port,
        env={**demo_env(settings.reservation_ttl_s), **settings.extra_env},
        sink=log_sink,
    )
    sinks = SinkProcess(sink=log_sink, log_dir=logs)
    out.write(f"stockwire demo: starting NATS and the services (logs in {logs})…\n")
    out.flush()
    try:
        stack.start()
        sinks.start()
        register_channels(stack.url("channel-notifier"), stack.admin_token, sinks)
        out.write(
            "stockwire demo: "
            + ", ".join(f"{name} {stack.url(name)}" for name in stack.services)
            + f"; channels {', '.join(f'{c.name} (buffer {c.buffer})' for c in sinks.channels)}\n"
        )
        if "console" in stack.services:
            token = f"in {stack.admin_token_file}" if stack.admin_token_file else "as configured"
            out.write(
                f"stockwire demo: watch the sale in the console: {stack.url('console')} (log in with the admin "
                f"token, {token}; it stops with the demo)\n"
            )
        stocked = len(assortment(settings.sim).stocked)
        out.write(
            f"stockwire demo: flash sale of {settings.sim.orders:,} orders over {stocked} stocked SKUs "
            f"({settings.sim.catalogue.hot_skus} hot, less stock than demand), seed {settings.sim.seed}, "
            f"reservation TTL {settings.reservation_ttl_s:g} s\n"
            f"stockwire demo: {dialect_line(settings.sim)}\n"
        )
        out.flush()
        options = SaleOptions(
            sim=settings.sim,
            settle_timeout_s=settings.settle_timeout_s,
            on_progress=_progress_printer(out, settings.sim.orders),
        )
        meter = stack_meter(stack, sinks)
        before = meter.read()
        observation = uvloop.run(FlashSale(stack, sinks, options).run())
        after = meter.read()
        report = build_report(observation)
        report["cpu_ms_per_order"] = ms_per_order(before, after, report["orders"]["sent"])
        stem = f"flash-sale-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        paths = write_report(report, settings.report_dir, stem)
        _print_summary(report, paths, out)
        settings.report_paths = paths
        return 0 if report["ok"] else 1
    finally:
        sinks.stop()
        stack.stop()
        if log_sink is not sys.stdout:
            log_sink.close()


def sized(config: SimConfig, orders: int | None, duration_s: float | None, rate: float | None) -> SimConfig:
    """``--orders``/``--duration``/``--rate``: a duration sets the rate that spreads the sale over it."""
    if orders is not None:
        config = replace(config, orders=orders)
    producer: ProducerConfig = config.producer
    if rate is not None:
        producer = replace(producer, rate=rate)
    elif duration_s:
        from stockwire.sim.generator import generate_plan

        webhooks = len(generate_plan(config).sale)
        burst = producer.burst_share * (1 - 1 / producer.burst_factor)
        producer = replace(producer, rate=max(1.0, webhooks * (1 - burst) / duration_s))
    return replace(config, producer=producer)
