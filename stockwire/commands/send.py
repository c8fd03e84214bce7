"""``stockwire send <event_type> '<json data>'``: post one signed Commerce Engine webhook to ingress."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from libs.config import load_settings
from libs.signing import commerce_engine_signature
from stockwire.stack import DEFAULT_PORTS, DEV_SOURCE, dev_source_secret

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("send", help="send a signed test webhook to ingress")
    parser.add_argument("event_type", help="e.g. inventory.received, order.created")
    parser.add_argument("data", help='the event data as JSON, e.g. \'{"sku": "A", "qty": 5}\'')
    parser.add_argument("--source", default=DEV_SOURCE, help=f"webhook source (default {DEV_SOURCE})")
    parser.add_argument("--id", default=None, help="event id (default: a new one; reuse one to see dedup)")
    parser.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORTS['ingress']}", help="ingress base URL")
    parser.add_argument("--data-dir", default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"stockwire send: data is not JSON: {exc}", file=sys.stderr)
        return 2
    source = settings.sources.get(args.source)
    if source is not None:
        if source.scheme != "commerce-engine" or not source.secrets:
            print(
                f"stockwire send: source {args.source!r} is not a commerce-engine source with a secret", file=sys.stderr
            )
            return 2
        secret = source.secrets[-1]
    else:
        secret = dev_source_secret(Path(args.data_dir or settings.data_dir))
    body = json.dumps(
        {
            "id": args.id or f"evt_{uuid.uuid4().hex}",
            "event_type": args.event_type,
            "created_at": datetime.now(UTC).isoformat(),
            "data": data,
        }
    ).encode()
    headers = {"content-type": "application/json", "x-webhook-signature": commerce_engine_signature(secret, body)}
    response = httpx.post(f"{args.url}/webhooks/{args.source}", content=body, headers=headers, timeout=10)
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1
