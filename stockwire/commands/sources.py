"""``stockwire sources list|check``: which profile reads each source, and what a sample payload maps to.

``check`` is how an operator debugs a mapping: it reads a webhook body from a file, maps it with the
source's profile (its ``mapping`` override included) exactly as inventory will, and prints the
canonical event, or the field that does not fit. Nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from libs.config import SourceSettings, StockwireSettings, load_settings
from libs.profiles import MappingError, Profile, ProfileError, profile_name, source_profile
from stockwire.dev_sources import DEV_SOURCES

__all__ = ["register"]

_MAX_FILE_BYTES = 1024 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sources",
        help="list the webhook sources and their profiles, or check what a payload maps to",
        description="list: each configured source with its signature scheme, profile and whose orders its "
        "events name. check NAME FILE: map the webhook body in FILE with NAME's profile (and its mapping "
        "override) as inventory would, and print the canonical event as JSON; nothing is sent. Without "
        "configured sources the local dev sources (shop: stockwire, store: commerce-engine) are used. "
        "Exit status: 0 mapped (or listed), 1 the payload does not fit (the field is named), 2 bad "
        "arguments or configuration.",
    )
    parser.add_argument("action", choices=["list", "check"])
    parser.add_argument("name", nargs="?", help="check: the source")
    parser.add_argument("file", nargs="?", help="check: a file holding one webhook body (JSON)")
    parser.add_argument("--type", default=None, help="check: the event type, when the body does not carry it")
    parser.add_argument("--id", default=None, help="check: the event id, when the body does not carry it")
    parser.set_defaults(func=run)


def _sources(settings: StockwireSettings) -> dict[str, SourceSettings]:
    if settings.sources:
        return dict(settings.sources)
    return {name: SourceSettings(profile=profile) for name, profile in DEV_SOURCES.items()}


def _list(sources: dict[str, SourceSettings]) -> int:
    for name, source in sorted(sources.items()):
        orders = f", orders of {source.orders_source}" if source.orders_source else ""
        override = ", with a mapping override" if source.mapping else ""
        print(f"{name}: scheme {source.scheme}, profile {profile_name(source)}{orders}{override}")
    return 0


def _check(profile: Profile, body: bytes, event_type: str | None, event_id: str | None) -> int:
    header = profile.type_only_in_header
    if event_type is None and header is not None:
        example = profile.event_types[0] if profile.event_types else "…"
        print(
            f"sources check: profile {profile.name!r} reads the event type from the {header} header, not the "
            f"body: give it with --type (e.g. --type {example})",
            file=sys.stderr,
        )
        return 2
    try:
        mapped = profile.map_body(body, event_type=event_type, event_id=event_id)
    except MappingError as exc:
        print(f"sources check: does not fit profile {profile.name!r}: {exc.field}: {exc.detail}", file=sys.stderr)
        return 1
    event = mapped.event
    document = {
        "profile": profile.name,
        "event_type": mapped.event_type,
        "event_id": mapped.event_id,
        "occurred_at": mapped.occurred_at,
        "kind": profile.kind_of(mapped.event_type),
        "event": msgspec.to_builtins(event),
    }
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def run(args: argparse.Namespace) -> int:
    # An unusable configuration is reported by the CLI's entry point, in the form every command uses.
    sources = _sources(load_settings())
    if args.action == "list":
        return _list(sources)
    if not args.name or not args.file:
        print("sources check: give the source and a file: stockwire sources check NAME FILE", file=sys.stderr)
        return 2
    source = sources.get(args.name)
    if source is None:
        print(f"sources check: no source {args.name!r} (sources: {', '.join(sorted(sources))})", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            print(f"sources check: {path} is over {_MAX_FILE_BYTES} bytes", file=sys.stderr)
            return 2
        body = path.read_bytes()
    except OSError as exc:
        print(f"sources check: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        profile = source_profile(args.name, source)
    except ProfileError as exc:
        print(f"sources check: {exc}", file=sys.stderr)
        return 2
    return _check(profile, body, args.type, args.id)
