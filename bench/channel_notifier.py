"""Fan-out benchmark: availability events from INVENTORY to three local webhook sinks.

``python -m bench.channel_notifier [--rate 500] [--seconds 10] [--burst 6000]``

Everything runs on this machine: a nats-server, the three sinks (one process, ``stockwire.demo.sinks``), the
notifier as a real process (``python -m services.channel_notifier``), and this driver publishing.

1. Baselines, same run: the sinks driven directly with signed webhooks by an httpx AsyncClient, once
   with httpx's stock transport and once with the notifier's own (``libs.outbound``): what one
   process can push to these sinks without the notifier's pipeline around it.
2. Sustained: availability events at ``--rate`` events/s for ``--seconds`` (distinct SKUs, so nothing
   coalesces); latency from each event's ``occurred_at`` to the sink's 2xx, p50/p99.
3. Burst: ``--burst`` events published as fast as possible; deliveries/s until every sink has all.

Targets on a 2-core machine: >= 1,500 deliveries/s, and p99 < 250 ms at 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import nats

from libs.config import TopologySettings
from libs.contracts import AvailabilityChanged, availability_msg_id, availability_subject, encode, utc_now_iso
from libs.natsserver import NatsServer, free_port
from libs.outbound import guarded_client
from libs.processes import spawn, stop_processes
from libs.topology import apply_topology
from libs.urlpolicy import UrlPolicy
from services.channel_notifier.domain.payload import signed_headers, webhook_body, webhook_id
from stockwire.demo.analysis import percentile
from stockwire.demo.channels import AsyncSinkReader, DemoChannel, SinkProcess

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {"storefront": 0, "marketplace": 2, "b2b": 5}  # name -> buffer
TARGET_RATE = 1500.0
TARGET_P99_MS = 250.0


def _update(sku: str, version: int, available: int) -> AvailabilityChanged:
    return AvailabilityChanged(
        sku=sku,
        version=version,
        available=available,
        on_hand=available,
        reserved=0,
        committed=0,
        occurred_at=utc_now_iso(),
        cause="bench",
    )


class Sinks:
    """The three sinks in one child process (``stockwire.demo.sinks``), read through its control port."""

    def __init__(self, work: Path) -> None:
        channels = [DemoChannel(name, buffer) for name, buffer in CHANNELS.items()]
        self.process = SinkProcess(channels, sink=io.StringIO(), log_dir=work)
        self.secrets = {name: self.process.secret(name) for name in CHANNELS}
        self.reader = AsyncSinkReader(self.process)

    def start(self) -> None:
        self.process.start()

    def url(self, name: str) -> str:
        return self.process.url(name)

    async def stats(self) -> dict[str, dict[str, Any]]:
        return {name: await self.reader.stats(name) for name in self.secrets}

    async def delivered(self) -> list[int]:
        return [int((await self.reader.count(name))["delivered"]) for name in self.secrets]

    async def reset(self) -> None:
        for name in self.secrets:
            await self.reader.reset(name)

    async def stop(self) -> None:
        await self.reader.close()
        self.process.stop()


async def baseline(sinks: Sinks, seconds: float, concurrency: int, guarded: bool) -> dict[str, float]:
    """Signed webhooks straight from an httpx client to the three sinks, as fast as they take them.

    ``guarded``: through the notifier's own transport (:mod:`libs.outbound`); else httpx's stock one.
    """
    latencies: list[float] = []
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def driver(client: httpx.AsyncClient, name: str, lane: int) -> None:
        nonlocal sent
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            update = _update(f"BASE-{lane}-{n}", 1, 10)
            body = webhook_body(update, CHANNELS[name])
            headers = signed_headers([sinks.secrets[name]], webhook_id(name, update.sku, 1), body, int(time.time()))
            started = time.perf_counter()
            response = await client.post(sinks.url(name), content=body, headers=headers)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            sent += 1

    if guarded:
        clients = {
            name: guarded_client(UrlPolicy(), connect_timeout_s=2, request_timeout_s=5, max_connections=concurrency)
            for name in sinks.secrets
        }
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        clients = {name: httpx.AsyncClient(limits=limits, trust_env=False) for name in sinks.secrets}
    started = time.perf_counter()
    await asyncio.gather(*(driver(clients[name], name, i) for name in sinks.secrets for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    for client in clients.values():
        await client.aclose()
    return {
        "rate": sent / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


def notifier_config(path: Path, sinks: Sinks, port: int, concurrency: int) -> None:
    channels = "".join(
        f'\n[[channel-notifier.channels]]\nname = "{name}"\nurl = "{sinks.url(name)}"\n'
        f'secret = "{sinks.secrets[name]}"\nbuffer = {buffer}\n'
        for name, buffer in CHANNELS.items()
    )
    path.write_text(f"[channel-notifier]\nport = {port}\nconcurrency = {concurrency}\n{channels}")


def start_notifier(config: Path, nats_url: str, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STOCKWIRE_CONFIG": str(config),
        "STOCKWIRE_NATS_URL": nats_url,
        "STOCKWIRE_DATA_DIR": str(work / "data"),
        "STOCKWIRE_LOG_LEVEL": "WARNING",
    }
    with (work / "notifier.log").open("wb") as log:
        return spawn(
            [sys.executable, "-m", "services.channel_notifier"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def wait_ready(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the notifier did not become ready")


async def wait_delivered(sinks: Sinks, expected: int, timeout_s: float) -> float:
    """Wait until every sink has ``expected`` deliveries; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout_s
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = await sinks.delivered()
        if min(counts) >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"sinks did not receive {expected} deliveries each within {timeout_s}s (have {counts})")


