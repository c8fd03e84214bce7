"""Run a :class:`SalePlan` against ingress: the phases before the sale, the paced sale, the follow-ups.

The phases before the sale (stocktake, receipts, write-offs) are each delivered and then awaited —
until inventory shows the stock the ground truth expects — so that counts and write-offs apply to
known stock. The sale is paced (with its burst), reordered and duplicated as the producer config
says; an order's follow-ups (confirmation, shipments, returns, completion, refunds) are sent one after
the other once its payment was delivered and inventory is known to have accepted the order (dropped
when it rejected it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .config import SimConfig
from .delivery import Delivery, delivery_sequence, send_offsets
from .model import Decision, Expectation, GroundTruth, StockLevels, compare_levels
from .plan import SalePlan, Webhook
from .producer import DeliveryStats, Producer
from .watch import InventoryApi

__all__ = ["DecisionSource", "SaleRunner", "SimResult", "wait_for_ledger"]

log = logging.getLogger("stockwire.sim")


class DecisionSource(Protocol):
    def decision(self, order_id: str) -> Decision | None: ...

    def decisions(self) -> dict[str, Decision]: ...


@dataclass
class SimResult:
    plan: SalePlan
    truth: GroundTruth
    stats: DeliveryStats
    delivered_at: dict[str, float]
    started_at: float
    sale_started_at: float
    sale_ended_at: float
    ended_at: float
    follow_ups_sent: int = 0
    follow_ups_dropped: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    acknowledged_at: dict[str, float] = field(default_factory=dict)
    """Event id → when its first 2xx answer arrived."""


class SaleRunner:
    def __init__(
        self,
        plan: SalePlan,
        config: SimConfig,
        producer: Producer,
        decisions: DecisionSource,
        inventory: InventoryApi | None,
        *,
        baseline: Mapping[str, StockLevels] | None = None,
        barrier_timeout_s: float = 120.0,
        follow_up_delay_s: float = 0.2,
        decision_timeout_s: float = 300.0,
    ) -> None:
        self.plan = plan
        self.config = config
        self.producer = producer
        self.decisions = decisions
        self.inventory = inventory
        self.barrier_timeout_s = barrier_timeout_s
        self.follow_up_delay_s = follow_up_delay_s
        self.decision_timeout_s = decision_timeout_s
        self.rng = random.Random(config.seed ^ 0x5EED)
        self.truth = GroundTruth(baseline)
        self.sale_total = 0
        self.dispatched = 0
        """Sale deliveries handed to the senders so far (``dispatched / sale_total`` is the progress)."""
        self.follow_ups_sent = 0
        self.follow_ups_dropped = 0
        self._pending: dict[str, list[Webhook]] = {oid: list(steps) for oid, steps in plan.follow_ups.items()}
        self._gate: dict[str, str] = {}
        self._gated_orders: dict[str, str] = {}
        self._armed: set[str] = set()
        for oid, gate in plan.gates.items():
            if oid in self._pending:
                self._gate[oid] = gate
                self._gated_orders[gate] = oid
        self._queue: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=max(1, config.producer.concurrency))
        self._failed: set[str] = set()
        self._progressed = asyncio.Event()
        self._sale_done = False
        producer.on_delivered = self._delivered

    @property
    def progress(self) -> float:
        return self.dispatched / self.sale_total if self.sale_total else 0.0

    async def reached(self, fraction: float) -> None:
        """Return once ``fraction`` of the sale has been handed to the senders (or the sale is over)."""
        while not self._sale_done and (self.sale_total == 0 or self.progress < fraction):
            self._progressed.clear()
            await self._progressed.wait()

    def _delivered(self, webhook: Webhook, _sent_at: float) -> None:
        self.truth.record(webhook)
        oid = self._gated_orders.get(webhook.event_id)
        if oid is not None:
            self._armed.add(oid)

    async def _worker(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                if delivery is None:
                    return
                status = await self.producer.deliver(delivery)
                if not (status is not None and 200 <= status < 300) and delivery.copy.value == "original":
                    self._failed.add(delivery.webhook.event_id)
                    oid = self._gated_orders.get(delivery.webhook.event_id)
                    if oid is not None and delivery.webhook.event_id not in self.producer.delivered_at:
                        self._drop(oid)
            finally:
                self._queue.task_done()

    def _drop(self, oid: str) -> None:
        steps = self._pending.pop(oid, [])
        self.follow_ups_dropped += len(steps)
        self._armed.discard(oid)

    async def _follow_ups(self, stop: asyncio.Event) -> None:
        """Release each order's next follow-up once its gate event is delivered and inventory has decided."""
        while not stop.is_set() or self._armed:
            now = time.time()
            for oid in list(self._armed):
                gate = self._gate[oid]
                delivered = self.producer.delivered_at.get(gate)
                if delivered is None or now - delivered < self.follow_up_delay_s:
                    continue
                decision = self.decisions.decision(oid)
                if decision is None:
                    continue
                if not decision.accepted or decision.rejected_later:
                    self._drop(oid)
                    continue
                steps = self._pending.get(oid)
                if not steps:
                    self._armed.discard(oid)
                    continue
                step = steps.pop(0)
                self._armed.discard(oid)
                if steps:
                    self._gate[oid] = step.event_id
                    self._gated_orders[step.event_id] = oid
                else:
                    self._pending.pop(oid, None)
                for delivery in self._copies(step):
                    await self._queue.put(delivery)
                self.follow_ups_sent += 1
            if stop.is_set() and self._armed and time.time() > self._decision_deadline:
                log.warning("%d orders still undecided; their follow-ups are not sent", len(self._armed))
                for oid in list(self._armed):
                    self._drop(oid)
            await asyncio.sleep(0.05)

    def _copies(self, webhook: Webhook) -> list[Delivery]:
        return delivery_sequence([webhook], self.config.producer, self.rng)

    async def _deliver_all(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self._queue.put(delivery)
        await self._queue.join()

    async def _barrier(self, phase: str) -> None:
        """Wait until inventory shows the stock everything delivered so far should give."""
        if self.inventory is None:
            return
        expected = self.truth.expected({}).levels
        await wait_for_ledger(self.inventory, expected, self.barrier_timeout_s, what=f"phase {phase}")

    async def run(self) -> SimResult:
        started = time.time()
        workers = [asyncio.create_task(self._worker()) for _ in range(max(1, self.config.producer.concurrency))]
        phase_seconds: dict[str, float] = {}
        stop_follow_ups = asyncio.Event()
        follow_ups: asyncio.Task[None] | None = None
        try:
            for name, webhooks in self.plan.phases():
                begun = time.time()
                await self._deliver_all(delivery_sequence(list(webhooks), self.config.producer, self.rng))
                await self._barrier(name)
                phase_seconds[name] = time.time() - begun
            sale_started = time.time()
            self._decision_deadline = float("inf")
            follow_ups = asyncio.create_task(self._follow_ups(stop_follow_ups))
            await self._sale()
            sale_ended = time.time()
            self._decision_deadline = time.time() + self.decision_timeout_s
            stop_follow_ups.set()
            await follow_ups
            await self._queue.join()
            phase_seconds["sale"] = sale_ended - sale_started
            phase_seconds["follow-ups"] = time.time() - sale_ended
        finally:
            self._sale_done = True
            self._progressed.set()
            stop_follow_ups.set()
            if follow_ups is not None and not follow_ups.done():
                follow_ups.cancel()
            for _ in workers:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(None)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return SimResult(
            plan=self.plan,
            truth=self.truth,
            stats=self.producer.stats,
            delivered_at=self.producer.delivered_at,
            started_at=started,
            sale_started_at=sale_started,
            sale_ended_at=sale_ended,
            ended_at=time.time(),
            follow_ups_sent=self.follow_ups_sent,
            follow_ups_dropped=self.follow_ups_dropped,
            phase_seconds=phase_seconds,
            acknowledged_at=self.producer.acknowledged_at,
        )

    async def _sale(self) -> None:
        sequence = delivery_sequence(list(self.plan.sale), self.config.producer, self.rng)
        offsets = send_offsets(len(sequence), self.config.producer)
        self.sale_total = len(sequence)
        plan_index = {webhook.event_id: i for i, webhook in enumerate(self.plan.sale)}
        wall0, mono0 = time.time(), time.monotonic()
        for index, delivery in enumerate(sequence):
            lag = mono0 + offsets[index] - time.monotonic()
            if lag > 0.002:
                await asyncio.sleep(lag)
            planned = offsets[min(plan_index[delivery.webhook.event_id], len(offsets) - 1)]
            self.producer.stamp(delivery.webhook, dt.datetime.fromtimestamp(wall0 + planned, dt.UTC))
            await self._queue.put(delivery)
            self.dispatched = index + 1
            self._progressed.set()
        self._sale_done = True
        self._progressed.set()


async def wait_for_ledger(
    inventory: InventoryApi,
    expected: Mapping[str, StockLevels],
    timeout_s: float,
    *,
    what: str = "ledger",
    interval_s: float = 0.2,
    on_wait: Callable[[], None] | None = None,
) -> dict[str, StockLevels | None]:
    """Poll inventory until every SKU shows ``expected``; raises TimeoutError naming what still differs."""
    deadline = time.monotonic() + timeout_s
    while True:
        views = await inventory.skus(expected)
        actual = {sku: None if view is None else view.levels for sku, view in views.items()}
        mismatches = compare_levels(expected, actual)
        if not mismatches:
            return actual
        if time.monotonic() > deadline:
            shown = "; ".join(str(m) for m in mismatches[:5])
            raise TimeoutError(f"{what}: inventory did not reach the expected stock in {timeout_s:.0f}s: {shown}")
        if on_wait is not None:
            on_wait()
        await asyncio.sleep(interval_s)


def expectation(result: SimResult, decisions: Mapping[str, Decision]) -> Expectation:
    return result.truth.expected(decisions)
