"""Make an event durable: JetStream first (awaiting the PubAck), the spool when JetStream is away."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from .metrics import PUBLISH_SECONDS
from .spool import Spool
from .webhook import InboundWebhook

__all__ = ["Durability", "DurableWriter", "Outcome", "StoreUnavailable"]

log = logging.getLogger("stockwire.ingress")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    SPOOLED = "spooled"


@dataclass(frozen=True, slots=True)
class Durability:
    outcome: Outcome
    stream_seq: int | None = None


class StoreUnavailable(RuntimeError):
    """Neither JetStream nor the spool could take the event: the producer must retry (503)."""


# Any answer but a PubAck (no responders, no stream, a timeout, a closed or reconnecting
# connection, an API error) means the event is not known to be durable in JetStream.
_BUS_ERRORS = (nats.errors.Error, js_errors.Error, asyncio.TimeoutError, OSError)


class DurableWriter:
    def __init__(self, spool: Spool, publish_timeout_s: float) -> None:
        self.spool = spool
        self.publish_timeout_s = publish_timeout_s
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    def attach(self, nc: Client, js: JetStreamContext) -> None:
        self.nc, self.js = nc, js

    @property
    def bus_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def _must_queue(self) -> bool:
        """Whether events acknowledged earlier still wait in the spool (see :class:`Spool`)."""
        try:
            return await self.spool.holds_unpublished()
        except Exception as exc:
            # Rows may wait and cannot be counted: publishing now could overtake them.
            log.warning("cannot tell whether the spool is drained (%s); spooling", exc)
            return True

    async def write(self, event: InboundWebhook) -> Durability:
        if self.js is not None and self.bus_connected and not await self._must_queue():
            started = time.perf_counter()
            try:
                ack = await self.js.publish(
                    event.subject, event.body, timeout=self.publish_timeout_s, headers=event.headers()
                )
            except _BUS_ERRORS as exc:
                log.warning("publish of %s failed (%s: %s); spooling", event.msg_id, type(exc).__name__, exc)
            else:
                PUBLISH_SECONDS.observe(time.perf_counter() - started)
                return Durability(Outcome.DUPLICATE if ack.duplicate else Outcome.ACCEPTED, ack.seq)
        try:
            await self.spool.write(event)
        except Exception as exc:
            log.error("spool write of %s failed: %s", event.msg_id, exc)
            raise StoreUnavailable(str(exc)) from exc
        return Durability(Outcome.SPOOLED)
