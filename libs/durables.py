"""Durable consumers declared by their users: a consumer that is not part of the shared topology
(an order mailer, a WMS feed) creates or updates its own durable with :func:`ensure_durable`."""

from __future__ import annotations

from nats.js import JetStreamContext

from libs.topology import ConsumerSpec, apply_consumer

__all__ = ["ConsumerSpec", "ensure_durable"]


async def ensure_durable(js: JetStreamContext, spec: ConsumerSpec) -> str:
    """Create the durable pull consumer, or bring an existing one to ``spec``; returns what was done.

    Raises :class:`libs.topology.TopologyError` when the existing consumer cannot be changed in place.
    """
    return await apply_consumer(js, spec)
