"""``stockwire demo``: NATS, the services and the console, three channel sinks and a flash sale, then the report."""

from __future__ import annotations

import argparse
import secrets
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from libs.processes import handle_stop_signals
from stockwire.commands._options import add_dialect
from stockwire.demo.run import DemoSettings, run_demo, sized
from stockwire.sim.config import SimConfig

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a flash sale end to end on a fresh local stack and write a report",
        description="Starts the embedded nats-server, the four services, the operator console and three demo "
        "channels, runs a flash sale (in the dialect --dialect names), checks the invariants (no "
        "oversell, ledger = ground truth, channels converged) and writes a JSON and HTML report. Exits "
        "non-zero if an invariant fails.",
    )
    parser.add_argument("--orders", type=int, default=None, help="orders in the sale (default 10,000)")
    parser.add_argument("--duration", type=float, default=None, help="spread the sale over about this many seconds")
    parser.add_argument("--rate", type=float, default=None, help="steady webhooks per second (default 400)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same sale")
    add_dialect(parser)
    parser.add_argument("--ttl", type=float, default=8.0, help="reservation TTL in seconds (default 8)")
    parser.add_argument("--duplicates", type=float, default=None, help="share of deliveries sent twice")
    parser.add_argument("--reorder", type=float, default=None, help="share of deliveries sent out of order")
    parser.add_argument("--data-dir", default=".data/demo", help="scratch directory, emptied first (.data/demo)")
    parser.add_argument("--report-dir", default=".data/reports", help="where the report goes (.data/reports)")
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="use free ports for NATS and the services, never the usual ones (to run beside `stockwire up`)",
    )
    parser.add_argument("--show-logs", action="store_true", help="print the services' logs too")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SimConfig(seed=args.seed, run_id=f"demo{secrets.token_hex(3)}", dialect=args.dialect)
    config = sized(config, args.orders, args.duration, args.rate)
    producer = config.producer
    if args.duplicates is not None:
        producer = replace(producer, duplicate_rate=args.duplicates)
    if args.reorder is not None:
        producer = replace(producer, reorder_rate=args.reorder)
    config = replace(config, producer=replace(producer, forged_rate=producer.forged_rate or 0.002))
    settings = DemoSettings(
        sim=config,
        data_dir=Path(args.data_dir),
        report_dir=Path(args.report_dir),
        reservation_ttl_s=args.ttl,
        show_logs=args.show_logs,
        default_ports=not args.free_ports,
    )
    # A kill or a closed terminal stops the demo as Ctrl-C does (KeyboardInterrupt): its processes are
    # stopped on the way out, the services before nats-server.
    handle_stop_signals(signal.default_int_handler)
    return run_demo(settings)
