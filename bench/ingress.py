"""Ingress throughput and latency against a bare HMAC-only handler, same server and workers, one run.

    python -m bench.ingress [--seconds 15] [--connections 64] [--workers 2] [--servers uvicorn,granian]
                            [--nats-sync always|default|both] [--tracing off|on|both]

The load generator is wrk with ``bench/webhooks.lua`` when installed, else ``bench.loadgen``
(asyncio), in its own process either way. Bodies are ~1 KB signed webhooks with unique ids, through two
sources of the same ingress, one after the other: Commerce Engine's (``x-webhook-signature``, hex; id
and type in the body) and Shopify's (``X-Shopify-Hmac-Sha256``, base64; ``X-Shopify-Topic:
orders/create``, a unique ``X-Shopify-Webhook-Id`` and Shopify's other headers; an ``Order`` body of the
same size). The Shopify figure is flagged FAIL (and the exit status is 1) when it is more than 10 %
below the Commerce Engine one.
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

from bench.loadgen import request_line
from bench.support import LoadResult, Service, machine, print_table, wrk_binary
from libs.config import TopologySettings
from libs.natsserver import NatsServer, free_port
from libs.schemes import SCHEMES
from libs.signing import BodyHmac, commerce_engine_signature
from libs.topology import COMMERCE, apply_topology

SECRET = "bench-secret"
_PAD = "x" * 760
# The ingress under test has two sources: Commerce Engine's, and Shopify's (its scheme, its headers).
CE_SOURCE, SHOPIFY_SOURCE = "bench", "shopify"
MAX_SHORTFALL = 0.10
"""How far below the Commerce Engine figure the Shopify one may be."""


def _ce_body(n: int) -> str:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "event_type": "order.created",
            "created_at": "2026-11-28T10:00:00Z",
            "data": {"order_id": f"o-{n}", "lines": [{"sku": f"SKU-{n % 500}", "qty": 1}], "note": _PAD},
        },
        separators=(",", ":"),
    )


def write_requests(path: Path, count: int) -> None:
    """Commerce Engine deliveries, in the original ``<hex signature>\\t<body>`` lines."""
    with path.open("w") as file:
        for n in range(count):
            body = _ce_body(n)
            file.write(f"{commerce_engine_signature(SECRET, body.encode())}\t{body}\n")


def _shopify_body(n: int, size: int) -> str:
    """An ``orders/create`` body (a REST ``Order``, its usual head and one line) of ``size`` bytes."""
    order_id = 5_735_370_000_000 + n
    order = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1001 + n}",
        "order_number": 1001 + n,
        "created_at": "2026-11-28T05:00:00-05:00",
        "updated_at": "2026-11-28T05:00:00-05:00",
        "currency": "USD",
        "financial_status": "pending",
        "fulfillment_status": None,
        "total_price": "25.00",
        "line_items": [
            {
                "id": 16_049_880_000_000 + n,
                "product_id": 8_123_450_000_000 + n % 500,
                "variant_id": 45_123_450_000_000 + n % 500,
                "sku": f"SKU-{n % 500}",
                "quantity": 1,
                "requires_shipping": True,
            }
        ],
    }
    bare = json.dumps({**order, "note": ""}, separators=(",", ":"))
    return json.dumps({**order, "note": "x" * max(0, size - len(bare))}, separators=(",", ":"))


def write_shopify_requests(path: Path, count: int) -> None:
    """Shopify deliveries as Shopify sends them, each line with its headers (``bench/loadgen.py``),
    the same size as :func:`write_requests`'s."""
    shopify_hmac = SCHEMES["shopify"].signature  # base64 HMAC-SHA256 of the raw body
    assert isinstance(shopify_hmac, BodyHmac)
    with path.open("w") as file:
        for n in range(count):
            body = _shopify_body(n, len(_ce_body(n)))
            webhook_id = str(uuid.uuid4())
            headers = {
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Hmac-Sha256": shopify_hmac.value(SECRET, body.encode()),
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": str(uuid.uuid4()),
                "X-Shopify-Shop-Domain": "stockwire-bench.myshopify.com",
                "X-Shopify-API-Version": "2025-10",
                "X-Shopify-Triggered-At": "2026-11-28T10:00:00.000000000Z",
            }
            file.write(request_line(headers, body))


