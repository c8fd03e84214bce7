"""Rebuild the projection from the ledger and check it, and the hash chain, against what is stored.

:class:`LedgerVerifier` is fed ledger rows in ``(sku, version)`` order (so a ledger of any size
streams through it), then :meth:`LedgerVerifier.compare` names every difference with the stored
projection and with the stock the open reservations hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .chain import entry_hash
from .model import BACKORDER_KINDS, LedgerEntry, Reservation, SkuState

__all__ = ["LedgerVerifier", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    sku: str | None
    what: str

    def __str__(self) -> str:
        return f"{self.sku}: {self.what}" if self.sku is not None else self.what


@dataclass
class LedgerVerifier:
    rebuilt: dict[str, SkuState] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0

    def feed(self, entry: LedgerEntry, *, row_id: object = None) -> None:
        self.rows += 1
        state = self.rebuilt.get(entry.sku)
        if state is None:
            state = self.rebuilt[entry.sku] = SkuState(entry.sku)
        where = f"ledger row {row_id if row_id is not None else '?'} (version {entry.version})"
        if entry.version != state.version + 1:
            self.problems.append(
                Problem(entry.sku, f"{where}: expected version {state.version + 1}: a row is missing or added")
            )
        if entry.prev_hash != state.last_hash:
            self.problems.append(Problem(entry.sku, f"{where}: does not chain to the row before it"))
        recomputed = entry_hash(
            entry.prev_hash,
            sku=entry.sku,
            version=entry.version,
            kind=entry.kind.value,
            qty=entry.qty,
            on_hand_delta=entry.on_hand_delta,
            reserved_delta=entry.reserved_delta,
            committed_delta=entry.committed_delta,
            reservation=entry.reservation,
            source=entry.source,
            occurred_at=entry.occurred_at,
            reason=entry.reason,
        )
        if recomputed != entry.hash:
            self.problems.append(Problem(entry.sku, f"{where}: content does not match its hash: the row was edited"))
        state.backordered += BACKORDER_KINDS.get(entry.kind, 0) * entry.qty
        state.on_hand += entry.on_hand_delta
        state.reserved += entry.reserved_delta
        state.committed += entry.committed_delta
        state.version = entry.version
        state.last_hash = entry.hash
        if state.reserved < 0 or state.committed < 0 or state.available < 0:
            self.problems.append(
                Problem(
                    entry.sku,
                    f"{where}: leaves on_hand={state.on_hand} reserved={state.reserved} "
                    f"committed={state.committed}: oversold",
                )
            )

    def compare(
        self, projection: Iterable[SkuState], reservations: Iterable[Reservation] | None = None
    ) -> list[Problem]:
        """Every difference between the rebuilt and the stored projection, and with the open reservations."""
        problems = list(self.problems)
        stored = {state.sku: state for state in projection}
        for sku in sorted(set(stored) | set(self.rebuilt)):
            have, want = stored.get(sku), self.rebuilt.get(sku)
            if want is None:
                assert have is not None
                if (have.on_hand, have.reserved, have.committed, have.version) != (0, 0, 0, 0):
                    problems.append(Problem(sku, f"stored projection {_quantities(have)} has no ledger rows"))
                continue
            if have is None:
                problems.append(Problem(sku, f"ledger gives {_quantities(want)} but the projection has no row"))
                continue
            if _quantities(have) != _quantities(want):
                problems.append(
                    Problem(sku, f"projection holds {_quantities(have)}, the ledger gives {_quantities(want)}")
                )
            if have.last_hash != want.last_hash:
                problems.append(
                    Problem(sku, "projection's last hash differs from the ledger's last row: rows cut off?")
                )
        if reservations is None:
            return problems
        holds: dict[str, list[int]] = {}
        for reservation in reservations:
            for sku, qty in reservation.reserved_qty().items():
                holds.setdefault(sku, [0, 0])[0] += qty
            for sku, qty in reservation.committed_qty().items():
                holds.setdefault(sku, [0, 0])[1] += qty
        for sku in sorted(set(holds) | set(self.rebuilt)):
            reserved, committed = holds.get(sku, [0, 0])
            want = self.rebuilt.get(sku, SkuState(sku))
            if (reserved, committed) != (want.reserved, want.committed):
                problems.append(
                    Problem(
                        sku,
                        f"open reservations hold reserved={reserved} committed={committed}, the ledger gives "
                        f"reserved={want.reserved} committed={want.committed}",
                    )
                )
        return problems


def _quantities(state: SkuState) -> str:
    return (
        f"on_hand={state.on_hand} reserved={state.reserved} committed={state.committed} "
        f"backordered={state.backordered} version={state.version}"
    )
