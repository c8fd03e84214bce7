"""Durable consumers declared by their users: a consumer that is not part of the shared topology
(an order mailer, a WMS feed) creates or updates its own durable with :func:`ensure_durable`, and
passes the same spec to :class:`libs.consumer.PullConsumer` (``spec=``) so that the runner keeps it:
re-created after its ack floor if it goes missing. Leave ``backoff_s`` empty to keep the runner's
retry schedule (:func:`libs.consumer.retry_delay_s`): nats-server applies a backoff list to naks too."""

from __future__ import annotations

from nats.js import JetStreamContext

from libs.topology import ConsumerSpec, apply_consumer

__all__ = ["ConsumerSpec", "ensure_durable"]


async def ensure_durable(js: JetStreamContext, spec: ConsumerSpec) -> str:
    """Create the durable pull consumer, or bring an existing one to ``spec``; returns what was done.

    Raises :class:`libs.topology.TopologyError` when the existing consumer cannot be changed in place.
    """
    return await apply_consumer(js, spec)
