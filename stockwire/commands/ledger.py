"""``stockwire ledger verify|rebuild``: check the inventory projection and hash chain, or rebuild it.

Neither creates a database nor migrates one: the inventory service owns its store and migrates it at
start. ``verify`` opens the store read-only; ``rebuild`` writes the projection of an existing store at
the current schema version, and refuses a missing file, an empty database or another schema version
(there is no ledger to rebuild from, or this stockwire is not the release that runs the service).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import load_raw, load_section, load_settings
from libs.store import SchemaError, check_schema, create_engine, database_url, open_read_only
from services.inventory.settings import InventorySettings
from services.inventory.store import schema
from services.inventory.store.maintenance import rebuild_projection, verify_store
from stockwire.commands._options import database_url_argument

__all__ = ["register", "resolve_database_url"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ledger",
        help="verify or rebuild the inventory projection from its ledger",
        description="verify: read-only check of the projection, the hash chain and the reservations (exit 1 on "
        "a mismatch). rebuild: rewrite the projection from the ledger. Neither creates nor migrates a store: "
        "a missing or empty database, or another schema version, is an error (exit 2).",
    )
    parser.add_argument("action", choices=["verify", "rebuild"])
    parser.add_argument(
        "--database-url",
        default=None,
        type=database_url_argument,
        help="inventory's store (default: [inventory] database_url or the data dir)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the hash chain is broken")
    parser.set_defaults(func=run)


def resolve_database_url(explicit: str | None) -> str:
    """Inventory's store as configured (or ``explicit``); nothing is created on the way."""
    raw = load_raw()
    configured = explicit or load_section(raw, "inventory", InventorySettings).database_url
    return database_url(configured, load_settings(raw).data_dir, "inventory", create_dir=False)


async def open_store(url: str, *, read_only: bool = True) -> AsyncEngine:
    """Inventory's store for a CLI tool, checked read-only to be at the schema this code reads; never
    created nor migrated. ``read_only=False`` then gives a normal engine for ``rebuild``.

    Raises :class:`libs.store.SchemaError` when it is missing, empty or at another schema version."""
    engine = open_read_only(url)
    try:
        await check_schema(engine, schema.COMPONENT, schema.MIGRATIONS)
    except BaseException:
        await engine.dispose()
        raise
    if read_only:
        return engine
    await engine.dispose()
    return create_engine(url)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _run(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.database_url)
    try:
        engine = await open_store(url, read_only=args.action == "verify")
    except SchemaError as exc:
        print(f"ledger {args.action}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "verify":
            report = await verify_store(engine)
            print(f"ledger verify {_shown(url)}: {report.rows} ledger rows, {report.skus} SKUs")
            if report.ok:
                print("OK: the projection equals the ledger, the hash chain is intact, reservations agree")
                return 0
            print(f"MISMATCH: {len(report.problems)} problem(s)")
            for problem in report.problems:
                print(f"  - {problem}")
            return 1
        rebuilt = await rebuild_projection(engine, force=args.force)
        if rebuilt.refused:
            print(
                f"ledger rebuild {_shown(url)}: refused, the ledger itself is damaged (use --force to rebuild anyway)"
            )
            for problem in rebuilt.refused:
                print(f"  - {problem}")
            return 1
        print(f"ledger rebuild {_shown(url)}: {rebuilt.rows} ledger rows, {len(rebuilt.changed)} SKU(s) rewritten")
        for sku in rebuilt.changed:
            print(f"  - {sku}")
        return 0
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
