"""The ``availability`` KV bucket: the latest document per SKU, never overwritten by an older version.

Writes are compare-and-set on the key's revision, so two replicas (or a redelivered message racing a
newer one) cannot put an older version back. The revision and version last seen per key are kept in
memory, which makes the common case one round trip instead of a read and a write.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict

import msgspec
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from libs.contracts import AvailabilityChanged
from libs.subjects import encode_token

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
    def __init__(self, kv: KeyValue, *, cache_size: int = 200_000, max_rounds: int = 16) -> None:
        self.kv = kv
        self.cache_size = cache_size
        self.max_rounds = max_rounds
        self._known: OrderedDict[str, tuple[int, int]] = OrderedDict()

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
