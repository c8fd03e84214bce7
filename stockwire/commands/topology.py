"""``stockwire topology apply|show|asyncapi``: the streams, consumers and KV buckets of design §2, and the
AsyncAPI document that describes them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

from libs.asyncapi import asyncapi_document
from libs.bus import connect_within, jetstream
from libs.config import StockwireSettings, TopologySettings, load_settings
from libs.natsserver import sync_warning
from libs.topology import TopologyError, apply_topology, describe_topology

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="apply or show the JetStream topology, or print its AsyncAPI document",
        description="apply: create or update the streams, KV buckets and durable consumers the services use "
        "(idempotent). show: print what is declared next to what the server holds, as JSON (read-only). "
        "asyncapi: print the bus's AsyncAPI 3.0 document (JSON), built from the declarations; needs no server. "
        "Exit status 1 when NATS does not answer within --nats-timeout or the server refuses a change.",
    )
    parser.add_argument("action", choices=["apply", "show", "asyncapi"])
    parser.add_argument("--replicas", type=int, default=None, help="stream/KV replicas (default: [topology] replicas)")
    parser.add_argument("--nats-timeout", type=float, default=10.0, help="seconds to wait for NATS (default 10)")
    parser.set_defaults(func=run)


def _topology(args: argparse.Namespace) -> tuple[StockwireSettings, TopologySettings]:
    settings = load_settings()
    topology = settings.topology
    if args.replicas is not None:
        topology = replace(topology, replicas=args.replicas)
    return settings, topology


async def _run(args: argparse.Namespace) -> int:
    settings, topology = _topology(args)
    nc = await connect_within(settings.nats, "stockwire-cli", args.nats_timeout)
    if nc is None:
        servers = ",".join(settings.nats.servers)
        print(f"topology: NATS at {servers} did not answer within {args.nats_timeout:g}s", file=sys.stderr)
        return 1
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
    if args.action == "asyncapi":
        settings, topology = _topology(args)
        first = urlsplit(settings.nats.servers[0])
        server = f"{first.hostname or '127.0.0.1'}:{first.port or 4222}"
        document = asyncapi_document(topology, version=version("stockwire"), server=server)
        print(json.dumps(document, indent=2))
        return 0
    return asyncio.run(_run(args))
