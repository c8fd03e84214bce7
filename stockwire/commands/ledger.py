"""``stockwire ledger verify|rebuild``: check the inventory projection and hash chain, or rebuild it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy.engine import make_url

from libs.config import load_raw, load_section, load_settings
from libs.store import create_engine, migrate
from services.inventory.app import store_url
from services.inventory.settings import InventorySettings
from services.inventory.store import schema
from services.inventory.store.maintenance import rebuild_projection, verify_store

__all__ = ["register", "resolve_database_url"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ledger", help="verify or rebuild the inventory projection from its ledger")
    parser.add_argument("action", choices=["verify", "rebuild"])
    parser.add_argument(
        "--database-url", default=None, help="inventory's store (default: [inventory] database_url or the data dir)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the hash chain is broken")
    parser.set_defaults(func=run)


def resolve_database_url(explicit: str | None) -> str:
    raw = load_raw()
    settings = load_section(raw, "inventory", InventorySettings)
    if explicit:
        settings = InventorySettings(database_url=explicit)
    return store_url(load_settings(raw), settings)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _run(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.database_url)
    engine = create_engine(url)
    try:
        await migrate(engine, schema.COMPONENT, schema.MIGRATIONS)
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
