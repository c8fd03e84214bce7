"""The spool's use cases, each a function of a unit of work and the spool's :class:`Gate`.

Order. An event acknowledged earlier must reach COMMERCE earlier: once a 202 has gone out for a
spooled event, no later request may go straight to JetStream ahead of it. So while the spool holds an
unpublished row, new events are spooled too (behind it, in id order, which is the order the relay
publishes), and direct publishing resumes only once the relay has drained the spool.

The gate's flag (a marker file on SQLite, see :class:`..spool.Spool`) exists whenever the spool *may*
hold an unpublished row: :func:`spool` sets it inside its write transaction, before the commit and so
before the 202; :func:`must_spool` looks at it first (no query while it is clear), asks the database
only when it is set, and clears it, inside a write transaction too, once no row waits. Both
transactions hold the store's single write lock, so a clear cannot slip between another worker's row
and its flag. While rows wait, a worker that has just seen some keeps spooling for ``recheck_s``
without asking again (spooling is always safe for order). Without a flag (PostgreSQL: several pods
share the table, a local file cannot speak for them) every request asks the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.outbox import OutboxMessage

from .unit_of_work import PendingFlag, UnitOfWork

__all__ = ["Gate", "must_spool", "spool"]


@dataclass
class Gate:
    """Which way a new event goes: the flag (None: ask the database every time) and how long, in
    seconds, a worker that has just seen rows waiting keeps spooling without asking again."""

    flag: PendingFlag | None
    recheck_s: float = 0.05
    clock: Callable[[], float] = time.monotonic
    _waiting_until: float = field(default=0.0, init=False)

    def saw_rows(self) -> None:
        """Rows wait (one was just spooled, or counted): spool without asking for ``recheck_s``."""
        self._waiting_until = self.clock() + self.recheck_s

    @property
    def recently_waiting(self) -> bool:
        return self.clock() < self._waiting_until


async def spool(uow: UnitOfWork, gate: Gate, message: OutboxMessage, now: float) -> bytes | None:
    """Spool ``message`` (``now``: epoch seconds); None when it is new, else the payload already spooled
    under its id. The store's errors propagate (nothing is spooled then)."""
    async with uow:
        if gate.flag is not None and not gate.flag.is_set():
            gate.flag.set()  # under the write lock, before the commit: see the module docstring
        existing = await uow.add(message, now)
        uow.on_commit(gate.saw_rows)
        await uow.commit()
    return existing


async def must_spool(uow: UnitOfWork, gate: Gate) -> bool:
    """Whether a new event must be spooled (behind rows not yet in JetStream) rather than published.

    Raises what the store raises when the flag says rows may wait and the database cannot be read:
    the caller must then not publish directly.
    """
    if gate.flag is None:
        async with uow:
            return await uow.holds_unpublished()
    if not gate.flag.is_set():
        return False
    if gate.recently_waiting:
        return True
    async with uow:
        waiting = await uow.holds_unpublished()
        if waiting:
            uow.on_commit(gate.saw_rows)
        else:
            gate.flag.clear()  # under the write lock: no writer can add a row between the count and this
        await uow.commit()
    return waiting
