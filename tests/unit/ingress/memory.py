"""The spool's in-memory unit of work: rows in a dict, one write lock, for the handlers' unit tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from libs.outbox import OutboxMessage
from services.ingress.service_layer.unit_of_work import CommitHook


@dataclass
class Flag:
    """The gate's flag (a marker file on SQLite)."""

    up: bool = False

    def is_set(self) -> bool:
        return self.up

    def set(self) -> None:
        self.up = True

    def clear(self) -> None:
        self.up = False


@dataclass
class MemorySpool:
    """The spool table: msg_id -> (payload, published); ``lock`` plays SQLite's single write lock."""

    rows: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transactions: int = 0
    fail_commit: bool = False

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def publish_all(self) -> None:
        self.rows = {msg_id: (payload, True) for msg_id, (payload, _) in self.rows.items()}


class MemoryUnitOfWork:
    def __init__(self, spool: MemorySpool) -> None:
        self.spool = spool
        self._added: dict[str, bytes] = {}
        self._hooks: list[CommitHook] = []

    async def __aenter__(self) -> MemoryUnitOfWork:
        await self.spool.lock.acquire()
        self.spool.transactions += 1
        self._added, self._hooks = {}, []
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._added, self._hooks = {}, []
        self.spool.lock.release()

    async def add(self, message: OutboxMessage, now: float) -> bytes | None:
        known = self.spool.rows.get(message.msg_id) or (
            (self._added[message.msg_id], False) if message.msg_id in self._added else None
        )
        if known is not None:
            return known[0]
        self._added[message.msg_id] = message.payload
        return None

    async def holds_unpublished(self) -> bool:
        return bool(self._added) or any(not published for _, published in self.spool.rows.values())

    def on_commit(self, hook: CommitHook) -> None:
        self._hooks.append(hook)

    async def commit(self) -> None:
        if self.spool.fail_commit:
            raise OSError("disk full")
        self.spool.rows.update({msg_id: (payload, False) for msg_id, payload in self._added.items()})
        self._added = {}
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()
