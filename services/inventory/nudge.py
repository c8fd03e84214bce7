"""The after-commit nudge: a core-NATS message that wakes the outbox relay as soon as rows are committed."""

from __future__ import annotations

import contextlib

from nats.aio.client import Client

from libs.outbox import outbox_nudge_subject

__all__ = ["RelayNudge"]

NUDGE_SUBJECT = outbox_nudge_subject("inventory")


class RelayNudge:
    """A unit of work's after-commit hook. Fire and forget: the relay also polls, so a lost nudge only
    delays it. ``nc`` is set once the service has connected (None until then: nothing is sent)."""

    def __init__(self, nc: Client | None = None) -> None:
        self.nc = nc

    async def __call__(self, outbox_rows: int) -> None:
        nc = self.nc
        if outbox_rows and nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.publish(NUDGE_SUBJECT, b"")
