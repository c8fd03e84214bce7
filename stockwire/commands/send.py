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
from stockwire.commands._options import http_url_argument
from stockwire.stack import DEV_CE_SOURCE, DEV_SOURCE, configured_url, source_secret

__all__ = ["register"]

# Exit statuses: 0 accepted (2xx), 1 refused by ingress, 2 bad arguments or configuration, 3 no answer.
UNREACHABLE = 3
_MAX_DATA_BYTES = 1024 * 1024
# The event times of ids given with --id, so that sending one again re-sends the same body (a platform's
# retry), answered "duplicate" rather than "conflict"; the newest few are kept.
_SENT_FILE = "sent-event-times.json"
_SENT_KEPT = 1000
_clock = time.time


def _event_time(data_dir: Path, msg_id: str, now: int) -> int:
    """When the event ``msg_id`` (``<source>:<id>``) was first sent from here, in Unix seconds; ``now`` for
    an id not sent before, which is then remembered. A file that cannot be read or written only costs the
    memory: the event is sent with ``now``."""
    path = data_dir / _SENT_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    first = known.get(msg_id)
    if isinstance(first, int) and not isinstance(first, bool):
        return first
    known[msg_id] = now
    kept = dict(list(known.items())[-_SENT_KEPT:])
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(kept), encoding="utf-8")
        scratch.replace(path)
    except OSError as exc:
        print(f"stockwire send: cannot remember the time of {msg_id} in {path}: {exc.strerror or exc}", file=sys.stderr)
    return now


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
    parser.add_argument(
        "--id",
        default=None,
        help="event id (default: a new one). Sending an id again re-sends its first body (the event time it "
        "was first sent with, kept under --data-dir), as a platform's retry does: ingress answers duplicate",
    )
    parser.add_argument(
        "--url", default=None, type=http_url_argument, help="ingress base URL (default: [ingress] host and port)"
    )
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
    data_dir = Path(args.data_dir or settings.data_dir)
    key = source_secret(settings, args.source, data_dir)
    url = (args.url or configured_url("ingress", raw)).rstrip("/")
    now = int(_clock())
    occurred_at = _event_time(data_dir, f"{args.source}:{args.id}", now) if args.id else now
    try:
        body, headers = SCHEMES[key.scheme].delivery(
            key.secret,
            event_id=args.id or f"evt_{uuid.uuid4().hex}",
            event_type=args.event_type,
            data=data,
            now=now,
            occurred_at=occurred_at,
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
