"""``stockwire up``: the embedded nats-server, the topology and the services, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from libs.config import DEFAULT_NATS_URL, StockwireSettings, load_raw, load_section, load_settings
from libs.processes import handle_stop_signals
from stockwire.stack import (
    DEFAULT_PORTS,
    DEV_CE_SOURCE,
    DEV_SOURCE,
    EMBEDDED_NATS_PORT,
    SERVICES,
    Stack,
    local_url,
    section_classes,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start NATS (embedded unless one is configured) and the services",
        description="Starts an embedded nats-server (unless STOCKWIRE_NATS_URL or [nats] servers names another "
        "server), applies the topology and runs the services until Ctrl-C. Every setting comes from the "
        "configuration (file and environment) as the services read it; an admin token and two dev webhook sources "
        f"({DEV_SOURCE}: Stockwire's dialect, {DEV_CE_SOURCE}: Commerce Engine's) are generated under the data dir "
        "only when none is configured.",
    )
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


def external_nats(raw: Mapping[str, Any], settings: StockwireSettings, nats_port: int) -> str | None:
    """The configured NATS to use instead of an embedded one: ``STOCKWIRE_NATS_URL`` or ``[nats] servers``
    (file or environment), unless those name the embedded server's own address (as the example does)."""
    nats = raw.get("nats")
    if not (isinstance(nats, Mapping) and nats.get("servers")):
        return None
    servers = {s.strip() for s in settings.nats.servers if s.strip()}
    embedded = {DEFAULT_NATS_URL, f"nats://127.0.0.1:{nats_port}", f"nats://localhost:{nats_port}"}
    if os.environ.get("STOCKWIRE_NATS_URL") or not servers <= embedded:
        return ",".join(s.strip() for s in settings.nats.servers if s.strip())
    return None


def run(args: argparse.Namespace) -> int:
    raw = load_raw()
    settings = load_settings(raw)
    data_dir = Path(args.data_dir or settings.data_dir)
    sections = {name: load_section(raw, name, cls) for name, cls in section_classes().items()}
    stack = Stack(
        data_dir=data_dir,
        services=choose_services(args.services),
        nats_url=external_nats(raw, settings, args.nats_port),
        nats_settings=settings.nats,
        ports={name: section.port for name, section in sections.items()},
        hosts={name: section.host for name, section in sections.items()},
        configure_dev_source=not settings.sources,
        topology=settings.topology,
        nats_port=args.nats_port,
        embedded_sync_interval=settings.nats.embedded_sync_interval,
        nats_monitor_url=settings.nats.monitor_url,
    )
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    # Ctrl-C, a kill and a closed terminal all stop the stack the same way. The children run in sessions
    # of their own (libs.processes), so these reach only this process, which stops the services together
    # and nats-server after them; were it killed outright, the kernel would stop them (parent-death signal).
    handle_stop_signals(on_signal)
    try:
        stack.start()
    except Exception as exc:
        print(f"stockwire up: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    _print_banner(stack)
    status = 0
    while not stopping.wait(0.5):
        dead = [name for name, child in stack.children.items() if not child.alive()]
        if dead:
            print(f"stockwire up: {', '.join(dead)} exited; stopping everything", file=sys.stderr)
            status = 1
            break
    print("stockwire up: stopping…", flush=True)
    killed = stack.stop()
    if killed:
        print(f"stockwire up: {', '.join(killed)} did not stop in time; killed", file=sys.stderr, flush=True)
        status = 1
    print("stockwire up: stopped", flush=True)
    return status


def try_command(stack: Stack) -> str:
    """A `stockwire send` that reaches this stack from another shell: the ingress URL and the data dir
    are spelt out unless they are the defaults (a configuration given only to `up` is not seen there)."""
    command = ["stockwire", "send"]
    if stack.url("ingress") != local_url("127.0.0.1", DEFAULT_PORTS["ingress"]):
        command += ["--url", stack.url("ingress")]
    if stack.configure_dev_source and stack.data_dir.resolve() != Path(StockwireSettings().data_dir).resolve():
        command += ["--data-dir", shlex.quote(str(stack.data_dir))]
    return " ".join([*command, "inventory.received", shlex.quote('{"sku": "TSHIRT-RED-M", "qty": 10}')])


def _print_banner(stack: Stack) -> None:
    data_dir = stack.data_dir
    lines = ["", "Stockwire is up.", f"  NATS              {stack.nats_url}"]
    lines += [
        f"  {name:<17} {stack.url(name)}   (metrics {stack.url(name)}/metrics, API {stack.url(name)}/schema)"
        for name in stack.services
        if name != "console"
    ]
    if "console" in stack.services:
        lines.append(
            f"  console           {stack.url('console')}   (open it in a browser; log in with the admin token)"
        )
    lines.append(f"  data dir          {data_dir.resolve()}")
    if stack.admin_token_file is not None:
        lines.append(f"  admin token       in {stack.admin_token_file}")
    else:
        lines.append("  admin token       as configured (STOCKWIRE_ADMIN_TOKEN or [admin] token)")
    if stack.configure_dev_source:
        lines.append(
            f"  webhook sources   '{DEV_SOURCE}' (Stockwire's dialect: stock, `stockwire send`) and "
            f"'{DEV_CE_SOURCE}' (Commerce Engine's orders, payments, shipments, returns); secrets in "
            f"{data_dir / 'secrets'}"
        )
    if "ingress" in stack.services:
        lines.append(f"  try:              {try_command(stack)}")
    lines.append("  stop:             Ctrl-C")
    print("\n".join(lines) + "\n", flush=True)
