"""``stockwire topology apply|show``: the streams, consumers and KV buckets of design §2."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from typing import Any

from libs.bus import connect, jetstream
from libs.config import load_settings
from libs.natsserver import sync_warning
from libs.topology import TopologyError, apply_topology, describe_topology

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("topology", help="apply or show the JetStream topology")
    parser.add_argument("action", choices=["apply", "show"])
    parser.add_argument("--replicas", type=int, default=None, help="stream/KV replicas (default: [topology] replicas)")
    parser.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    topology = settings.topology
    if args.replicas is not None:
        topology = replace(topology, replicas=args.replicas)
    nc = await connect(settings.nats, "stockwire-cli")
    try:
        js = jetstream(nc)
        if args.action == "apply":
            try:
                for line in await apply_topology(js, topology):
                    print(line)
                warning = await asyncio.to_thread(sync_warning, settings.nats.monitor_url)
                if warning:
                    print(f"topology: warning: {warning}", file=sys.stderr)
            except TopologyError as exc:
                print(f"topology: {exc}", file=sys.stderr)
                return 1
        else:
            print(json.dumps(await describe_topology(js, topology), indent=2))
        return 0
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
