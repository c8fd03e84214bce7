"""Inventory's use cases, each a function of a unit of work.

Every one of them is the same five steps: load what it touches, build the ledger over it, expire the
overdue reservations it loaded, act, write the changes. :func:`_act` is those steps, a synchronous
transaction body that :func:`_transact` hands to the unit of work to run in one step; the handlers say
only what is touched and what is done.

A batch of COMMERCE events is applied in one transaction (a handful of statements per batch rather than
several per event). If that transaction fails, the batch is applied again with a savepoint per event, so
that one bad event is retried (and dead-lettered after ``max_deliver``) while the rest is committed. A
store that cannot write at all (a full disk, an I/O error) fails the batch as a whole: no event is at
fault, so none spends a delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs import tracing
from libs.contracts import TRACE_HEADERS

from ..domain.events import CommerceEvent
from ..domain.ledger import CartResult, Inventory, Result
from ..domain.model import cart_key
from ..domain.workspace import Outcome, Workspace
from .unit_of_work import Scope, StoreUnavailable, Transaction, UnitOfWork

__all__ = ["BatchResult", "Incoming", "StoreUnavailable", "apply_batch", "expire_overdue", "release", "reserve"]

log = logging.getLogger("stockwire.inventory.handlers")

T = TypeVar("T")


@dataclass
class BatchResult:
    """One result per event of the batch (in order), and what else the batch did."""

    results: list[Result]
    settled: list[tuple[str, Outcome]] = field(default_factory=list)
    """Formerly parked events settled by this batch: (event_type, outcome)."""
    outbox_rows: int = 0
    oversell_rejections: int = 0
    expired: int = 0
    kinds: dict[str, set[str]] = field(default_factory=dict)
    """With ``trace``: the kinds of the ledger rows (and ``rejected``) each event caused, by msg_id."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message of a batch as the wire adapter read it: its event, or why it can never apply
    (``malformed``; then ``event`` carries only its keys and is dead-lettered)."""

    event: CommerceEvent
    malformed: str | None = None


@dataclass(frozen=True, slots=True)
class _Done(Generic[T]):
    value: T
    expired: int
    outbox_rows: int
    oversell_rejections: int
    settled: list[tuple[str, Outcome]]
    kinds: dict[str, set[str]] = field(default_factory=dict)


def _scope(items: Sequence[Incoming]) -> Scope:
    keys: set[str] = set()
    skus: set[str] = set()
    keyless: list[str] = []
    for item in items:
        event = item.event
        order_id = event.order_id
        reservation = event.order_reservation
        if reservation is not None:
            keys.add(reservation)
            reservation_id = getattr(event.payload, "reservation_id", None)
            if reservation_id is not None:
                keys.add(cart_key(reservation_id))
        skus |= event.skus
        if order_id is None and not event.skus:
            keyless.append(event.msg_id)
    return Scope(keys=keys, skus=skus, msg_ids=[i.event.msg_id for i in items], keyless=keyless)


def _apply_one(book: Inventory, item: Incoming) -> Result:
    if item.malformed is not None:
        return book.dead_letter(item.event, item.malformed)
    return book.apply(item.event)


Trace = Mapping[str, Mapping[str, str]]
"""Trace context headers by event msg_id, for the outbox messages each event causes (tracing on only)."""


def _trace_settled(ws: Workspace) -> None:
    """A formerly parked event settled now: its outbox messages carry the context it was published with."""
    for parked, _outcome in ws.settled_events:
        envelope = parked.event.envelope
        if parked.event.msg_id in ws.trace or envelope is None:
            continue
        context = {name: envelope.headers[name] for name in TRACE_HEADERS if name in envelope.headers}
        if context:
            ws.trace[parked.event.msg_id] = context


def _kinds(ws: Workspace) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for entry in ws.entries:
        kinds.setdefault(entry.source, set()).add(entry.kind.value)
    for rejection in ws.rejections:
        if rejection.source_event_id is not None:
            kinds.setdefault(rejection.source_event_id, set()).add("rejected")
    return kinds


def _act(
    tx: Transaction,
    scope: Scope,
    act: Callable[[Inventory], T],
    *,
    now: float,
    ttl_s: float,
    expire: bool,
    trace: Trace | None = None,
) -> _Done[T]:
    """Inside an open transaction: load, build the ledger, expire what is overdue, act, write."""
    ws, overdue = tx.load(scope, now=now, expire=expire)
    if trace is not None:
        ws.trace = dict(trace)
    book = Inventory(ws, now=now, reservation_ttl_s=ttl_s)
    expired = sum(book.expire(key) for key in overdue)
    value = act(book)
    settled = [(parked.event.event_type, outcome) for parked, outcome in ws.settled_events]
    if trace is not None:
        _trace_settled(ws)
    kinds = _kinds(ws) if trace is not None else {}
    rows = tx.write(ws, now=now)
    return _Done(value, expired, rows, book.oversell_rejections, settled, kinds)


async def _transact(
    uow: UnitOfWork,
    scope: Scope,
    act: Callable[[Inventory], T],
    *,
    now: float,
    ttl_s: float,
    expire: bool = True,
    trace: Trace | None = None,
) -> _Done[T]:
    """One whole transaction: :func:`_act`, committed."""
    return await uow.run(lambda tx: _act(tx, scope, act, now=now, ttl_s=ttl_s, expire=expire, trace=trace))


async def apply_batch(
    uow: UnitOfWork, items: Sequence[Incoming], *, now: float, ttl_s: float, trace: Trace | None = None
) -> BatchResult:
    """Apply a fetched batch of COMMERCE events in stream order; one result per item, in order.

    ``now`` is epoch seconds; ``ttl_s`` the lifetime of an order's reservation; ``trace`` (tracing on):
    the trace context headers of each event's outbox messages, by msg_id. Raises
    :class:`StoreUnavailable` when the store cannot write (the caller retries the batch as it is).
    """

    def apply_all(book: Inventory) -> list[Result]:
        return [_apply_one(book, item) for item in items]

    try:
        done = await _transact(uow, _scope(items), apply_all, now=now, ttl_s=ttl_s, trace=trace)
    except StoreUnavailable:
        raise
    except Exception as exc:
        log.warning(
            "batch of %d failed as a whole (%s: %s); applying event by event", len(items), type(exc).__name__, exc
        )
    else:
        return BatchResult(
            done.value, done.settled, done.outbox_rows, done.oversell_rejections, done.expired, done.kinds
        )
    return await _apply_isolated(uow, items, now=now, ttl_s=ttl_s, trace=trace)


async def _apply_isolated(
    uow: UnitOfWork, items: Sequence[Incoming], *, now: float, ttl_s: float, trace: Trace | None = None
) -> BatchResult:
    def apply_each(tx: Transaction) -> BatchResult:
        batch = BatchResult([])
        # Every lock the batch needs is taken here, in one go and in order, before any event is applied.
        tx.load(_scope(items), now=now, expire=False)
        for item in items:

            def apply_item(book: Inventory, item: Incoming = item) -> Result:
                return _apply_one(book, item)

            try:
                with tx.savepoint():
                    done = _act(tx, _scope([item]), apply_item, now=now, ttl_s=ttl_s, expire=False, trace=trace)
            except StoreUnavailable:
                raise
            except Exception as exc:
                log.exception(
                    "event %s (%s) failed; it will be retried",
                    item.event.msg_id,
                    item.event.event_type,
                    extra=tracing.event_log_ids(trace.get(item.event.msg_id) if trace else None),
                )
                batch.results.append(Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}"))
                continue
            batch.results.append(done.value)
            batch.settled += done.settled
            batch.outbox_rows += done.outbox_rows
            batch.oversell_rejections += done.oversell_rejections
            for msg_id, kinds in done.kinds.items():
                batch.kinds.setdefault(msg_id, set()).update(kinds)
        return batch

    return await uow.run(apply_each)


async def reserve(
    uow: UnitOfWork, reservation_id: str, lines: Mapping[str, int], hold_s: float, *, now: float, ttl_s: float
) -> tuple[CartResult, int]:
    """A checkout hold of ``lines`` (SKU -> units) for ``hold_s`` seconds, all or nothing.

    Returns the answer and the outbox rows written. Raises :class:`StoreUnavailable` when the store
    cannot write.
    """
    done = await _transact(
        uow,
        Scope(keys=[cart_key(reservation_id)], skus=set(lines)),
        lambda book: book.reserve(reservation_id, lines, hold_s),
        now=now,
        ttl_s=ttl_s,
    )
    return done.value, done.outbox_rows


async def release(uow: UnitOfWork, reservation_id: str, *, now: float, ttl_s: float) -> tuple[CartResult, int]:
    """Release a checkout hold; returns the answer and the outbox rows written."""
    done = await _transact(
        uow,
        Scope(keys=[cart_key(reservation_id)]),
        lambda book: book.release(reservation_id),
        now=now,
        ttl_s=ttl_s,
        expire=False,
    )
    return done.value, done.outbox_rows


async def expire_overdue(uow: UnitOfWork, *, now: float, ttl_s: float) -> tuple[int, int]:
    """One sweep step: expire up to the store's batch of lapsed reservations; returns (expired, outbox rows)."""
    done = await _transact(uow, Scope(), lambda _book: None, now=now, ttl_s=ttl_s)
    return done.expired, done.outbox_rows
