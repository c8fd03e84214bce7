"""``stockwire ledger verify`` and ``rebuild``: the projection against the ledger it is built from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.store import is_postgres

from ..domain.verify import LedgerVerifier, Problem
from . import schema
from .locks import lock_keys
from .reads import entry_from_row
from .rows import reservation_from_row, sku_from_row

__all__ = ["RebuildReport", "VerifyReport", "rebuild_projection", "verify_store"]


@dataclass
class VerifyReport:
    rows: int
    skus: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RebuildReport:
    rows: int
    changed: list[str]
    refused: list[Problem] = field(default_factory=list)


async def verify_store(engine: AsyncEngine) -> VerifyReport:
    """Rebuild the projection in memory from the ledger; compare it, the chain and the open reservations.

    Everything is read in one transaction, so a service writing meanwhile cannot produce a false
    alarm: a snapshot on PostgreSQL (REPEATABLE READ); on SQLite the transaction holds the write lock,
    so writers wait until the verification is done.
    """
    verifier = LedgerVerifier()
    async with engine.connect() as conn:
        if is_postgres(engine):
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            t = schema.ledger
            rows = await conn.stream(sa.select(t).order_by(t.c.sku, t.c.version).execution_options(yield_per=2000))
            async for row in rows:
                verifier.feed(entry_from_row(row), row_id=row.id)
            projection = [sku_from_row(r) for r in await conn.execute(sa.select(schema.skus))]
            r = schema.reservations
            query = sa.select(r).where(r.c.state.in_(["reserved", "committed"]))
            reservations = [reservation_from_row(row) for row in await conn.execute(query)]
    problems = verifier.compare(projection, reservations)
    return VerifyReport(verifier.rows, len(verifier.rebuilt), problems)


def _chain_problems(problems: list[Problem]) -> list[Problem]:
    markers = ("row was edited", "does not chain", "a row is missing", "oversold")
    return [p for p in problems if any(m in p.what for m in markers)]


async def rebuild_projection(engine: AsyncEngine, *, force: bool = False) -> RebuildReport:
    """Rewrite ``skus`` from the ledger. Refused when the chain is broken, unless ``force``."""
    async with engine.begin() as conn:
        names = [s for (s,) in await conn.execute(sa.select(schema.skus.c.sku))]
        names += [s for (s,) in await conn.execute(sa.select(schema.ledger.c.sku).distinct())]
        if is_postgres(engine):
            await conn.run_sync(lock_keys, "s", names)  # writers of these SKUs wait until the rebuild commits
        verifier = LedgerVerifier()
        t = schema.ledger
        for row in await conn.execute(sa.select(t).order_by(t.c.sku, t.c.version)):
            verifier.feed(entry_from_row(row), row_id=row.id)
        broken = _chain_problems(verifier.problems)
        if broken and not force:
            return RebuildReport(verifier.rows, [], broken)
        stored = {s.sku: s for s in (sku_from_row(r) for r in await conn.execute(sa.select(schema.skus)))}
        changed = []
        now = time.time()
        for sku, want in sorted(verifier.rebuilt.items()):
            have = stored.pop(sku, None)
            values = {
                "on_hand": want.on_hand,
                "reserved": want.reserved,
                "committed": want.committed,
                "backordered": want.backordered,
                "version": want.version,
                "last_hash": want.last_hash,
                "updated_at": now,
            }
            if have is None:
                changed.append(sku)
                await conn.execute(sa.insert(schema.skus).values(sku=sku, counted_at=None, **values))
            elif (have.on_hand, have.reserved, have.committed, have.backordered, have.version, have.last_hash) != (
                want.on_hand,
                want.reserved,
                want.committed,
                want.backordered,
                want.version,
                want.last_hash,
            ):
                changed.append(sku)
                await conn.execute(sa.update(schema.skus).where(schema.skus.c.sku == sku).values(**values))
        for sku in stored:  # projection rows the ledger knows nothing of
            changed.append(sku)
            await conn.execute(sa.delete(schema.skus).where(schema.skus.c.sku == sku))
        return RebuildReport(verifier.rows, changed)
