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
from libs.topology import TopologyError, apply_topology, describe_topology

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="apply or show the JetStream topology",
        description="apply: create or update the streams, KV buckets and durable consumers the services use "
        "(idempotent). show: print what is declared next to what the server holds, as JSON (read-only). "
        "Exit status 1 when NATS does not answer within --nats-timeout or the server refuses a change.",
    )
    parser.add_argument("action", choices=["apply", "show"])
    parser.add_argument("--replicas", type=int, default=None, help="stream/KV replicas (default: [topology] replicas)")
    parser.add_argument("--nats-timeout", type=float, default=10.0, help="seconds to wait for NATS (default 10)")
    parser.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    topology = settings.topology
    if args.replicas is not None:
        topology = replace(topology, replicas=args.replicas)
    try:
        nc = await asyncio.wait_for(connect(settings.nats, "stockwire-cli"), args.nats_timeout)
    except TimeoutError:
        servers = ",".join(settings.nats.servers)
        print(f"topology: NATS at {servers} did not answer within {args.nats_timeout:g}s", file=sys.stderr)
        return 1
    try:
        js = jetstream(nc)
        if args.action == "apply":
            try:
                for line in await apply_topology(js, topology):
                    print(line)
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
