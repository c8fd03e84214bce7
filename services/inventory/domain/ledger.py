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
from libs.profiles.canonical import (
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentSucceeded,
    Return,
    ReturnReceived,
    Shipment,
    StockAdjusted,
    StockReceived,
    Unmapped,
)

from .chain import entry_hash
from .events import CommerceEvent, OrderEvent, stocked_lines, summed_lines
from .model import (
    BACKORDER_KINDS,
    Backorder,
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationKind,
    ReservationState,
    ShipmentRecord,
    cart_key,
    order_key,
    order_ref,
    split_key,
)
from .rules import Shortage, Step, decide_reservation, order_step, refund_restocks, return_units, shipment_units
from .workspace import Outcome, ParkedEvent, Workspace

# Parked, these mean the goods already left: the order's hold must not lapse meanwhile.
_GOODS_LEFT = (Shipment, OrderShipped, OrderCompleted, Return, ReturnReceived)

__all__ = ["CartAnswer", "CartResult", "InvariantViolation", "Inventory", "Result", "iso_time"]

S = ReservationState
# What a confirmation commits: a hold, or one that lapsed or whose payment failed (taken again if it can be).
_AWAITING_PAYMENT = frozenset({S.RESERVED, S.EXPIRED, S.PAYMENT_FAILED})
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
        # SKUs with backordered units: the only ones a fill can concern (kept up to date by _move).
        self._waiting = {sku for sku, state in workspace.skus.items() if state.backordered > 0}

    # --- events ------------------------------------------------------------------------------------
    def apply(self, event: CommerceEvent) -> Result:
        """Apply one COMMERCE event exactly once (a duplicate changes nothing; a replay of a dead-lettered
        event is applied as if it came for the first time)."""
        previous = self.ws.seen(event.msg_id)
        if previous is not None and not (event.replay and previous is Outcome.DEAD_LETTERED):
            return Result(Outcome.DUPLICATE, previous.value)
        payload = event.payload
        if isinstance(payload, Unmapped):
            result = Result(Outcome.IGNORED, f"inventory does not act on {event.event_type!r}")
        elif isinstance(payload, StockReceived):
            result = self._received(event, payload)
        elif isinstance(payload, StockAdjusted):
            result = self._adjusted(event, payload)
        else:
            result = self._order_event(event, payload)
            self._fill_backorders(event.msg_id)
            return result
        self.ws.record(event, result.outcome, result.detail, self.now)
        self._fill_backorders(event.msg_id)
        return result

    def dead_letter(self, event: CommerceEvent, reason: str) -> Result:
        """Record an event that can never be applied (it is published to DEADLETTER by the consumer)."""
        previous = self.ws.seen(event.msg_id)
        if previous is not None and not (event.replay and previous is Outcome.DEAD_LETTERED):
            return Result(Outcome.DUPLICATE, previous.value)
        self.ws.record(event, Outcome.DEAD_LETTERED, reason, self.now)
        return Result(Outcome.DEAD_LETTERED, reason)

    def _received(self, event: CommerceEvent, payload: StockReceived) -> Result:
        self._move(payload.sku, K.RECEIVED, payload.quantity, on_hand=payload.quantity, source=event.msg_id)
        return Result(Outcome.APPLIED)

    def _adjusted(self, event: CommerceEvent, payload: StockAdjusted) -> Result:
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
        counted_at = payload.counted_at or event.source_ts
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
        key = order_key(payload.order_key, event.orders)
        current = self.ws.reservation(key)
        step, why = order_step(current, payload)
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
        if any(isinstance(p.event.payload, _GOODS_LEFT) for p in self.ws.parked_for(key)):
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
                assert not isinstance(payload, StockReceived | StockAdjusted | Unmapped)
                current = self.ws.reservation(key)
                step, why = order_step(current, payload)
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
        if isinstance(payload, OrderPlaced):
            if current is None:
                return self._order_placed(event, payload)
            return self._placed_again(event, payload, current)
        assert current is not None
        if isinstance(payload, PaymentSucceeded | OrderConfirmed):
            return self._commit(event, current)
        if isinstance(payload, PaymentFailed):
            return self._release(event.msg_id, current, S.PAYMENT_FAILED, "payment failed")
        if isinstance(payload, OrderCancelled):
            return self._release(event.msg_id, current, S.CANCELLED, "order cancelled")
        if isinstance(payload, OrderShipped):
            return self._shipped_whole(event, current, "order shipped")
        if isinstance(payload, OrderCompleted):
            return self._shipped_whole(event, current, "order completed: units no shipment reported left stock")
        if isinstance(payload, Shipment):
            return self._shipment(event, payload, current)
        if isinstance(payload, Return):
            return self._return(event, payload, current)
        if isinstance(payload, ReturnReceived):
            return self._returned(event, payload, current)
        raise TypeError(f"not an order event to apply: {payload!r}")

    def _order_placed(self, event: CommerceEvent, payload: OrderPlaced) -> Result:
        key = order_key(payload.order_key, event.orders)
        lines = stocked_lines(payload.lines)
        demand = summed_lines(lines)
        # Units of backorder lines may wait for stock; every other unit must be there now.
        firm = summed_lines(line for line in lines if not line.backorder)
        cart = self._usable_cart(payload.reservation_id)
        held_by_cart = cart.lines if cart else {}
        available = {sku: self.ws.sku(sku).available + held_by_cart.get(sku, 0) for sku in demand}
        shortages = decide_reservation(firm, available)
        if shortages:
            detail = "insufficient stock: " + _describe_shortages(shortages)
            self._reject(event.msg_id, key, demand, shortages, detail)
            self.ws.put_reservation(Reservation(key, S.REJECTED, demand, self.now, self.now))
            return Result(Outcome.REJECTED, detail)
        if cart is not None:
            self._give_back(cart, K.RELEASED, S.CONVERTED, event.msg_id, f"taken over by order {payload.order_key}")
        order = Reservation(key, S.RESERVED, demand, self.now, self.now, self.now + self.ttl_s)
        notes = []
        for sku, qty in demand.items():
            take = min(qty, max(0, self.ws.sku(sku).available))
            if take:
                self._move(sku, K.RESERVED, take, reserved=take, reservation=key, source=event.msg_id)
            if qty > take:
                wait = qty - take
                reason = f"backorder: {wait} of {qty} accepted without stock"
                self._move(sku, K.BACKORDERED, wait, reservation=key, source=event.msg_id, reason=reason)
                order.backordered[sku] = wait
                self.ws.put_backorder(Backorder(sku, key, wait, self.now, event.stream_seq))
                notes.append(f"{sku}: {wait} backordered")
        for line in lines:
            if line.product_id is not None:
                order.products.setdefault(line.product_id, line.sku)
                if line.variant_id is not None:
                    order.products[f"{line.product_id}/{line.variant_id}"] = line.sku
        digital = len(payload.lines) - len(lines)
        if digital:
            notes.append(f"{digital} digital line{'s' if digital > 1 else ''}: no stock")
        self.ws.put_reservation(order)
        if payload.completed:
            self._commit(event, order)
            self._shipped_whole(event, order, "placed complete: every unit left stock")
            notes.append("placed complete: committed and shipped at once")
        elif payload.confirmed:
            self._commit(event, order)
            notes.append("placed confirmed: committed at once")
        notes += self._refund_restocks(event, payload, order)
        return Result(Outcome.APPLIED, "; ".join(notes))

    def _placed_again(self, event: CommerceEvent, payload: OrderPlaced, order: Reservation) -> Result:
        """The whole order sent again: what it says that is new (confirmed, complete, more refunded units
        put back) applies; rules.order_step allowed at least one of them."""
        notes: list[str] = []
        if (payload.confirmed or payload.completed) and order.state in _AWAITING_PAYMENT:
            result = self._commit(event, order)
            if result.outcome is not Outcome.APPLIED:
                return result
            notes += [result.detail] if result.detail else []
        if payload.completed and order.state is S.COMMITTED:
            self._shipped_whole(event, order, "order complete: units no shipment reported left stock")
        notes += self._refund_restocks(event, payload, order)
        return Result(Outcome.APPLIED, "; ".join(notes))

    def _refund_restocks(self, event: CommerceEvent, payload: OrderPlaced, order: Reservation) -> list[str]:
        """Units refunds put back since the last total applied: shipped ones back on hand, the rest
        (never shipped) taken out of the order and its hold."""
        if order.state is S.REJECTED:
            return []
        notes = []
        for sku, new in sorted(refund_restocks(payload, order).items()):
            why = f"refund restocked {new} of {sku}"
            back = min(new, order.unreturned(sku))
            if back:
                self._move(sku, K.RETURNED, back, on_hand=back, reservation=order.key, source=event.msg_id, reason=why)
                order.returned[sku] = order.returned.get(sku, 0) + back
            if new > back:
                self._cancel_units(order, sku, new - back, event.msg_id, why + " before it shipped")
            order.restocked[sku] = order.restocked.get(sku, 0) + new
            notes.append(why)
        if notes:
            self._settle(order)
        return notes

    def _usable_cart(self, reservation_id: str | None) -> Reservation | None:
        if reservation_id is None:
            return None
        cart = self.ws.reservation(cart_key(reservation_id))
        if cart is None or cart.state is not S.RESERVED or cart.overdue(self.now):
            return None
        return cart

    def _commit(self, event: CommerceEvent, order: Reservation) -> Result:
        if order.state is S.RESERVED:
            for sku, qty in order.held().items():
                self._move(
                    sku, K.COMMITTED, qty, reserved=-qty, committed=qty, reservation=order.key, source=event.msg_id
                )
            self._set_state(order, S.COMMITTED)
            return Result(Outcome.APPLIED)
        # Paid after the hold lapsed (expired, or an earlier payment failed): take the stock again if it
        # is there, straight into committed; otherwise the order is rejected, never oversold.
        was = order.state.value
        needed = {sku: qty - order.shipped.get(sku, 0) for sku, qty in order.lines.items()}
        needed = {sku: qty for sku, qty in needed.items() if qty > 0}
        available = {sku: self.ws.sku(sku).available for sku in needed}
        shortages = decide_reservation(needed, available)
        if shortages:
            detail = f"paid after the reservation was {was}, and stock is short: " + _describe_shortages(shortages)
            self._reject(event.msg_id, order.key, needed, shortages, detail)
            self._set_state(order, S.REJECTED)
            return Result(Outcome.REJECTED, detail)
        reason = f"paid after the reservation was {was}: committed again from available stock"
        for sku, qty in needed.items():
            self._move(sku, K.COMMITTED, qty, committed=qty, reservation=order.key, source=event.msg_id, reason=reason)
        self._set_state(order, S.COMMITTED)
        return Result(Outcome.APPLIED, reason)

    def _release(self, source: str, order: Reservation, to: ReservationState, reason: str) -> Result:
        if order.state in (S.RESERVED, S.COMMITTED):
            self._give_back(order, K.RELEASED, to, source, reason)
            return Result(Outcome.APPLIED)
        self._set_state(order, to)
        return Result(Outcome.APPLIED, f"nothing held any more (the reservation was {order.state.value})")

    def _shipped_whole(self, event: CommerceEvent, order: Reservation, why: str) -> Result:
        """Everything the order still holds left the warehouse (no shipment named it)."""
        for sku, qty in order.held().items():
            self._deduct(order, sku, qty, event.msg_id, why)
            order.unattributed[sku] = order.unattributed.get(sku, 0) + qty
        self._drop_backorders(order, event.msg_id, why)
        self._set_state(order, S.SHIPPED)
        return Result(Outcome.APPLIED)

    def _deduct(self, order: Reservation, sku: str, qty: int, source: str, why: str, *, held: bool = True) -> None:
        """``qty`` units of ``sku`` left the warehouse for ``order``: from what it holds (committed), or
        (``held`` false: the order was cancelled before the shipment was reported) from on hand."""
        if qty <= 0:
            return
        committed = -qty if held else 0
        self._move(
            sku, K.DEDUCTED, qty, on_hand=-qty, committed=committed, reservation=order.key, source=source, reason=why
        )
        order.shipped[sku] = order.shipped.get(sku, 0) + qty

    def _shipment(self, event: CommerceEvent, payload: Shipment, order: Reservation) -> Result:
        ref = payload.reference
        record = order.shipments.get(ref) or ShipmentRecord(payload.status)
        notes = []
        if not record.left:
            notes += self._ship(event, payload, order, record)
        record.status = payload.status
        if payload.status == "return_to_origin" and not record.back:
            why = f"shipment {ref} returned to origin"
            for sku, qty in record.deducted.items():
                back = min(qty, order.unreturned(sku))
                if back:
                    self._move(
                        sku, K.RETURNED, back, on_hand=back, reservation=order.key, source=event.msg_id, reason=why
                    )
                    order.returned[sku] = order.returned.get(sku, 0) + back
            record.back = True
        elif payload.status == "lost" and not record.lost and not record.back:
            for sku, qty in record.deducted.items():
                why = f"shipment {ref} lost by the carrier: {qty} units stay deducted"
                self._move(sku, K.LOST, qty, reservation=order.key, source=event.msg_id, reason=why)
            record.lost = True
        order.shipments[ref] = record
        self._settle(order, shipment=True)
        return Result(Outcome.APPLIED, "; ".join(notes))

    def _ship(self, event: CommerceEvent, payload: Shipment, order: Reservation, record: ShipmentRecord) -> list[str]:
        """Deduct a shipment's units, once: from what the order holds (committed), or, for an order
        cancelled before the shipment was reported, from on hand (the units left before the cancellation)."""
        why = f"shipment {payload.reference} {payload.status}"
        held = order.held()
        units_by_sku, notes = shipment_units(payload, order)
        for sku, units in units_by_sku.items():
            named = min(units, order.unattributed.get(sku, 0))
            if named:  # already deducted when the order was reported shipped as a whole
                order.unattributed[sku] -= named
            if order.state is S.CANCELLED:
                take = min(units - named, order.lines.get(sku, 0) - order.shipped.get(sku, 0))
                take = max(0, min(take, self.ws.sku(sku).available))
                self._deduct(
                    order, sku, take, event.msg_id, why + " (reported after the order was cancelled)", held=False
                )
            else:
                take = min(units - named, held.get(sku, 0))
                self._deduct(order, sku, take, event.msg_id, why)
            if named + take:
                record.deducted[sku] = record.deducted.get(sku, 0) + named + take
            if named + take < units:
                notes.append(f"{sku}: {units} in the shipment, {named + take} left stock for this order")
        record.left = True
        return notes

    def _return(self, event: CommerceEvent, payload: Return, order: Reservation) -> Result:
        units, notes = return_units(payload, order)
        why = f"return {payload.request_number} {payload.status}"
        for sku, qty in units["restock"].items():
            back = min(qty, order.unreturned(sku))
            if back < qty:
                notes.append(f"{sku}: {qty} returned but only {back} shipped and not yet returned")
            if back:
                self._move(sku, K.RETURNED, back, on_hand=back, reservation=order.key, source=event.msg_id, reason=why)
                order.returned[sku] = order.returned.get(sku, 0) + back
        for sku, qty in units["no_restock"].items():
            back = min(qty, order.unreturned(sku))
            order.returned[sku] = order.returned.get(sku, 0) + back
            notes.append(f"{sku}: {qty} refunded without restocking")
        for sku, qty in units["cancel"].items():
            given = self._cancel_units(order, sku, qty, event.msg_id, f"{why}: {sku} cancelled before shipping")
            if given < qty:
                notes.append(f"{sku}: {qty} cancelled but only {given} were still to ship")
        order.returns.append(payload.request_number)
        self._settle(order)
        return Result(Outcome.APPLIED, "; ".join(notes))

    def _settle(self, order: Reservation, *, shipment: bool = False) -> None:
        """Keep ``order``; it is shipped once every unit it still has left (after a ``shipment``, or once
        what was left to ship was cancelled), whichever of its events came first: a committed order
        holding nothing more, or a cancelled one whose shipments reported after the cancellation carried
        everything (the cancellation came too late)."""
        shipped_all = bool(order.shipped) and all(order.shipped.get(sku, 0) >= n for sku, n in order.lines.items())
        holds_nothing = not order.held() and not order.backordered
        done = {
            S.COMMITTED: (shipment or bool(order.shipped)) and holds_nothing,
            S.CANCELLED: shipped_all,
        }.get(order.state, False)
        self._set_state(order, S.SHIPPED if done else order.state)

    def _cancel_units(self, order: Reservation, sku: str, qty: int, source: str, why: str) -> int:
        """Take ``qty`` unshipped units of ``sku`` out of ``order`` (a refund that cancels them): its
        backorder first, then its hold, then units only the whole order's report said had left (no
        shipment named them: the cancellation says they never did, and they go back on hand). Returns
        how many it took, never more than had not left by a shipment of their own."""
        unshipped = max(0, order.lines.get(sku, 0) - order.shipped.get(sku, 0))
        reported = min(max(0, qty - unshipped), order.unattributed.get(sku, 0))
        if reported:
            reason = f"{why}: reported shipped with the whole order, never left"
            self._move(sku, K.RETURNED, reported, on_hand=reported, reservation=order.key, source=source, reason=reason)
            order.unattributed[sku] -= reported
            order.shipped[sku] -= reported
            order.lines[sku] -= reported
        qty = min(qty, unshipped)
        if qty <= 0:
            return reported
        waiting = min(qty, order.backordered.get(sku, 0))
        if waiting:
            self._move(sku, K.DROPPED, waiting, reservation=order.key, source=source, reason=why)
            if order.backordered[sku] > waiting:
                order.backordered[sku] -= waiting
            else:
                del order.backordered[sku]
            for backorder in self.ws.backorders_for(sku):
                if backorder.order == order.key:
                    left = backorder.qty - waiting
                    self.ws.put_backorder(Backorder(sku, order.key, left, backorder.since, backorder.seq))
        held = min(qty - waiting, order.held().get(sku, 0))
        if held and order.state is S.RESERVED:
            self._move(sku, K.RELEASED, held, reserved=-held, reservation=order.key, source=source, reason=why)
        elif held:
            self._move(sku, K.RELEASED, held, committed=-held, reservation=order.key, source=source, reason=why)
        # Gone from the order whether it still held them or not (a lapsed hold): never shipped, never due.
        order.lines[sku] -= qty
        if not order.lines[sku]:
            del order.lines[sku]
        return qty + reported

    def _returned(self, event: CommerceEvent, payload: ReturnReceived, order: Reservation) -> Result:
        notes = []
        for line in payload.lines:
            remaining = order.unreturned(line.sku)
            qty = min(line.quantity, remaining)
            if qty < line.quantity:
                notes.append(f"{line.sku}: {line.quantity} returned but only {remaining} shipped and not yet returned")
            if qty <= 0:
                continue
            order.returned[line.sku] = order.returned.get(line.sku, 0) + qty
            if payload.restocks(line):
                self._move(line.sku, K.RETURNED, qty, on_hand=qty, reservation=order.key, source=event.msg_id)
        self._set_state(order, order.state)
        return Result(Outcome.APPLIED, "; ".join(notes))

    # --- backorders --------------------------------------------------------------------------------
    def _fill_backorders(self, source: str) -> None:
        """Stock that appeared for a backordered SKU goes to its backorders first, oldest first, before
        it is available to anyone else."""
        if not self._waiting:
            return
        for sku in sorted(self._waiting):
            state = self.ws.skus[sku]
            if state.backordered <= 0 or state.available <= 0:
                continue
            for backorder in self.ws.backorders_for(sku):
                if state.available <= 0:
                    break
                order = self.ws.reservation(backorder.order)
                if order is None:
                    break  # not loaded (another replica holds it): the oldest keeps its turn
                qty = min(backorder.qty, state.available)
                why = f"backorder filled: {qty} of {backorder.qty}"
                if order.state is S.COMMITTED:
                    self._move(
                        sku,
                        K.FILLED,
                        qty,
                        committed=qty,
                        reservation=order.key,
                        source=source,
                        reason=why,
                    )
                else:
                    self._move(
                        sku,
                        K.FILLED,
                        qty,
                        reserved=qty,
                        reservation=order.key,
                        source=source,
                        reason=why,
                    )
                left = order.backordered.get(sku, 0) - qty
                if left > 0:
                    order.backordered[sku] = left
                else:
                    order.backordered.pop(sku, None)
                self.ws.put_backorder(Backorder(sku, order.key, backorder.qty - qty, backorder.since, backorder.seq))
                self._set_state(order, order.state)
                self._release_parked(order.key)

    def _drop_backorders(self, order: Reservation, source: str, why: str) -> None:
        for sku, qty in sorted(order.backordered.items()):
            self._move(sku, K.DROPPED, qty, reservation=order.key, source=source, reason=why)
            self.ws.put_backorder(Backorder(sku, order.key, 0, self.now))
        order.backordered = {}

    # --- reservations by TTL and at checkout ---------------------------------------------------------
    def expire(self, key: str) -> bool:
        """Release a reservation whose TTL has passed, as ``expired`` rows; False if it no longer holds."""
        reservation = self.ws.reservation(key)
        if reservation is None or not reservation.overdue(self.now):
            return False
        self._give_back(reservation, K.EXPIRED, S.EXPIRED, "ttl", "reservation TTL passed")
        self._fill_backorders("ttl")
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
        self._fill_backorders(f"http:{reservation_id}")
        return CartResult(CartAnswer.RELEASED, reservation)

    # --- movements ---------------------------------------------------------------------------------
    def _give_back(
        self, reservation: Reservation, kind: LedgerKind, to: ReservationState, source: str, why: str
    ) -> None:
        for sku, qty in reservation.held().items():
            if reservation.state is S.RESERVED:
                self._move(sku, kind, qty, reserved=-qty, reservation=reservation.key, source=source, reason=why)
            elif reservation.state is S.COMMITTED:
                self._move(sku, kind, qty, committed=-qty, reservation=reservation.key, source=source, reason=why)
        self._drop_backorders(reservation, source, why)
        self._set_state(reservation, to)

    def _set_state(self, reservation: Reservation, state: ReservationState) -> None:
        reservation.state = state
        reservation.updated_at = self.now
        if state is not S.RESERVED:
            reservation.expires_at = None
        self.ws.put_reservation(reservation)

    def _reject(self, source: str, key: str, lines: Mapping[str, int], shortages: list[Shortage], detail: str) -> None:
        self.oversell_rejections += 1
        kind, ref = split_key(key)
        orders, order_id = order_ref(ref) if kind is ReservationKind.ORDER else (None, ref)
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
                    order_id=order_id if kind is ReservationKind.ORDER else None,
                    order_source=orders,
                    reservation_id=ref if kind is ReservationKind.CART else None,
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
        # A backorder's units are counted by the kind of the row, so a rebuild from the ledger finds them.
        after_backordered = state.backordered + BACKORDER_KINDS.get(kind, 0) * qty
        if (
            after_reserved < 0
            or after_committed < 0
            or after_backordered < 0
            or after_on_hand - after_reserved - after_committed < 0
        ):
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
        state.backordered = after_backordered
        if after_backordered > 0:
            self._waiting.add(sku)
        else:
            self._waiting.discard(sku)
        state.version, state.last_hash = version, digest
        self.ws.touch_sku(state)
        self.ws.entries.append(entry)
        self.ws.cause[sku] = kind.value
        return entry
