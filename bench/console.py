"""The console's overview under load: its server time per refresh while a flash sale runs.

    python -m bench.console [--quick] [--seconds 6] [--rates 1500,3000,6000,12000] [--interval 1.0]

Starts the stack (the console among the services) and the three channel sinks, logs in to the console,
and while the Stockwire steps of ``python -m bench.flash_sale`` run (the same sale configurations; with
``--quick`` the same rates and step length as ``bench.flash_sale --quick``) it asks for the overview's
panel every ``--interval`` seconds, as the page's own polling does. It reads the console's
``Server-Timing`` (the time from the request to the rendered panel: health, readiness and /metrics of
the four services, consumer lag and the DEADLETTER count) and the client's round trip.

A refresh waits at most ``[console] overview_budget_s`` for each service and JetStream; a later answer
is shown (marked) at the next refresh, and the run counts the refreshes that showed one.

The target: every refresh under 300 ms of server time (p99 and max reported); the run fails (exit 1)
when the p99 is at or over it. Figures are printed and written to ``.data/bench/console.json``.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.flash_sale import TTL_S, sale_config, stockwire_step
from bench.support import dump, machine
from libs.natsserver import free_port
from stockwire.demo.analysis import percentile
from stockwire.demo.channels import SinkProcess, register_channels
from stockwire.demo.run import demo_env
from stockwire.stack import DEFAULT_PORTS, Stack

TARGET_MS = 300.0
_TIMING = re.compile(r"dur=([0-9.]+)")


class Poller(threading.Thread):
    """Asks for the overview panel every ``interval`` seconds until stopped; keeps each refresh's times."""

    def __init__(self, url: str, token: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=10.0)
        form = re.search(r'name="csrf" value="([^"]+)" id="login-csrf"', self.client.get("/login").text)
        csrf = form.group(1) if form else ""
        answer = self.client.post("/login", data={"token": token, "next": "/", "csrf": csrf}, follow_redirects=False)
        if answer.status_code != 303:
            raise RuntimeError(f"console login: {answer.status_code} {answer.text[:200]}")
        self.interval = interval
        self.stopping = threading.Event()
        self.server_ms: list[float] = []
        self.round_trip_ms: list[float] = []
        self.failures = 0
        self.stale = 0
        """Refreshes that showed a service's previous answer (it was slower than the overview's budget)."""
        self.phase = "idle"
        self.by_phase: dict[str, list[float]] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            try:
                answer = self.client.get("/overview/panel", headers={"HX-Request": "true"})
            except httpx.HTTPError:
                self.failures += 1
            else:
                took = (time.perf_counter() - started) * 1000
                match = _TIMING.search(answer.headers.get("server-timing", ""))
                if answer.status_code != 200 or match is None:
                    self.failures += 1
                else:
                    server = float(match.group(1))
                    self.stale += "its previous answer is shown" in answer.text
                    self.server_ms.append(server)
                    self.round_trip_ms.append(took)
                    self.by_phase.setdefault(self.phase, []).append(server)
            self.stopping.wait(max(0.0, self.interval - (time.perf_counter() - started)))

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)
        self.client.close()


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p95_ms": percentile(ordered, 95),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bench.flash_sale --quick's rates and step length")
    parser.add_argument("--seconds", type=float, default=None, help="sale seconds per step")
    parser.add_argument("--rates", default=None, help="orders/min per step, comma-separated")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--out", default=".data/bench/console.json")
    args = parser.parse_args(argv)
    seconds = args.seconds or (6.0 if args.quick else 20.0)
    rates = (
        [float(r) for r in args.rates.split(",")]
        if args.rates
        else ([1500, 3000, 6000, 12000] if args.quick else [10000, 20000, 30000])
    )
    work = Path(tempfile.mkdtemp(prefix="stockwire-bench-console-"))
    sinks = SinkProcess(sink=io.StringIO(), log_dir=work)
    sinks.start()
    stack = Stack(
        data_dir=work / "stockwire",
        ports={name: free_port() for name in DEFAULT_PORTS},
        nats_port=free_port(),
        # The overview is reused for half a refresh interval: a short one makes every poll here compute it.
        env={**demo_env(TTL_S), "STOCKWIRE__CONSOLE__REFRESH_S": "0.2"},
        sink=io.StringIO(),
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "rates": rates,
        "seconds_per_step": seconds,
        "target_ms": TARGET_MS,
    }
    try:
        stack.start()
        register_channels(stack.url("channel-notifier"), stack.admin_token, sinks)
        poller = Poller(stack.url("console"), stack.admin_token, args.interval)
        poller.start()
        time.sleep(3 * args.interval)
        steps = []
        for n, rate in enumerate(rates):
            poller.phase = f"{rate:,.0f}/min"
            step = stockwire_step(stack, sinks, sale_config(rate, seconds, 100 + n, "commerce-engine"), "console", 120)
            steps.append(
                {
                    "rate_opm": rate,
                    "processed_opm": step.processed_opm,
                    "invariants_ok": step.invariants_ok,
                    "lost": step.lost,
                }
            )
            during = _summary(poller.by_phase.get(poller.phase, []))
            print(
                f"  {rate:>8,.0f} orders/min: processed {step.processed_opm:,.0f}/min; overview server time "
                f"p99 {during.get('p99_ms', float('nan')):.1f} ms, max {during.get('max_ms', float('nan')):.1f} ms "
                f"over {during['n']} refreshes",
                flush=True,
            )
        poller.stop()
    finally:
        stack.stop()
        sinks.stop()
    server = _summary(poller.server_ms)
    results.update(
        steps=steps,
        server=server,
        round_trip=_summary(poller.round_trip_ms),
        by_phase={phase: _summary(values) for phase, values in poller.by_phase.items()},
        failures=poller.failures,
        stale_refreshes=poller.stale,
    )
    ok = server["n"] > 0 and server["p99_ms"] < TARGET_MS and poller.failures == 0
    results["ok"] = ok
    dump(Path(args.out), results)
    print(
        f"overview refreshes: {server['n']}, server time p50 {server.get('p50_ms', 0):.1f} ms, "
        f"p99 {server.get('p99_ms', 0):.1f} ms, max {server.get('max_ms', 0):.1f} ms; failures {poller.failures}; "
        f"{poller.stale} showed a slow service's previous answer "
        f"-> {'under' if ok else 'NOT under'} {TARGET_MS:.0f} ms",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
