"""What wakes an idle relay: a committed row announced by PostgreSQL NOTIFY, a NATS nudge from the
writer, or (SQLite) a change of the database file seen through ``PRAGMA data_version``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from libs.backoff import Backoff

from .schedule import ChangeCheck
from .store import PostgresOutboxStore, SqliteOutboxStore

__all__ = ["Wakeup", "listen_postgres", "watch_sqlite"]

log = logging.getLogger("stockwire.outbox_relay")


class Wakeup:
    """A latch: any number of :meth:`set` calls wake the next :meth:`wait` once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.waiting_s = 0.0  # the timeout of the wait in progress; 0 when nobody waits
        self.waiting_since = 0.0  # its start, wall-clock seconds
        self.nudges = 0
        """How many nudges (a writer's NATS message after its commit) have set it so far."""

    def set(self) -> None:
        self._event.set()

    def nudge(self) -> None:
        """:meth:`set`, by a writer's nudge."""
        self.nudges += 1
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when woken, False when the timeout passed first."""
        if not self._event.is_set():
            self.waiting_s, self.waiting_since = timeout_s, time.time()
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                return False
            finally:
                self.waiting_s = 0.0
        self._event.clear()
        return True


async def watch_sqlite(store: SqliteOutboxStore, wakeup: Wakeup, check: ChangeCheck) -> None:
    """Wake on every commit by another connection (the writer's, or our own marks), looking as often as
    ``check`` says: often after a commit no nudge announced, seldom while the file stays the same or the
    writer's nudges come first."""
    last = store.data_version()
    nudges = wakeup.nudges
    while True:
        await asyncio.sleep(check.pause_s)
        current = store.data_version()
        changed = current is None or current != last
        if changed:
            wakeup.set()
        check.looked(changed=changed, nudged=wakeup.nudges != nudges)
        last, nudges = current, wakeup.nudges


async def listen_postgres(store: PostgresOutboxStore, wakeup: Wakeup, backoff: Backoff) -> None:
    """LISTEN on the outbox's channel; :func:`libs.outbox.add_to_outbox` NOTIFYs it, delivered at commit."""
    attempt = 0
    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(store.listen_dsn)
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await connection.add_listener(store.notify_channel, lambda *_args: wakeup.set())
            attempt = 0
            wakeup.set()  # anything committed while we were not listening
            await lost.wait()
            log.warning("outbox %s: LISTEN connection lost; reconnecting", store.table.name)
        except Exception as exc:  # any failure here only costs latency: the relay polls meanwhile
            log.warning("outbox %s: cannot LISTEN (%s); polling meanwhile", store.table.name, exc)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
        await asyncio.sleep(backoff.delay(attempt))
        attempt += 1
