"""The ledger rules of design §4, applied to a :class:`Workspace`.

:class:`Inventory` turns events and commands into ledger rows. Every movement goes through
:meth:`Inventory._move`, which chains the row, updates the projection and refuses anything that would
leave ``available``, ``reserved`` or ``committed`` below zero — so whatever order events arrive in,
nothing is ever oversold. Order events follow the state machine of :mod:`.rules`; an event whose
predecessor has not been applied is parked and applied as soon as it has.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from libs.contracts import InventoryEvent

from .chain import entry_hash
from .events import (
    Adjusted,
    CommerceEvent,
    OrderCancelled,
    OrderCreated,
    OrderEvent,
    PaymentFailed,
    PaymentSucceeded,
    Received,
    ReturnReceived,
    Shipped,
    Unhandled,
    summed_lines,
)
from .model import (
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationKind,
    ReservationState,
    cart_key,
    order_key,
)
from .rules import Shortage, Step, decide_reservation, order_step
from .workspace import Outcome, ParkedEvent, Workspace

__all__ = ["CartAnswer", "CartResult", "InvariantViolation", "Inventory", "Result", "iso_time"]

S = ReservationState
K = LedgerKind


class InvariantViolation(RuntimeError):
    """A movement would oversell or drive a quantity below zero: refused, whatever asked for it."""


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    detail: str = ""


class CartAnswer:
    CREATED = "created"
    EXISTS = "exists"
    SHORT = "short"
    CONFLICT = "conflict"
    UNKNOWN = "unknown"
    RELEASED = "released"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class CartResult:
    answer: str
    reservation: Reservation | None = None
    shortages: tuple[Shortage, ...] = ()
    detail: str = ""


def iso_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds")


def _describe_shortages(shortages: list[Shortage]) -> str:
    return ", ".join(f"{s.sku} (requested {s.requested}, available {s.available})" for s in shortages)


class Inventory:
    def __init__(self, workspace: Workspace, *, now: float, reservation_ttl_s: float) -> None:
        self.ws = workspace
        self.now = now
        self.ttl_s = reservation_ttl_s
        self.occurred_at = iso_time(now)
        self.oversell_rejections = 0

    # --- events ------------------------------------------------------------------------------------
    def apply(self, event: CommerceEvent) -> Result:
        """Apply one COMMERCE event exactly once (a duplicate changes nothing)."""
        previous = self.ws.seen(event.msg_id)
        if previous is not None:
            return Result(Outcome.DUPLICATE, previous.value)
        payload = event.payload
        if isinstance(payload, Unhandled):
            result = Result(Outcome.IGNORED, f"inventory does not act on {event.event_type!r}")
        elif isinstance(payload, Received):
            result = self._received(event, payload)
        elif isinstance(payload, Adjusted):
            result = self._adjusted(event, payload)
        else:
            return self._order_event(event, payload)
        self.ws.record(event, result.outcome, result.detail, self.now)
        return result

    def dead_letter(self, event: CommerceEvent, reason: str) -> Result:
        """Record an event that can never be applied (it is published to DEADLETTER by the consumer)."""
        previous = self.ws.seen(event.msg_id)
        if previous is not None:
            return Result(Outcome.DUPLICATE, previous.value)
        self.ws.record(event, Outcome.DEAD_LETTERED, reason, self.now)
        return Result(Outcome.DEAD_LETTERED, reason)

    def _received(self, event: CommerceEvent, payload: Received) -> Result:
        self._move(payload.sku, K.RECEIVED, payload.qty, on_hand=payload.qty, source=event.msg_id)
        return Result(Outcome.APPLIED)

    def _adjusted(self, event: CommerceEvent, payload: Adjusted) -> Result:
        state = self.ws.sku(payload.sku)
        held = state.reserved + state.committed
        if payload.delta is not None:
            if payload.delta == 0:
                return Result(Outcome.IGNORED, "an adjustment of zero changes nothing")
            applied = max(payload.delta, -state.available)
            reason = ""
            if applied != payload.delta:
                reason = f"requested {payload.delta}; {held} units are held by reservations, applied {applied}"
            self._move(payload.sku, K.ADJUSTED, applied, on_hand=applied, source=event.msg_id, reason=reason)
            return Result(Outcome.APPLIED, reason)
        counted_at = payload.counted_at or 0.0
        assert payload.on_hand is not None
        if state.counted_at is not None and counted_at < state.counted_at:
            reason = (
                f"stale count of {payload.on_hand} taken at {iso_time(counted_at)}, before the count applied "
                f"at {iso_time(state.counted_at)}: recorded, not applied"
            )
            self._move(payload.sku, K.ADJUSTED, 0, source=event.msg_id, reason=reason)
            return Result(Outcome.APPLIED, reason)
        target = max(payload.on_hand, held)
        delta = target - state.on_hand
        reason = f"count of {payload.on_hand} taken at {iso_time(counted_at)}"
        if target != payload.on_hand:
            reason += f"; {held} units are held by reservations, on hand set to {target}"
        state.counted_at = counted_at
        self.ws.touch_sku(state)
        self._move(payload.sku, K.ADJUSTED, delta, on_hand=delta, source=event.msg_id, reason=reason)
        return Result(Outcome.APPLIED, reason)

    # --- orders ------------------------------------------------------------------------------------
    def _order_event(self, event: CommerceEvent, payload: OrderEvent) -> Result:
        key = order_key(payload.order_id)
        current = self.ws.reservation(key)
        step, why = order_step(current.state if current else None, payload)
        if step is Step.PARK:
            self.ws.record(event, Outcome.PARKED, why, self.now)
            self.ws.park(key, ParkedEvent(event, self.now, why))
            self._keep_hold(key)
            return Result(Outcome.PARKED, why)
        if step is Step.IGNORE:
            self.ws.record(event, Outcome.IGNORED, why, self.now)
            return Result(Outcome.IGNORED, why)
        result = self._transition(event, payload, current)
        self.ws.record(event, result.outcome, result.detail, self.now)
        self._release_parked(key)
        self._keep_hold(key)
        return result

    def _keep_hold(self, key: str) -> None:
        """The goods left (a shipment or a return is parked) before the payment arrived: the hold no
        longer lapses, or the TTL would hand a shipped unit to another order."""
        order = self.ws.reservation(key)
        if order is None or order.state is not S.RESERVED or order.expires_at is None:
            return
        if any(isinstance(p.event.payload, Shipped | ReturnReceived) for p in self.ws.parked_for(key)):
            order.expires_at = None
            order.updated_at = self.now
            self.ws.put_reservation(order)

    def _release_parked(self, key: str) -> None:
        """Apply the parked events of one order that its new state allows, until none is left."""
        progress = True
        while progress:
            progress = False
            for parked in self.ws.parked_for(key):
                payload = parked.event.payload
                assert not isinstance(payload, Received | Adjusted | Unhandled)
                current = self.ws.reservation(key)
                step, why = order_step(current.state if current else None, payload)
                if step is Step.PARK:
                    continue
                if step is Step.IGNORE:
                    result = Result(Outcome.IGNORED, why)
                else:
                    result = self._transition(parked.event, payload, current)
                self.ws.settle_parked(key, parked, result.outcome, result.detail, self.now)
                progress = True
                break

    def _transition(self, event: CommerceEvent, payload: OrderEvent, current: Reservation | None) -> Result:
        if isinstance(payload, OrderCreated):
            return self._order_created(event, payload)
        assert current is not None
        if isinstance(payload, PaymentSucceeded):
            return self._payment_succeeded(event, current)
        if isinstance(payload, PaymentFailed):
            return self._release(event.msg_id, current, S.PAYMENT_FAILED, "payment failed")
        if isinstance(payload, OrderCancelled):
            return self._release(event.msg_id, current, S.CANCELLED, "order cancelled")
        if isinstance(payload, Shipped):
            return self._shipped(event, current)
        if isinstance(payload, ReturnReceived):
            return self._returned(event, payload, current)
        raise TypeError(f"not an order event: {payload!r}")

    def _order_created(self, event: CommerceEvent, payload: OrderCreated) -> Result:
        key = order_key(payload.order_id)
        lines = summed_lines(payload.lines)
        cart = self._usable_cart(payload.reservation_id)
        held_by_cart = cart.lines if cart else {}
        available = {sku: self.ws.sku(sku).available + held_by_cart.get(sku, 0) for sku in lines}
        shortages = decide_reservation(lines, available)
        if shortages:
            detail = "insufficient stock: " + _describe_shortages(shortages)
            self._reject(event.msg_id, key, lines, shortages, detail)
            self.ws.put_reservation(Reservation(key, S.REJECTED, lines, self.now, self.now))
            return Result(Outcome.REJECTED, detail)
        if cart is not None:
            self._give_back(cart, K.RELEASED, S.CONVERTED, event.msg_id, f"taken over by order {payload.order_id}")
        for sku, qty in lines.items():
            self._move(sku, K.RESERVED, qty, reserved=qty, reservation=key, source=event.msg_id)
        self.ws.put_reservation(Reservation(key, S.RESERVED, lines, self.now, self.now, self.now + self.ttl_s))
        return Result(Outcome.APPLIED)

    def _usable_cart(self, reservation_id: str | None) -> Reservation | None:
        if reservation_id is None:
            return None
        cart = self.ws.reservation(cart_key(reservation_id))
        if cart is None or cart.state is not S.RESERVED or cart.overdue(self.now):
            return None
        return cart

    def _payment_succeeded(self, event: CommerceEvent, order: Reservation) -> Result:
        if order.state is S.RESERVED:
            for sku, qty in order.lines.items():
                self._move(
                    sku, K.COMMITTED, qty, reserved=-qty, committed=qty, reservation=order.key, source=event.msg_id
                )
            self._set_state(order, S.COMMITTED)
            return Result(Outcome.APPLIED)
        # Paid after the hold lapsed (expired, or an earlier payment failed): take the stock again if it
        # is there, straight into committed; otherwise the order is rejected, never oversold.
        was = order.state.value
        available = {sku: self.ws.sku(sku).available for sku in order.lines}
        shortages = decide_reservation(order.lines, available)
        if shortages:
            detail = f"paid after the reservation was {was}, and stock is short: " + _describe_shortages(shortages)
            self._reject(event.msg_id, order.key, order.lines, shortages, detail)
            self._set_state(order, S.REJECTED)
            return Result(Outcome.REJECTED, detail)
        reason = f"paid after the reservation was {was}: committed again from available stock"
        for sku, qty in order.lines.items():
            self._move(sku, K.COMMITTED, qty, committed=qty, reservation=order.key, source=event.msg_id, reason=reason)
        self._set_state(order, S.COMMITTED)
        return Result(Outcome.APPLIED, reason)

    def _release(self, source: str, order: Reservation, to: ReservationState, reason: str) -> Result:
        if order.state in (S.RESERVED, S.COMMITTED):
            self._give_back(order, K.RELEASED, to, source, reason)
            return Result(Outcome.APPLIED)
        self._set_state(order, to)
        return Result(Outcome.APPLIED, f"nothing held any more (the reservation was {order.state.value})")

    def _shipped(self, event: CommerceEvent, order: Reservation) -> Result:
        for sku, qty in order.lines.items():
            self._move(sku, K.DEDUCTED, qty, on_hand=-qty, committed=-qty, reservation=order.key, source=event.msg_id)
        self._set_state(order, S.SHIPPED)
        return Result(Outcome.APPLIED)

    def _returned(self, event: CommerceEvent, payload: ReturnReceived, order: Reservation) -> Result:
        notes = []
        for line in payload.lines:
            remaining = order.lines.get(line.sku, 0) - order.returned.get(line.sku, 0)
            qty = min(line.qty, max(0, remaining))
            if qty < line.qty:
                notes.append(
                    f"{line.sku}: {line.qty} returned but only {max(0, remaining)} shipped and not yet returned"
                )
            if qty <= 0:
                continue
            order.returned[line.sku] = order.returned.get(line.sku, 0) + qty
            if line.restock:
                self._move(line.sku, K.RETURNED, qty, on_hand=qty, reservation=order.key, source=event.msg_id)
        self._set_state(order, order.state)
        return Result(Outcome.APPLIED, "; ".join(notes))

    # --- reservations by TTL and at checkout ---------------------------------------------------------
    def expire(self, key: str) -> bool:
        """Release a reservation whose TTL has passed, as ``expired`` rows; False if it no longer holds."""
        reservation = self.ws.reservation(key)
        if reservation is None or not reservation.overdue(self.now):
            return False
        self._give_back(reservation, K.EXPIRED, S.EXPIRED, "ttl", "reservation TTL passed")
        return True

    def reserve(self, reservation_id: str, lines: Mapping[str, int], ttl_s: float) -> CartResult:
        """``POST /reservations``: every line or none."""
        key = cart_key(reservation_id)
        lines = dict(sorted(lines.items()))
        existing = self.ws.reservation(key)
        if existing is not None:
            if existing.state is S.RESERVED and not existing.overdue(self.now) and existing.lines == lines:
                return CartResult(CartAnswer.EXISTS, existing)
            return CartResult(
                CartAnswer.CONFLICT,
                existing,
                detail=f"reservation {reservation_id!r} already exists ({existing.state.value}, other lines or lapsed)",
            )
        shortages = decide_reservation(lines, {sku: self.ws.sku(sku).available for sku in lines})
        if shortages:
            self.oversell_rejections += 1
            return CartResult(CartAnswer.SHORT, shortages=tuple(shortages), detail=_describe_shortages(shortages))
        source = f"http:{reservation_id}"
        for sku, qty in lines.items():
            self._move(sku, K.RESERVED, qty, reserved=qty, reservation=key, source=source)
        reservation = Reservation(key, S.RESERVED, lines, self.now, self.now, self.now + ttl_s)
        self.ws.put_reservation(reservation)
        return CartResult(CartAnswer.CREATED, reservation)

    def release(self, reservation_id: str) -> CartResult:
        """``DELETE /reservations/{id}``: give the hold back (idempotent)."""
        reservation = self.ws.reservation(cart_key(reservation_id))
        if reservation is None:
            return CartResult(CartAnswer.UNKNOWN, detail=f"no reservation {reservation_id!r}")
        if self.expire(reservation.key):
            return CartResult(CartAnswer.UNCHANGED, reservation, detail="the reservation had expired")
        if reservation.state is not S.RESERVED:
            return CartResult(CartAnswer.UNCHANGED, reservation)
        self._give_back(reservation, K.RELEASED, S.RELEASED, f"http:{reservation_id}", "released at checkout")
        return CartResult(CartAnswer.RELEASED, reservation)

    # --- movements ---------------------------------------------------------------------------------
    def _give_back(
        self, reservation: Reservation, kind: LedgerKind, to: ReservationState, source: str, why: str
    ) -> None:
        for sku, qty in reservation.lines.items():
            if reservation.state is S.RESERVED:
                self._move(sku, kind, qty, reserved=-qty, reservation=reservation.key, source=source, reason=why)
            elif reservation.state is S.COMMITTED:
                self._move(sku, kind, qty, committed=-qty, reservation=reservation.key, source=source, reason=why)
        self._set_state(reservation, to)

    def _set_state(self, reservation: Reservation, state: ReservationState) -> None:
        reservation.state = state
        reservation.updated_at = self.now
        if state is not S.RESERVED:
            reservation.expires_at = None
        self.ws.put_reservation(reservation)

    def _reject(self, source: str, key: str, lines: Mapping[str, int], shortages: list[Shortage], detail: str) -> None:
        self.oversell_rejections += 1
        kind, ref = key.split(":", 1)
        short = {s.sku for s in shortages}
        for sku, qty in lines.items():
            state = self.ws.sku(sku)
            self.ws.rejections.append(
                InventoryEvent(
                    kind="rejected",
                    sku=sku,
                    qty=qty,
                    version=state.version,
                    occurred_at=self.occurred_at,
                    order_id=ref if kind == ReservationKind.ORDER else None,
                    reservation_id=ref if kind == ReservationKind.CART else None,
                    source_event_id=source,
                    reason=(f"short: {state.available} available" if sku in short else "another line is short")
                    + f"; {detail}",
                )
            )

    def _move(
        self,
        sku: str,
        kind: LedgerKind,
        qty: int,
        *,
        on_hand: int = 0,
        reserved: int = 0,
        committed: int = 0,
        reservation: str | None = None,
        source: str,
        reason: str = "",
    ) -> LedgerEntry:
        state = self.ws.sku(sku)
        after_on_hand, after_reserved, after_committed = (
            state.on_hand + on_hand,
            state.reserved + reserved,
            state.committed + committed,
        )
        if after_reserved < 0 or after_committed < 0 or after_on_hand - after_reserved - after_committed < 0:
            raise InvariantViolation(
                f"{kind.value} of {qty} on {sku!r} would leave on_hand={after_on_hand} reserved={after_reserved} "
                f"committed={after_committed}"
            )
        version = state.version + 1
        digest = entry_hash(
            state.last_hash,
            sku=sku,
            version=version,
            kind=kind.value,
            qty=qty,
            on_hand_delta=on_hand,
            reserved_delta=reserved,
            committed_delta=committed,
            reservation=reservation,
            source=source,
            occurred_at=self.occurred_at,
            reason=reason,
        )
        entry = LedgerEntry(
            sku,
            version,
            kind,
            qty,
            on_hand,
            reserved,
            committed,
            reservation,
            source,
            self.occurred_at,
            reason,
            state.last_hash,
            digest,
        )
        state.on_hand, state.reserved, state.committed = after_on_hand, after_reserved, after_committed
        state.version, state.last_hash = version, digest
        self.ws.touch_sku(state)
        self.ws.entries.append(entry)
        self.ws.cause[sku] = kind.value
        return entry
