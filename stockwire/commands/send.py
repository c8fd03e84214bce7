"""``stockwire send <event_type> '<json data>'``: post one webhook, signed in the source's scheme, to ingress."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from libs.config import load_raw, load_settings
from libs.schemes import SCHEMES
from stockwire.stack import DEV_CE_SOURCE, DEV_SOURCE, configured_url, source_secret

__all__ = ["register"]

# Exit statuses: 0 accepted (2xx), 1 refused by ingress, 2 bad arguments or configuration, 3 no answer.
UNREACHABLE = 3
_MAX_DATA_BYTES = 1024 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "send",
        help="send a signed test webhook to ingress",
        description="Signs one webhook as the source's platform would (its [sources.<name>] scheme; the dev "
        "source that `stockwire up` made is a Commerce Engine one) with the source's secret and posts it to "
        "ingress as configured ([ingress] host and port). The body: commerce-engine {id, event_type, created_at, "
        "data}; standard-webhooks {type, timestamp, data}; shopify and woocommerce the data itself (a JSON "
        "object; the event type is the topic, e.g. orders/create or order.created); stripe an Event with the "
        "data as data.object. Exit status: 0 accepted, 1 refused by ingress, 2 bad arguments or configuration, "
        "3 ingress did not answer.",
    )
    parser.add_argument("event_type", help="e.g. inventory.received, order.created, orders/create")
    parser.add_argument(
        "data", help='the event data as JSON, e.g. \'{"sku": "A", "qty": 5}\', or @FILE to read it from FILE'
    )
    parser.add_argument(
        "--source",
        default=DEV_SOURCE,
        help=f"webhook source (default {DEV_SOURCE}, Stockwire's dialect; the dev source {DEV_CE_SOURCE} reads "
        "Commerce Engine's payloads)",
    )
    parser.add_argument("--id", default=None, help="event id (default: a new one; reuse one to see dedup)")
    parser.add_argument("--url", default=None, help="ingress base URL (default: [ingress] host and port)")
    parser.add_argument("--data-dir", default=None, help="where `stockwire up` keeps the dev source secret")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for ingress (default 10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raw = load_raw()
    settings = load_settings(raw)
    text = args.data
    if text.startswith("@"):
        try:
            with open(text[1:], "rb") as file:
                raw_data = file.read(_MAX_DATA_BYTES + 1)
        except OSError as exc:
            print(f"stockwire send: cannot read {text[1:]}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if len(raw_data) > _MAX_DATA_BYTES:
            print(f"stockwire send: {text[1:]} is over {_MAX_DATA_BYTES} bytes", file=sys.stderr)
            return 2
        text = raw_data.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"stockwire send: data is not JSON: {exc}", file=sys.stderr)
        return 2
    key = source_secret(settings, args.source, Path(args.data_dir or settings.data_dir))
    url = (args.url or configured_url("ingress", raw)).rstrip("/")
    try:
        body, headers = SCHEMES[key.scheme].delivery(
            key.secret,
            event_id=args.id or f"evt_{uuid.uuid4().hex}",
            event_type=args.event_type,
            data=data,
            now=int(time.time()),
        )
    except TypeError as exc:
        print(f"stockwire send: {exc}: give the data as one", file=sys.stderr)
        return 2
    try:
        response = httpx.post(f"{url}/webhooks/{args.source}", content=body, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"stockwire send: ingress at {url} did not answer: {exc or type(exc).__name__}", file=sys.stderr)
        return UNREACHABLE
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1
