"""Leader leases in a JetStream KV bucket: one holder per key, handed over when the holder dies.

The key's value names its holder. Every write is a compare-and-set on the key's revision (KV
``create`` when the key is absent, ``update`` with the last revision otherwise), so two candidates can
never both believe a write of theirs won. Time is only ever measured locally (monotonic clocks), never
compared between machines:

- the holder renews every ``ttl/4`` and considers itself leader until ``ttl - margin`` after it *sent*
  its last successful renewal; a failed renewal (NATS away) does not end the lease before that, a
  rejected one (someone else wrote the key) ends it at once;
- a candidate that sees the same revision for a whole ``ttl`` (by its own clock, from when it first saw
  it, which is after the holder sent it) takes the key over with an ``update`` on that revision.

So a standby can only take over after the holder has stopped calling itself leader. :class:`LeaseState`
is the pure state machine; :class:`KvLease` drives it against a bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

__all__ = ["Acquire", "Inspect", "KvLease", "LeaseRecord", "LeaseState", "Renew", "Role", "Wait", "holder_id"]

log = logging.getLogger("stockwire.lease")


def holder_id() -> str:
    """Unique per process start: host, pid and a random suffix (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseRecord(msgspec.Struct, frozen=True):
    """The value stored under the lease key."""

    holder: str
    ttl_s: float


class Role(enum.Enum):
    """Whether this candidate holds the lease."""

    STANDBY = "standby"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until`` (monotonic seconds)."""

    until: float


@dataclass(frozen=True, slots=True)
class Inspect:
    """Read the key and report with :meth:`LeaseState.observed` or :meth:`LeaseState.observed_absent`."""


@dataclass(frozen=True, slots=True)
class Acquire:
    """Write our record if the key's last revision is ``revision`` (0 or ``None``: the key is absent)."""

    revision: int | None


@dataclass(frozen=True, slots=True)
class Renew:
    """Rewrite our record if the key's last revision is still ``revision`` (ours)."""

    revision: int


Action = Wait | Inspect | Acquire | Renew


class LeaseState:
    """What a candidate knows about one lease and what it should do next. Pure: no I/O, time is passed in."""

    def __init__(self, holder: str, ttl_s: float, *, poll_s: float | None = None, margin_s: float | None = None):
        if ttl_s <= 0:
            raise ValueError("a lease ttl must be positive")
        self.holder = holder
        self.ttl_s = ttl_s
        self.renew_every_s = ttl_s / 4
        self.poll_s = poll_s if poll_s is not None else min(1.0, max(0.05, ttl_s / 8))
        self.margin_s = margin_s if margin_s is not None else min(1.0, ttl_s / 5)
        self.role = Role.STANDBY
        self.revision: int | None = None  # our record's revision while we hold (or may still hold) the key
        self.valid_until = 0.0
        self._next_renew = 0.0
        self._seen: tuple[int, float, float] | None = None  # (revision, first seen at, its ttl)
        self._next_inspect = 0.0

    def is_leader(self, now: float) -> bool:
        """Leader, and ``now`` (monotonic seconds) before the lease's safe end (its TTL less a margin)."""
        return self.role is Role.LEADER and now < self.valid_until

    @property
    def seen_revision(self) -> int | None:
        """The holder's revision a standby is timing, if any."""
        return self._seen[0] if self._seen is not None else None

    def next_action(self, now: float) -> Action:
        """What to do at ``now`` (monotonic seconds): wait, read the key, or write it by compare-and-set."""
        if self.role is Role.LEADER:
            if now >= self.valid_until:
                self._step_down("lease expired before it could be renewed")
            elif now >= self._next_renew:
                assert self.revision is not None
                return Renew(self.revision)
            else:
                return Wait(min(self._next_renew, self.valid_until))
        if now < self._next_inspect:
            return Wait(self._next_inspect)
        if self.revision is not None:
            # We held the key and nobody has been seen writing it since: carrying on is a compare-and-set
            # on our own revision, which fails if anyone took over meanwhile.
            return Renew(self.revision)
        return Inspect()

    # --- outcomes of Inspect ---------------------------------------------------------------------

    def observed_absent(self, now: float) -> Action:
        """The key is absent, deleted or expired: anyone may create it."""
        self._seen = None
        return Acquire(None)

    def observed(self, revision: int, record: LeaseRecord | None, now: float) -> Action:
        """The key holds ``record`` (``None``: unreadable) at ``revision``."""
        if record is not None and record.holder == self.holder:
            # Ours (a renewal whose answer was lost): keep the validity we can prove, renew at once.
            self.role, self.revision, self._next_renew = Role.LEADER, revision, now
            return Renew(revision)
        ttl = max(self.ttl_s, record.ttl_s if record is not None else 0.0)
        if self._seen is None or self._seen[0] != revision:
            self._seen = (revision, now, ttl)
        seen_revision, since, ttl = self._seen
        if now - since >= ttl:
            return Acquire(seen_revision)
        self._next_inspect = now + self.poll_s
        return Wait(min(self._next_inspect, since + ttl))

    # --- outcomes of writes ----------------------------------------------------------------------

    def acquired(self, revision: int, sent_at: float) -> None:
        """Our write was stored as ``revision``; the lease runs from ``sent_at``, when the write was sent
        (the server's clock started no earlier), so its end is never overestimated."""
        self.role = Role.LEADER
        self.revision = revision
        self.valid_until = sent_at + self.ttl_s - self.margin_s
        self._next_renew = sent_at + self.renew_every_s
        self._seen = None

    renewed = acquired

    def rejected(self, now: float) -> None:
        """A compare-and-set failed: someone else wrote the key since we last saw it."""
        if self.role is Role.LEADER:
            self._step_down("the key was written by another holder")
        self.revision = None
        self._next_inspect = now

    def failed(self, now: float) -> None:
        """A write or read got no answer (NATS away): keep the lease while it is provably ours."""
        if self.role is Role.LEADER and now >= self.valid_until:
            self._step_down("lease expired while NATS did not answer")
        if self.role is Role.LEADER:
            self._next_renew = now + min(self.poll_s, self.renew_every_s)
        else:
            self._next_inspect = now + self.poll_s

    def released(self) -> None:
        """We gave the lease up (or are about to): standby, holding no revision."""
        self.role = Role.STANDBY
        self.revision = None
        self.valid_until = 0.0

    def _step_down(self, reason: str) -> None:
        self.role = Role.STANDBY
        self.valid_until = 0.0
        log.warning("lease of %s: stepping down: %s", self.holder, reason)


class KvLease:
    """Runs a :class:`LeaseState` against key ``key`` of a KV bucket.

    ``bucket`` is a coroutine returning the bucket (called again after errors, so a bucket that does not
    exist yet or a reconnect is survived). ``on_change(is_leader)`` is called on every change of role.
    """

    def __init__(
        self,
        bucket: Callable[[], Awaitable[KeyValue]],
        key: str,
        ttl_s: float,
        *,
        holder: str | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float | None = None,
    ) -> None:
        self.key = key
        self.state = LeaseState(holder or holder_id(), ttl_s, poll_s=poll_s)
        self._bucket = bucket
        self._on_change = on_change
        self._clock = clock
        self._changed = asyncio.Event()
        self._leader_event = asyncio.Event()
        self._was_leader = False
        self._stopping = False
        self._record = msgspec.json.encode(LeaseRecord(self.state.holder, ttl_s))

    @property
    def holder(self) -> str:
        """This candidate's holder id (unique per process start)."""
        return self.state.holder

    def is_leader(self) -> bool:
        """Leader now; tells ``on_change`` when that changed since the last look."""
        leader = self.state.is_leader(self._clock())
        self._publish_role(leader)
        return leader

    async def wait_leader(self) -> None:
        """Return once this candidate leads (at once if it does)."""
        while not self.is_leader():
            self._leader_event.clear()
            await self._leader_event.wait()

    async def run(self) -> None:
        """Compete for the lease, and hold it while we can, until :meth:`stop`; then release it."""
        kv: KeyValue | None = None
        missing_reported = False
        while not self._stopping:
            now = self._clock()
            action = self.state.next_action(now)
            self.is_leader()
            if isinstance(action, Wait):
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), max(0.0, action.until - now))
                continue
            try:
                if kv is None:
                    kv = await self._bucket()
                await self._perform(kv, action)
            except (nats.errors.Error, js_errors.Error, TimeoutError, OSError) as exc:
                if isinstance(exc, js_errors.BucketNotFoundError | js_errors.NotFoundError):
                    if kv is None and not missing_reported:
                        log.warning("lease %s: the KV bucket does not exist (apply the topology); retrying", self.key)
                        missing_reported = True
                    kv = None
                log.debug("lease %s: %s: %s", self.key, type(exc).__name__, exc)
                self.state.failed(self._clock())
            except Exception:
                # Whatever went wrong, the lease must keep being driven (or lapse safely), never stop.
                log.exception("lease %s: unexpected error", self.key)
                kv = None
                self.state.failed(self._clock())
            self._signal()

    async def _perform(self, kv: KeyValue, action: Action) -> None:
        if isinstance(action, Inspect):
            try:
                entry = await kv.get(self.key)
            except js_errors.KeyNotFoundError:
                action = self.state.observed_absent(self._clock())
            else:
                try:
                    record: LeaseRecord | None = msgspec.json.decode(entry.value or b"", type=LeaseRecord)
                except msgspec.DecodeError:
                    record = None
                action = self.state.observed(entry.revision or 0, record, self._clock())
            if isinstance(action, Wait):
                return
        sent_at = self._clock()
        try:
            if isinstance(action, Acquire):
                if action.revision:
                    revision = await kv.update(self.key, self._record, last=action.revision)
                else:  # also recreates a deleted key (a compare-and-set on the delete marker)
                    revision = await kv.create(self.key, self._record)
                self.state.acquired(revision, sent_at)
                log.info("lease %s: acquired by %s (revision %d)", self.key, self.holder, revision)
            elif isinstance(action, Renew):
                revision = await kv.update(self.key, self._record, last=action.revision)
                self.state.renewed(revision, sent_at)
        except js_errors.KeyWrongLastSequenceError:
            if isinstance(action, Renew):
                log.warning("lease %s: renewal refused; checking who holds it", self.key)
            self.state.rejected(self._clock())

    def _signal(self) -> None:
        self._changed.set()
        self.is_leader()

    def _publish_role(self, leader: bool) -> None:
        if leader:
            self._leader_event.set()
        if leader != self._was_leader:
            self._was_leader = leader
            self._changed.set()
            if self._on_change is not None:
                self._on_change(leader)

    async def release(self, kv: KeyValue | None = None) -> None:
        """Give the lease up (on shutdown) so a standby takes over at once instead of after the ttl."""
        self._stopping = True
        self._changed.set()
        revision = self.state.revision if self.state.is_leader(self._clock()) else None
        self.state.released()
        self._publish_role(False)
        if revision is None:
            return
        try:
            bucket = kv if kv is not None else await asyncio.wait_for(self._bucket(), 2.0)
            await asyncio.wait_for(bucket.delete(self.key, last=revision), 2.0)
            log.info("lease %s: released by %s", self.key, self.holder)
        except (nats.errors.Error, js_errors.Error, TimeoutError, OSError) as exc:
            log.warning("lease %s: could not release (%s); it lapses after its ttl", self.key, exc)

    def stop(self) -> None:
        """Ask :meth:`run` to release the lease and return."""
        self._stopping = True
        self._changed.set()