async def publish_paced(js: Any, prefix: str, count: int, rate: float) -> float:
    """Publish ``count`` events at ``rate``/s (each awaited); returns when the first was published."""
    first = time.perf_counter()
    for i in range(count):
        target = first + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        update = _update(f"{prefix}-{i}", 1, i % 40)
        await js.publish(
            availability_subject(update.sku),
            encode(update),
            headers={"Nats-Msg-Id": availability_msg_id(update.sku, 1)},
        )
    return first


async def publish_burst(js: Any, prefix: str, count: int) -> float:
    first = time.perf_counter()
    futures = []
    for i in range(count):
        update = _update(f"{prefix}-{i}", 1, i % 40)
        futures.append(
            await js.publish_async(
                availability_subject(update.sku),
                encode(update),
                headers={"Nats-Msg-Id": availability_msg_id(update.sku, 1)},
            )
        )
    await asyncio.gather(*futures)
    return first


def _row(label: str, values: dict[str, float]) -> str:
    return (
        f"  {label:<42} {values['rate']:>9,.0f}/s   p50 {values['p50_ms']:>7.1f} ms   p99 {values['p99_ms']:>7.1f} ms"
    )


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-notifier-") as tmp:
        work = Path(tmp)
        server = NatsServer(store_dir=work / "nats").start()
        sinks = Sinks(work)
        notifier: subprocess.Popen[bytes] | None = None
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
            await apply_topology(js, TopologySettings())
            sinks.start()
            print(f"channel-notifier fan-out benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")

            stock = await baseline(sinks, args.baseline_seconds, args.concurrency, guarded=False)
            base = await baseline(sinks, args.baseline_seconds, args.concurrency, guarded=True)
            await sinks.reset()

            port = free_port()
            config = work / "stockwire.toml"
            notifier_config(config, sinks, port, args.concurrency)
            notifier = start_notifier(config, server.url, work)
            await wait_ready(port)

            # Warm-up: connections opened, code paths hot.
            await publish_paced(js, "WARM", 200, 400)
            await wait_delivered(sinks, 200, 60)
            await sinks.reset()

            count = int(args.rate * args.seconds)
            first = await publish_paced(js, "SUST", count, args.rate)
            published = time.perf_counter()
            done = await wait_delivered(sinks, count, 120)
            stats = await sinks.stats()
            await sinks.reset()
            latencies = [x for s in stats.values() for x in s["latencies"]]
            sustained = {
                "rate": 3 * count / (done - first),
                "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3,
                "events": count / (published - first),
            }
            checks = [(len(s["backwards"]), s["bad_signatures"]) for s in stats.values()]
            per_sink = {
                name: (percentile(s["latencies"], 50) * 1e3, percentile(s["latencies"], 99) * 1e3)
                for name, s in stats.items()
            }

            first = await publish_burst(js, "BURST", args.burst)
            done = await wait_delivered(sinks, args.burst, 300)
            stats = await sinks.stats()
            latencies = [x for s in stats.values() for x in s["latencies"]]
            burst = {
                "rate": 3 * args.burst / (done - first),
                "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3,
            }
            checks += [(len(s["backwards"]), s["bad_signatures"]) for s in stats.values()]
            backwards = sum(b for b, _ in checks)
            bad = sum(b for _, b in checks)
            await nc.close()
        finally:
            if notifier is not None:
                stop_processes([notifier], 20)
            await sinks.stop()
            server.stop()

    print("\nresults (deliveries/s count every sink; latency = occurred_at -> sink 2xx for the notifier rows)")
    print(_row("baseline: httpx (stock transport) -> sinks", stock))
    print(_row("baseline: httpx (libs.outbound) -> sinks", base))
    print(_row(f"notifier, sustained {sustained['events']:,.0f} events/s", sustained))
    for name, (p50, p99) in per_sink.items():
        print(f"    {name:<40} p50 {p50:>7.1f} ms   p99 {p99:>7.1f} ms")
    print(_row(f"notifier, burst of {args.burst:,} events", burst))
    print("\nratios")
    print(f"  burst fan-out / direct httpx (libs.outbound): {burst['rate'] / base['rate']:.2f}")
    print(f"  burst fan-out / direct httpx (stock):         {burst['rate'] / stock['rate']:.2f}")
    print(f"  burst deliveries/s / target {TARGET_RATE:,.0f}:   {burst['rate'] / TARGET_RATE:.2f}")
    print(f"  sustained p99 / target {TARGET_P99_MS:.0f} ms:       {sustained['p99_ms'] / TARGET_P99_MS:.2f}")
    print(f"  versions gone backwards: {backwards}; bad signatures: {bad}")
    ok = burst["rate"] >= TARGET_RATE and sustained["p99_ms"] < TARGET_P99_MS and not backwards and not bad
    verdict = "meets" if ok else "misses"
    print(f"\n{verdict} the targets (>= {TARGET_RATE:,.0f} deliveries/s, p99 < {TARGET_P99_MS:.0f} ms)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.channel_notifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events/s in the sustained phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the sustained phase")
    parser.add_argument("--burst", type=int, default=6000, help="events in the burst phase")
    parser.add_argument("--baseline-seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per channel (and per baseline sink)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
