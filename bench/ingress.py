"""Ingress throughput and latency against a bare HMAC-only handler, same server and workers, one run.

    python -m bench.ingress [--seconds 15] [--connections 64] [--workers 2] [--servers uvicorn,granian]
                            [--nats-sync always|default|both] [--tracing off|on|both]

The load generator is wrk with ``bench/webhooks.lua`` when installed, else ``bench.loadgen`` (asyncio),
in its own process either way. Bodies are ~1 KB signed Commerce Engine webhooks with unique ids.
``--tracing both`` measures ingress with ``[tracing]`` off and on (the ``file`` exporter, every trace
kept) back to back in one run, each against a fresh nats-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import nats

from bench.support import LoadResult, Service, machine, print_table, wrk_binary
from libs.config import TopologySettings
from libs.natsserver import NatsServer, free_port
from libs.signing import commerce_engine_signature
from libs.topology import COMMERCE, apply_topology

SECRET = "bench-secret"
_PAD = "x" * 760


def write_requests(path: Path, count: int) -> None:
    with path.open("w") as file:
        for n in range(count):
            body = json.dumps({
                "id": f"evt_{uuid.uuid4().hex}", "event_type": "order.created", "created_at": "2026-11-28T10:00:00Z",
                "data": {"order_id": f"o-{n}", "lines": [{"sku": f"SKU-{n % 500}", "qty": 1}], "note": _PAD},
            }, separators=(",", ":"))
            file.write(f"{commerce_engine_signature(SECRET, body.encode())}\t{body}\n")


def run_load(name: str, requests_file: Path, url: str, connections: int, seconds: float) -> LoadResult:
    wrk = wrk_binary()
    if wrk:
        threads = 2
        args = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "5s",
                "-s", str(Path(__file__).with_name("webhooks.lua")), url.rsplit("/webhooks", 1)[0],
                "--", str(requests_file), str(threads), "/webhooks/" + url.rsplit("/webhooks/", 1)[1]]
    else:
        args = [sys.executable, "-m", "bench.loadgen", str(requests_file), url, str(connections), str(seconds)]
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in reversed(output.splitlines()) if ln.startswith("{"))
    data = json.loads(line)
    return LoadResult(name, int(data["requests"]), data["duration_us"] / 1e6, data["p50_us"] / 1000,
                      data["p99_us"] / 1000, int(data["non_2xx"]) + int(data["socket_errors"]), {})


def server_args(server: str, factory: str, port: int, workers: int) -> list[str]:
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", str(workers),
                "--host", "127.0.0.1", "--port", str(port), "--factory", "--no-ws", "--log-level", "warning",
                factory]
    return [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]


async def _stream_count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(COMMERCE)).state.messages
    finally:
        await nc.close()


async def _reset(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
        await apply_topology(js, TopologySettings())
    finally:
        await nc.close()


# --nats-sync: JetStream's sync_interval for the run; "default" is nats-server's own (2 minutes).
SYNC_MODES = {"always": "always", "default": "2m"}


def measure_bare(server: str, args: argparse.Namespace, work: Path) -> LoadResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bare_env = {"BENCH_SECRET": SECRET}
    with Service(server_args(server, "bench.bare_app:create_app", port, args.workers), bare_env, f"{base}/healthz"):
        run_load("warm-up", work / "warm.txt", f"{base}/webhooks/bench", args.connections, 2)
        return run_load(f"bare HMAC handler ({server})", work / "bare.txt", f"{base}/webhooks/bench",
                        args.connections, args.seconds)


def measure(
    server: str, args: argparse.Namespace, work: Path, nats_server: NatsServer, tracing: str = "off"
) -> LoadResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    asyncio.run(_reset(nats_server.url))
    env = {
        "STOCKWIRE_NATS_URL": nats_server.url, "STOCKWIRE_DATA_DIR": str(work / f"data-{server}"),
        "STOCKWIRE__SOURCES__BENCH__SECRETS": SECRET, "STOCKWIRE__SOURCES__BENCH__SCHEME": "commerce-engine",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-metrics-"), "STOCKWIRE_LOG_LEVEL": "WARNING",
    }
    if tracing == "on":
        env["STOCKWIRE__TRACING__EXPORTER"] = "file"
        env["STOCKWIRE__TRACING__PATH"] = str(work / f"traces-{server}-{uuid.uuid4().hex[:8]}.jsonl")
    with Service(server_args(server, "services.ingress.app:create_app", port, args.workers), env, f"{base}/healthz"):
        run_load("warm-up", work / "warm-ingress.txt", f"{base}/webhooks/bench", args.connections, 2)
        before = asyncio.run(_stream_count(nats_server.url))
        label = f"ingress + JetStream PubAck ({server}, sync_interval {nats_server.sync_interval})"
        if tracing != "off" or args.tracing != "off":
            label += f", tracing {tracing}"
        result = run_load(label, work / "ingress.txt", f"{base}/webhooks/bench", args.connections, args.seconds)
        stored = asyncio.run(_stream_count(nats_server.url)) - before
        if stored < result.requests - result.errors:
            print(f"warning: {stored} messages stored for {result.requests - result.errors} 2xx answers",
                  file=sys.stderr)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--servers", default="uvicorn", help="comma-separated: uvicorn, granian")
    parser.add_argument("--max-rate", type=int, default=12_000, help="sizes the pre-signed request files")
    parser.add_argument("--nats-sync", choices=[*SYNC_MODES, "both"], default="always",
                        help="JetStream sync_interval: always (fsync before each ack), default (2m), or both in turn")
    parser.add_argument("--tracing", choices=["off", "on", "both"], default="off",
                        help="[tracing] of ingress: off (the default), on (file exporter, every trace kept), or both")
    args = parser.parse_args()
    count = int(args.max_rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        work = Path(tmp)
        print(f"signing {count:,} webhooks of ~1 KB…", flush=True)
        write_requests(work / "bare.txt", min(count, 50_000))
        write_requests(work / "ingress.txt", count)
        write_requests(work / "warm.txt", 5_000)
        write_requests(work / "warm-ingress.txt", 20_000)
        modes = list(SYNC_MODES) if args.nats_sync == "both" else [args.nats_sync]
        rows = []
        for server in args.servers.split(","):
            bare = measure_bare(server.strip(), args, work)
            rows.append([bare.name, bare.rate, bare.p50_ms, bare.p99_ms, bare.errors, "1.00x"])
            rates = {}
            tracings = ["off", "on"] if args.tracing == "both" else [args.tracing]
            traced: dict[str, float] = {}
            for mode in modes:
                for tracing in tracings:
                    # A fresh server per mode, back to back: the same machine state for both.
                    store = work / f"nats-{mode}-{tracing}"
                    with NatsServer(store_dir=store, sync_interval=SYNC_MODES[mode]) as nats_server:
                        ingress = measure(server.strip(), args, work, nats_server, tracing)
                    rates[mode] = ingress.rate
                    traced[tracing] = ingress.rate
                    rows.append([ingress.name, ingress.rate, ingress.p50_ms, ingress.p99_ms, ingress.errors,
                                 f"{ingress.rate / bare.rate:.2f}x" if bare.rate else "n/a"])
                    print(f"{server}: ingress (sync {mode}, tracing {tracing}) / bare = {ingress.rate / bare.rate:.2f}",
                          flush=True)
                if len(traced) == 2 and traced["off"]:
                    print(f"{server}: tracing on / off = {traced['on'] / traced['off']:.2f}", flush=True)
            if len(rates) == 2 and rates["default"]:
                print(f"{server}: sync always / default = {rates['always'] / rates['default']:.2f}", flush=True)
    load = "wrk" if wrk_binary() else "asyncio loadgen"
    print_table(f"ingress benchmark — {machine()}, {args.workers} workers, {args.connections} connections, "
                f"{args.seconds:.0f}s, load: {load}",
                ["target", "webhooks/s", "p50 ms", "p99 ms", "errors", "vs bare"], rows)


if __name__ == "__main__":
    main()
