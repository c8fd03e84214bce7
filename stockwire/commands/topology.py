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
from libs.bus import connect, jetstream
from libs.config import StockwireSettings, TopologySettings, load_settings
from libs.topology import TopologyError, apply_topology, describe_topology

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="apply or show the JetStream topology, or print its AsyncAPI document",
        description="apply: create or update streams, consumers and KV buckets (idempotent). show: what is declared "
        "and what the server holds. asyncapi: the bus's AsyncAPI 3.0 document (JSON), built from the declarations; "
        "needs no server.",
    )
    parser.add_argument("action", choices=["apply", "show", "asyncapi"])
    parser.add_argument("--replicas", type=int, default=None, help="stream/KV replicas (default: [topology] replicas)")
    parser.set_defaults(func=run)


def _topology(args: argparse.Namespace) -> tuple[StockwireSettings, TopologySettings]:
    settings = load_settings()
    topology = settings.topology
    if args.replicas is not None:
        topology = replace(topology, replicas=args.replicas)
    return settings, topology


async def _run(args: argparse.Namespace) -> int:
    settings, topology = _topology(args)
    nc = await connect(settings.nats, "stockwire-cli")
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
    if args.action == "asyncapi":
        settings, topology = _topology(args)
        first = urlsplit(settings.nats.servers[0])
        server = f"{first.hostname or '127.0.0.1'}:{first.port or 4222}"
        document = asyncapi_document(topology, version=version("stockwire"), server=server)
        print(json.dumps(document, indent=2))
        return 0
    return asyncio.run(_run(args))
