"""The ``availability`` KV bucket: the latest document per SKU, never overwritten by an older version.

Writes are compare-and-set on the key's revision, so two replicas (or a redelivered message racing a
newer one) cannot put an older version back. The revision and version last seen per key are kept in
memory, which makes the common case one round trip instead of a read and a write.

A batch's SKUs go out together as one JetStream atomic batch when the bucket allows it and they are
enough for one to pay (:func:`libs.bus.atomic_pays`; each message names its key's revision, so the batch
is stored whole or not at all): one answer and one fsync rather than one per SKU. A refused batch (a
revision moved under another writer) falls back to the SKUs one by one, whose compare-and-set loop
re-reads what changed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Sequence

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from libs.bus import API_TIMEOUT_S, AtomicBatchRefused, atomic_pays, publish_atomic, stream_allows_atomic
from libs.contracts import HEADER_EXPECTED_LAST_SUBJECT_SEQ, AvailabilityChanged
from libs.subjects import encode_token
from libs.topology import kv_stream, kv_subject

__all__ = ["AvailabilityKv", "KvWrite"]

log = logging.getLogger("stockwire.channel_notifier.kv")


class KvWrite(enum.StrEnum):
    WRITTEN = "written"
    STALE = "stale"


class _Versioned(msgspec.Struct):
    version: int = 0


_version_decoder = msgspec.json.Decoder(_Versioned)


def _version_of(value: bytes | None) -> int:
    if not value:
        return 0
    try:
        return _version_decoder.decode(value).version
    except msgspec.DecodeError:
        return 0  # a value we cannot read is replaced rather than trusted


class AvailabilityKv:
    """``kv``: the bucket. With ``nc`` (the connection under it) and ``bucket`` (its name), :meth:`offer_many`
    writes several keys in one atomic batch once the bucket's stream is seen to allow it."""

    def __init__(
        self,
        kv: KeyValue,
        *,
        nc: Client | None = None,
        bucket: str | None = None,
        cache_size: int = 200_000,
        max_rounds: int = 16,
        timeout_s: float = API_TIMEOUT_S,
    ) -> None:
        self.kv = kv
        self.nc = nc
        self.bucket = bucket
        self.cache_size = cache_size
        self.max_rounds = max_rounds
        self.timeout_s = timeout_s
        self._known: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._atomic: bool | None = None if nc is not None and bucket is not None else False

    async def _read(self, key: str) -> tuple[int, int]:
        """(revision, version) of the key now; revision 0 when it never existed."""
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except js_errors.KeyNotFoundError as exc:
            # A deleted key keeps a tombstone revision that the next write must name.
            tombstone = getattr(exc, "entry", None)
            return (tombstone.revision or 0, 0) if tombstone is not None else (0, 0)
        return entry.revision or 0, _version_of(entry.value)

    def _remember(self, key: str, revision: int, version: int) -> None:
        self._known[key] = (revision, version)
        self._known.move_to_end(key)
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)

    async def offer(self, update: AvailabilityChanged, document: bytes) -> KvWrite:
        # SKU tokens may hold '~' escapes, which nats-py's key check rejects but the server accepts.
        key = encode_token(update.sku)
        for _ in range(self.max_rounds):
            known = self._known.get(key)
            if known is None:
                known = await self._read(key)
                self._remember(key, *known)
            revision, version = known
            if version >= update.version:
                return KvWrite.STALE
            try:
                new_revision = await self.kv.update(key, document, last=revision, validate_keys=False)
            except js_errors.KeyWrongLastSequenceError:
                self._known.pop(key, None)
                continue
            self._remember(key, int(new_revision), update.version)
            return KvWrite.WRITTEN
        raise RuntimeError(f"kv {key}: compare-and-set lost {self.max_rounds} times in a row")

    async def offer_many(
        self, updates: Sequence[tuple[AvailabilityChanged, bytes]], slots: asyncio.Semaphore
    ) -> list[KvWrite | BaseException]:
        """:meth:`offer` for each (update, document), at most one per SKU, at most ``slots`` round trips at
        once; one result per update, in order (the exception where that key could not be written)."""
        results: list[KvWrite | BaseException | None] = [None] * len(updates)
        keys = [encode_token(update.sku) for update, _ in updates]

        async def read(key: str) -> None:
            async with slots:
                self._remember(key, *await self._read(key))

        unknown = [key for key in dict.fromkeys(keys) if key not in self._known]
        await asyncio.gather(*(read(key) for key in unknown), return_exceptions=True)  # offer() reads again
        fresh = []
        for index, ((update, _), key) in enumerate(zip(updates, keys, strict=True)):
            known = self._known.get(key)
            if known is not None and known[1] >= update.version:
                results[index] = KvWrite.STALE
            elif known is not None:
                fresh.append(index)
        if atomic_pays(len(fresh)) and await self._atomic_allowed():
            writes = [(keys[i], updates[i][0].version, updates[i][1]) for i in fresh]
            if await self._write_atomic(writes):
                for index in fresh:
                    results[index] = KvWrite.WRITTEN

        async def one(update: AvailabilityChanged, document: bytes) -> KvWrite:
            async with slots:
                return await self.offer(update, document)

        pending = [i for i, result in enumerate(results) if result is None]
        one_by_one = await asyncio.gather(*(one(*updates[i]) for i in pending), return_exceptions=True)
        for index, result in zip(pending, one_by_one, strict=True):
            results[index] = result
        return [result for result in results if result is not None]

    async def _atomic_allowed(self) -> bool:
        if self._atomic is None:
            assert self.nc is not None and self.bucket is not None
            js = self.nc.jetstream(timeout=self.timeout_s)
            self._atomic = await stream_allows_atomic(js, kv_stream(self.bucket), f"kv {self.bucket}")
        return bool(self._atomic)

    async def _write_atomic(self, writes: list[tuple[str, int, bytes]]) -> bool:
        """Write each (key, version, document), whose key's revision is known, all or none; True if written.
        Otherwise the revisions are forgotten, so that writing them one by one reads them again."""
        assert self.nc is not None and self.bucket is not None
        messages = [
            (kv_subject(self.bucket, key), document, {HEADER_EXPECTED_LAST_SUBJECT_SEQ: str(self._known[key][0])})
            for key, _, document in writes
        ]
        try:
            ack = await (await publish_atomic(self.nc, messages, timeout_s=self.timeout_s))
        except AtomicBatchRefused as exc:
            log.debug("kv %s: atomic batch refused (%s)", self.bucket, exc)  # another writer moved a revision
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.warning("kv %s: atomic batch failed (%s: %s)", self.bucket, type(exc).__name__, exc)
        else:
            for (key, version, _), revision in zip(writes, ack.seqs(), strict=True):
                self._remember(key, revision, version)
            return True
        for key, _, _ in writes:
            self._known.pop(key, None)
        return False