def run_load(name: str, requests_file: Path, url: str, connections: int, seconds: float) -> LoadResult:
    wrk = wrk_binary()
    if wrk:
        threads = 2
        args = [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--timeout",
            "5s",
            "-s",
            str(Path(__file__).with_name("webhooks.lua")),
            url.rsplit("/webhooks", 1)[0],
            "--",
            str(requests_file),
            str(threads),
            "/webhooks/" + url.rsplit("/webhooks/", 1)[1],
        ]
    else:
        args = [sys.executable, "-m", "bench.loadgen", str(requests_file), url, str(connections), str(seconds)]
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in reversed(output.splitlines()) if ln.startswith("{"))
    data = json.loads(line)
    return LoadResult(
        name,
        int(data["requests"]),
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        int(data["non_2xx"]) + int(data["socket_errors"]),
        {},
    )


def server_args(server: str, factory: str, port: int, workers: int) -> list[str]:
    if server == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--loop",
            "uvloop",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--factory",
            "--no-ws",
            "--log-level",
            "warning",
            factory,
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


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
        return run_load(
            f"bare HMAC handler ({server})", work / "bare.txt", f"{base}/webhooks/bench", args.connections, args.seconds
        )


def measure(
    server: str, args: argparse.Namespace, work: Path, nats_server: NatsServer, tracing: str = "off"
) -> list[LoadResult]:
    """The ingress with both sources: Commerce Engine's then Shopify's, one after the other."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    asyncio.run(_reset(nats_server.url))
    env = {
        "STOCKWIRE_NATS_URL": nats_server.url,
        "STOCKWIRE_DATA_DIR": str(work / f"data-{server}"),
        "STOCKWIRE__SOURCES__BENCH__SECRETS": SECRET,
        "STOCKWIRE__SOURCES__BENCH__SCHEME": "commerce-engine",
        "STOCKWIRE__SOURCES__SHOPIFY__SECRETS": SECRET,
        "STOCKWIRE__SOURCES__SHOPIFY__SCHEME": "shopify",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-metrics-"),
        "STOCKWIRE_LOG_LEVEL": "WARNING",
    }
    if tracing == "on":
        env["STOCKWIRE__TRACING__EXPORTER"] = "file"
        env["STOCKWIRE__TRACING__PATH"] = str(work / f"traces-{server}-{uuid.uuid4().hex[:8]}.jsonl")
    results = []
    with Service(server_args(server, "services.ingress.app:create_app", port, args.workers), env, f"{base}/healthz"):
        run_load("warm-up", work / "warm-ingress.txt", f"{base}/webhooks/{CE_SOURCE}", args.connections, 2)
        run_load("warm-up", work / "warm-shopify.txt", f"{base}/webhooks/{SHOPIFY_SOURCE}", args.connections, 1)
        for platform, source, requests in (
            ("Commerce Engine", CE_SOURCE, "ingress.txt"),
            ("Shopify", SHOPIFY_SOURCE, "shopify.txt"),
        ):
            before = asyncio.run(_stream_count(nats_server.url))
            label = f"ingress + JetStream PubAck, {platform} ({server}, sync_interval {nats_server.sync_interval})"
            if tracing != "off" or args.tracing != "off":
                label += f", tracing {tracing}"
            result = run_load(label, work / requests, f"{base}/webhooks/{source}", args.connections, args.seconds)
            stored = asyncio.run(_stream_count(nats_server.url)) - before
            if stored < result.requests - result.errors:
                print(
                    f"warning: {platform}: {stored} messages stored for {result.requests - result.errors} 2xx answers",
                    file=sys.stderr,
                )
            results.append(result)
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--servers", default="uvicorn", help="comma-separated: uvicorn, granian")
    parser.add_argument("--max-rate", type=int, default=12_000, help="sizes the pre-signed request files")
    parser.add_argument(
        "--nats-sync",
        choices=[*SYNC_MODES, "both"],
        default="always",
        help="JetStream sync_interval: always (fsync before each ack), default (2m), or both in turn",
    )
    parser.add_argument(
        "--tracing",
        choices=["off", "on", "both"],
        default="off",
        help="[tracing] of ingress: off (the default), on (file exporter, every trace kept), or both",
    )
    args = parser.parse_args()
    count = int(args.max_rate * args.seconds)
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        work = Path(tmp)
        print(f"signing {count:,} Commerce Engine and {count:,} Shopify webhooks of ~1 KB…", flush=True)
        write_requests(work / "bare.txt", min(count, 50_000))
        write_requests(work / "ingress.txt", count)
        write_requests(work / "warm.txt", 5_000)
        write_requests(work / "warm-ingress.txt", 20_000)
        write_shopify_requests(work / "shopify.txt", count)
        write_shopify_requests(work / "warm-shopify.txt", 10_000)
        modes = list(SYNC_MODES) if args.nats_sync == "both" else [args.nats_sync]
        rows = []
        for server in args.servers.split(","):
            bare = measure_bare(server.strip(), args, work)
            rows.append([bare.name, bare.rate, bare.p50_ms, bare.p99_ms, bare.errors, "1.00x", ""])
            rates = {}
            tracings = ["off", "on"] if args.tracing == "both" else [args.tracing]
            traced: dict[str, float] = {}
            for mode in modes:
                for tracing in tracings:
                    # A fresh server per mode, back to back: the same machine state for both.
                    store = work / f"nats-{mode}-{tracing}"
                    with NatsServer(store_dir=store, sync_interval=SYNC_MODES[mode]) as nats_server:
                        ce, shopify = measure(server.strip(), args, work, nats_server, tracing)
                    rates[mode] = ce.rate
                    traced[tracing] = ce.rate
                    ratio = shopify.rate / ce.rate if ce.rate else 0.0
                    verdict = "ok" if ratio >= 1 - MAX_SHORTFALL else "FAIL"
                    for result, gate in ((ce, ""), (shopify, f"{ratio:.2f} of CE: {verdict}")):
                        vs_bare = f"{result.rate / bare.rate:.2f}x" if bare.rate else "n/a"
                        rows.append(
                            [result.name, result.rate, result.p50_ms, result.p99_ms, result.errors, vs_bare, gate]
                        )
                    print(f"{server}: ingress (sync {mode}, tracing {tracing}) / bare = {ce.rate / bare.rate:.2f}")
                    print(
                        f"{server}: ingress (sync {mode}, tracing {tracing}) shopify / commerce-engine = {ratio:.2f} "
                        f"(>= {1 - MAX_SHORTFALL:.2f}: {verdict})",
                        flush=True,
                    )
                    if verdict == "FAIL" or shopify.errors or ce.errors:
                        failed.append(
                            f"{server}, sync {mode}, tracing {tracing}: shopify / commerce-engine = {ratio:.2f}, "
                            f"errors {ce.errors} / {shopify.errors}"
                        )
                if len(traced) == 2 and traced["off"]:
                    print(f"{server}: tracing on / off = {traced['on'] / traced['off']:.2f}", flush=True)
            if len(rates) == 2 and rates["default"]:
                print(f"{server}: sync always / default = {rates['always'] / rates['default']:.2f}", flush=True)
    load = "wrk" if wrk_binary() else "asyncio loadgen"
    print_table(
        f"ingress benchmark — {machine()}, {args.workers} workers, {args.connections} connections, "
        f"{args.seconds:.0f}s, load: {load}",
        ["target", "webhooks/s", "p50 ms", "p99 ms", "errors", "vs bare", "shopify / ce"],
        rows,
    )
    for line in failed:
        print(f"FAIL: {line} (Shopify at most {MAX_SHORTFALL:.0%} below, no errors)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
