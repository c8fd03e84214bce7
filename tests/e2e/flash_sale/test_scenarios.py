"""The flash sale over real processes, in six scenarios; every one ends with the same invariants:
zero oversell, ledger = ground truth, channel caches converged, nothing unexpected in DEADLETTER,
no webhook lost, and ``stockwire ledger verify`` passing."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stockwire.demo.channels import SinkProcess, register_channels
from stockwire.demo.flash_sale import Fault, FlashSale, SaleOptions
from stockwire.demo.report import build_report
from stockwire.demo.run import DemoSettings, run_demo
from stockwire.sim.config import CatalogueConfig, Dialect, ProducerConfig, SimConfig
from stockwire.stack import Stack

from .conftest import running_sinks, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TTL_S = 4.0


def small_sale(seed: int, dialect: Dialect = "commerce-engine", **producer: Any) -> SimConfig:
    return SimConfig(
        seed=seed,
        orders=300,
        run_id=f"e2e{seed}",
        dialect=dialect,
        catalogue=CatalogueConfig(skus=12, hot_skus=3, stocktakes=2, damaged=2),
        producer=replace(ProducerConfig(rate=150.0, concurrency=24, burst_factor=3.0), **producer),
    )


def failures(report: dict[str, Any]) -> list[str]:
    return [f"{i['name']}: {i['detail']}" for i in report["invariants"] if not i["ok"]]


async def sale(
    e2e_dir: Path,
    config: SimConfig,
    faults: Callable[[Stack, SinkProcess], Sequence[Fault]] = lambda *_: (),
) -> dict[str, Any]:
    async with running_stack(e2e_dir, ttl_s=TTL_S) as stack, running_sinks(e2e_dir) as sinks:
        await asyncio.to_thread(register_channels, stack.url("channel-notifier"), stack.admin_token, sinks)
        options = SaleOptions(sim=config, settle_timeout_s=90.0, faults=faults(stack, sinks))
        observation = await FlashSale(stack, sinks, options).run()
    report = build_report(observation)
    (e2e_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def assert_clean(report: dict[str, Any]) -> None:
    assert report["ok"], failures(report)
    orders = report["orders"]
    # A flash sale: the hot SKUs sell out, so some orders are turned away, and nothing is left undecided.
    assert orders["reserved"] > 0 and orders["rejected"] > 0 and orders["undecided"] == 0
    assert report["channels"] and all(c["updates_received"] > 0 for c in report["channels"].values())


async def test_a_clean_run_through_the_demo_command(tmp_path: Path) -> None:
    settings = DemoSettings(
        sim=small_sale(1),
        data_dir=tmp_path / "demo",
        report_dir=tmp_path / "reports",
        reservation_ttl_s=TTL_S,
        settle_timeout_s=90.0,
        default_ports=False,
    )
    out = io.StringIO()
    status = await asyncio.to_thread(run_demo, settings, out)
    assert settings.report_paths is not None, out.getvalue()[-3000:]
    json_path, html_path = settings.report_paths
    report = json.loads(json_path.read_text())
    assert status == 0, failures(report)
    assert_clean(report)
    assert report["orders"]["expired"] > 0  # abandoned carts visibly expire
    assert "<svg" in html_path.read_text()
    assert "All invariants hold." in out.getvalue()
    assert "watch the sale in the console: http://127.0.0.1:" in out.getvalue()
    # Commerce Engine's dialect by default: its shipments left stock, its returns came back, a carrier lost one.
    assert report["dialect"]["profile"] == "commerce-engine" and "Commerce Engine webhooks" in out.getvalue()
    assert {"deducted", "returned", "lost"} <= set(report["events"]["by_kind"])


async def test_stockwires_own_dialect_still_runs_clean(e2e_dir: Path) -> None:
    report = await sale(e2e_dir, small_sale(6, "stockwire"))
    assert_clean(report)
    assert report["dialect"]["profile"] == "stockwire"
    assert {"deducted", "returned"} <= set(report["events"]["by_kind"])


async def test_duplicates_and_reordering(e2e_dir: Path) -> None:
    report = await sale(e2e_dir, small_sale(2, duplicate_rate=0.2, reorder_rate=0.1))
    assert_clean(report)
    assert report["webhooks"]["duplicate"] >= 0.15 * report["webhooks"]["events_delivered"]


async def test_ingress_killed_and_restarted_mid_sale(e2e_dir: Path) -> None:
    def faults(stack: Stack, _sinks: SinkProcess) -> list[Fault]:
        async def crash_and_restart() -> None:
            stack.children["ingress"].kill()
            await asyncio.to_thread(stack.restart_service, "ingress")

        return [Fault("ingress killed (SIGKILL) and restarted", 0.3, crash_and_restart)]

    report = await sale(e2e_dir, small_sale(3, backoff_max_s=0.5, max_attempts=200), faults)
    assert_clean(report)
    assert report["faults"][0]["ok"], report["faults"]
    assert report["webhooks"]["retries"] > 0


async def test_nats_server_down_for_five_seconds_mid_sale(e2e_dir: Path) -> None:
    def faults(stack: Stack, _sinks: SinkProcess) -> list[Fault]:
        async def outage() -> None:
            assert stack.nats is not None
            await asyncio.to_thread(stack.nats.stop)
            await asyncio.sleep(5.0)  # the outage itself, not a wait for anything
            await asyncio.to_thread(stack.nats.start)

        return [Fault("nats-server stopped for 5 s", 0.3, outage)]

    report = await sale(e2e_dir, small_sale(4), faults)
    assert_clean(report)
    assert report["faults"][0]["ok"], report["faults"]
    assert report["webhooks"]["spooled"] > 0  # ingress kept answering, from its spool


async def test_one_channel_down_for_most_of_the_sale(e2e_dir: Path) -> None:
    def faults(_stack: Stack, sinks: SinkProcess) -> list[Fault]:
        async def down() -> None:
            await asyncio.to_thread(sinks.control, "marketplace", listening=False)

        async def up() -> None:
            await asyncio.to_thread(sinks.control, "marketplace", listening=True)

        return [Fault("marketplace stops listening", 0.1, down), Fault("marketplace back", 0.85, up)]

    report = await sale(e2e_dir, small_sale(5), faults)
    assert_clean(report)
    assert all(f["ok"] for f in report["faults"]), report["faults"]
    storefront = report["latency"]["webhook_to_channel"]["storefront"]
    marketplace = report["latency"]["webhook_to_channel"]["marketplace"]
    # The channel that was down lagged; the others did not wait for it.
    assert marketplace["max_ms"] > storefront["p95_ms"]
