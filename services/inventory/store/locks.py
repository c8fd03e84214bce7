"""Row-level serialisation on PostgreSQL, where several inventory replicas write at once.

Every writing transaction takes transaction-scoped advisory locks, always in the same global order,
before it reads what it will change:

1. reservations (``r``: orders and checkout holds), sorted — blocking;
2. events that name neither an order nor a SKU (``e``: their inbox row), sorted — blocking;
3. reservations lapsed past their TTL that this transaction offers to expire — *try* locks, which
   never wait, so taking them out of order cannot deadlock (one that is busy is left to the next
   transaction or the sweeper);
4. SKUs (``s``), sorted — blocking.

A transaction never waits for a lock of an earlier class while holding one of a later class, and
within a class waits in ascending order, so no cycle of waits — no deadlock — can form. Once its
locks are held, what it reads cannot change under it (every writer of those rows holds the same
locks), so the in-memory decision "reserve every line or none" is as safe as a guarded
``UPDATE … WHERE available >= qty``, for a whole batch at once; the ``ck_skus_never_oversold`` check
and the unique ``(sku, version)`` of the ledger are the database's own last word if anything slipped.

The order lock is also what makes two replicas agree about one order: a payment parked by one
replica is committed before the replica applying ``order.created`` can take the lock and read the
parked events, so the payment never stays parked.

SQLite needs none of this: every transaction there is ``BEGIN IMMEDIATE``, one writer at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

__all__ = ["lock_id", "lock_keys", "try_lock_keys"]

_LOCK_IN_ORDER = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(:ids) WITH ORDINALITY AS t(k, n) ORDER BY n) AS ordered"
).bindparams(sa.bindparam("ids", type_=ARRAY(sa.BigInteger)))

_TRY_LOCK = sa.text("SELECT k FROM unnest(:ids) AS t(k) WHERE pg_try_advisory_xact_lock(k)").bindparams(
    sa.bindparam("ids", type_=ARRAY(sa.BigInteger))
)


def lock_id(namespace: str, key: str) -> int:
    """A stable signed 64-bit lock id (every replica computes the same one)."""
    digest = hashlib.blake2b(f"{namespace}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(conn: Connection, namespace: str, keys: Iterable[str]) -> None:
    ids = sorted({lock_id(namespace, key) for key in keys})
    if ids:
        conn.execute(_LOCK_IN_ORDER, {"ids": ids})


def try_lock_keys(conn: Connection, namespace: str, keys: Iterable[str]) -> list[str]:
    """The keys whose lock this transaction now holds (already held ones count)."""
    by_id: dict[int, list[str]] = {}
    for key in keys:
        by_id.setdefault(lock_id(namespace, key), []).append(key)
    if not by_id:
        return []
    rows = conn.execute(_TRY_LOCK, {"ids": list(by_id)}).all()
    return sorted(key for (lock,) in rows for key in by_id[lock])
