"""The read cursor: which outbox rows may be read next without ever skipping one. Pure.

A relay reads unpublished rows in id order, ``batch`` at a time, while earlier batches are still in
flight; ``after_id`` is the highest id handed out in the current pass. Reading past an id is only safe
once no row with a lower id can still appear:

- SQLite: one writer at a time, so ids are committed in id order; a row visible now has no invisible
  predecessor. Every id is final as soon as it can be read.
- PostgreSQL: ids are drawn before commit, so id 6 can be visible while id 5's transaction is still
  open. The relay fixes a *bound* instead: it reads ``max(id)`` (every id up to it has been drawn),
  then takes a fresh transaction id ``xid`` (every transaction that drew one of those ids already had
  its transaction id, see :func:`libs.outbox.add_to_outbox`, so that one is below ``xid``), and waits
  until the oldest running transaction is ``>= xid``. From then on every id up to the bound is
  committed or never will be, and rows ``after_id < id <= bound`` are read in id order. (The snapshot's
  own ``xmax`` will not do: it is one past the latest *completed* transaction, and a running one can be
  at or above it.)

Whenever nothing is in flight and a read came back short, the cursor may *rewind* to the start: the
next read then sweeps every unpublished row again, which catches any row that slipped behind the
cursor by a route the rules above do not cover (a writer that bypassed ``add_to_outbox``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AwaitHorizon", "ReadRows", "ScanCursor", "Step", "TakeBound"]


@dataclass(frozen=True, slots=True)
class ReadRows:
    """Read unpublished rows with ``after_id < id`` (and ``id <= up_to`` when given), in id order."""

    after_id: int
    up_to: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class TakeBound:
    """PostgreSQL: read ``max(id)``; if it is above ``after_id``, then take a new transaction id (in that
    order, two statements). Below it nothing new was drawn and no transaction id is needed."""

    after_id: int


@dataclass(frozen=True, slots=True)
class AwaitHorizon:
    """PostgreSQL: is the oldest running transaction id ``>= xid`` yet?"""

    xid: int


Step = ReadRows | TakeBound | AwaitHorizon


class ScanCursor:
    def __init__(self, *, commit_ordered: bool, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.commit_ordered = commit_ordered
        self.limit = limit
        self.after_id = 0
        self._bound: int | None = None  # ids <= bound are final (PostgreSQL)
        self._pending: tuple[int, int] | None = None  # (max id, xid) waiting for the horizon
        self.caught_up = False  # the last read found fewer rows than asked for

    @property
    def bound(self) -> int | None:
        return self._bound

    def next_step(self) -> Step:
        if self.commit_ordered:
            return ReadRows(self.after_id, None, self.limit)
        if self._bound is not None and self.after_id < self._bound:
            return ReadRows(self.after_id, self._bound, self.limit)
        if self._pending is not None:
            return AwaitHorizon(self._pending[1])
        return TakeBound(self.after_id)

    def bound_taken(self, max_id: int | None, next_xid: int | None) -> None:
        """The answer to :class:`TakeBound` (``next_xid`` is ``None`` when ``max_id`` is not above ``after_id``)."""
        if max_id is None or max_id <= self.after_id or next_xid is None:
            # Nothing drawn beyond what was read: nothing to wait for.
            self._bound, self._pending = None, None
            self.caught_up = True
            return
        self._pending = (max_id, next_xid)
        self.caught_up = False

    def horizon_checked(self, passed: bool) -> None:
        """The answer to :class:`AwaitHorizon`; when not passed, ask again later."""
        if passed and self._pending is not None:
            self._bound = self._pending[0]
            self._pending = None

    def rows_read(self, ids: Sequence[int]) -> None:
        """The ids a :class:`ReadRows` returned, ascending."""
        if ids:
            if ids[0] <= self.after_id or any(b <= a for a, b in itertools.pairwise(ids)):
                raise ValueError("rows must come in ascending id order after the cursor")
            self.after_id = ids[-1]
        self.caught_up = len(ids) < self.limit
        if self.caught_up and self._bound is not None:
            # Everything up to the bound is read (or was published before): the band is done.
            self.after_id = max(self.after_id, self._bound)
            self._bound = None

    def rewind(self) -> None:
        """Start the next pass from the oldest unpublished row. Only when nothing is in flight."""
        self.after_id = 0
        self._bound = None
        self._pending = None
        self.caught_up = False
