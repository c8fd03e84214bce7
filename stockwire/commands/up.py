"""``stockwire up``: the embedded nats-server, the topology and the services, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from libs.config import load_raw, load_settings
from stockwire.stack import DEFAULT_PORTS, DEV_SOURCE, EMBEDDED_NATS_PORT, SERVICES, Stack

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("up", help="start NATS (embedded unless STOCKWIRE_NATS_URL) and the services")
    parser.add_argument(
        "--services",
        default=",".join(s.name for s in SERVICES),
        help="comma-separated services to start (default: all)",
    )
    parser.add_argument("--data-dir", default=None, help="local stores and the embedded NATS store (default .data)")
    parser.add_argument("--nats-port", type=int, default=EMBEDDED_NATS_PORT, help="embedded nats-server port")
    parser.set_defaults(func=run)


def choose_services(requested: str) -> list[str]:
    known = {s.name: s for s in SERVICES}
    chosen = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"stockwire up: unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    missing = [name for name in chosen if not known[name].available()]
    if missing:
        print(f"stockwire up: not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    return [name for name in chosen if known[name].available()]


def run(args: argparse.Namespace) -> int:
    raw = load_raw()
    settings = load_settings(raw)
    data_dir = Path(args.data_dir or settings.data_dir)
    external = os.environ.get("STOCKWIRE_NATS_URL")
    ports = {name: int(raw.get(name.replace("-", "_"), {}).get("port", port)) for name, port in DEFAULT_PORTS.items()}
    stack = Stack(
        data_dir=data_dir,
        services=choose_services(args.services),
        nats_url=external,
        ports=ports,
        configure_dev_source=not settings.sources,
        topology=settings.topology,
        nats_port=args.nats_port,
        embedded_sync_interval=settings.nats.embedded_sync_interval,
        nats_monitor_url=settings.nats.monitor_url,
    )
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except Exception as exc:
        print(f"stockwire up: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    _print_banner(stack, data_dir)
    status = 0
    while not stopping.wait(0.5):
        dead = [name for name, child in stack.children.items() if not child.alive()]
        if dead:
            print(f"stockwire up: {', '.join(dead)} exited; stopping everything", file=sys.stderr)
            status = 1
            break
    print("stockwire up: stopping…", flush=True)
    stack.stop()
    print("stockwire up: stopped", flush=True)
    return status


def _print_banner(stack: Stack, data_dir: Path) -> None:
    lines = ["", "Stockwire is up.", f"  NATS              {stack.nats_url}"]
    lines += [
        f"  {name:<17} {stack.url(name)}   (metrics {stack.url(name)}/metrics, API {stack.url(name)}/schema)"
        for name in stack.services
    ]
    lines.append(f"  data dir          {data_dir.resolve()}")
    lines.append(f"  admin token       in {data_dir / 'secrets' / 'admin-token'}")
    if stack.configure_dev_source:
        lines.append(f"  webhook source    '{DEV_SOURCE}' (commerce-engine), secret in {data_dir / 'secrets'}")
        lines.append('  try:              stockwire send inventory.received \'{"sku": "TSHIRT-RED-M", "qty": 10}\'')
    lines.append("  stop:             Ctrl-C")
    print("\n".join(lines) + "\n", flush=True)
