"""What the notifier does on JetStream besides consuming: channel consumers, and reading history back.

A ``jetstream`` channel gets its own durable pull consumer on INVENTORY, filtered to the subjects its
filters name, and pulls from it directly; the notifier creates, updates and removes it with the
channel, and owns it: it keeps each consumer's ack floor (:class:`AckFloors`) as it reconciles, and
re-creates a consumer that went missing to resume after that floor, never from the start.
Replays and KV snapshots read a range of a stream through a short-lived ephemeral consumer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.topology import INVENTORY, KV_AVAILABILITY, kv_stream, kv_subject

from .domain.channel import Channel, is_channel_consumer, jetstream_consumer_name, jetstream_filter_subjects

__all__ = [
    "AckFloors",
    "channel_consumer_config",
    "keep_channel_consumers",
    "provision_channel_consumer",
    "read_stream",
    "reconcile_channel_consumers",
    "remove_channel_consumer",
]

log = logging.getLogger("stockwire.channel_notifier.jetstream")


@dataclass
class AckFloors:
    """Per channel consumer name, the highest INVENTORY sequence at and below which it had acknowledged
    everything when last seen; valid for the INVENTORY stream created at ``stream_created`` only."""

    stream_created: str = ""
    seqs: dict[str, int] = field(default_factory=dict)

    async def follow(self, js: JetStreamContext) -> None:
        """Forget every floor if INVENTORY was created anew since they were seen."""
        info = await js.stream_info(INVENTORY)
        created = info.created.isoformat() if info.created else ""
        if created != self.stream_created:
            self.seqs.clear()
            self.stream_created = created


def channel_consumer_config(
    channel: Channel, *, ack_wait_s: float = 30.0, max_ack_pending: int = 1024, start: dt.datetime | None = None
) -> js_api.ConsumerConfig:
    subjects = jetstream_filter_subjects(channel.filters)
    name = jetstream_consumer_name(channel.name)
    config = js_api.ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"stockwire channel {channel.name}",
        # A new channel starts from the latest message of every subject (the current state), then
        # everything after; a replay starts from the time asked.
        deliver_policy=js_api.DeliverPolicy.BY_START_TIME if start else js_api.DeliverPolicy.LAST_PER_SUBJECT,
        opt_start_time=start,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_ack_pending=max_ack_pending,
        max_waiting=512,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = subjects
    return config


async def provision_channel_consumer(
    js: JetStreamContext, channel: Channel, *, start: dt.datetime | None = None, floors: AckFloors | None = None
) -> str:
    """Create the channel's consumer, or bring its filters in line; with ``start``, recreate it from then.

    With ``floors``: an existing consumer's ack floor is recorded there, and a missing one whose floor
    is known is re-created to deliver from the sequence after it.
    """
    name = jetstream_consumer_name(channel.name)
    wanted = channel_consumer_config(channel, start=start)
    try:
        info = await js.consumer_info(INVENTORY, name)
    except js_errors.NotFoundError:
        info = None
    if info is not None and start is not None:
        await js.delete_consumer(INVENTORY, name)
        info = None
        if floors is not None:
            floors.seqs.pop(name, None)
    if info is None:
        resume_after = floors.seqs.get(name, 0) if floors is not None else 0
        if resume_after:
            wanted.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
            wanted.opt_start_seq = resume_after + 1
        await js.add_consumer(INVENTORY, wanted)
        if resume_after:
            log.warning(
                "channel %s: consumer %s was missing; re-created from %s sequence %d",
                channel.name,
                name,
                INVENTORY,
                resume_after + 1,
            )
        else:
            log.info("channel %s: created consumer %s on %s", channel.name, name, INVENTORY)
        return name
    if floors is not None and info.ack_floor is not None:
        floors.seqs[name] = info.ack_floor.stream_seq or 0
    have = set(info.config.filter_subjects or ([info.config.filter_subject] if info.config.filter_subject else []))
    want = set(wanted.filter_subjects or ([wanted.filter_subject] if wanted.filter_subject else []))
    if have != want:
        # The deliver policy of an existing consumer cannot change; keep the one it was created with.
        wanted.deliver_policy = info.config.deliver_policy
        wanted.opt_start_time = info.config.opt_start_time
        await js.add_consumer(INVENTORY, wanted)
        log.info("channel %s: updated the filters of consumer %s", channel.name, name)
    return name


async def remove_channel_consumer(js: JetStreamContext, channel_name: str) -> bool:
    try:
        await js.delete_consumer(INVENTORY, jetstream_consumer_name(channel_name))
    except js_errors.NotFoundError:
        return False
    log.info("channel %s: removed its consumer", channel_name)
    return True


async def keep_channel_consumers(
    js: JetStreamContext, channels: Iterable[Channel], floors: AckFloors | None = None
) -> dict[str, Channel]:
    """Every jetstream channel has its consumer, re-created after its ack floor in ``floors`` when it
    went missing; returns the channels by consumer name. Removes nothing: run it as often as wanted."""
    wanted = {jetstream_consumer_name(c.name): c for c in channels if c.kind == "jetstream"}
    if floors is not None:
        await floors.follow(js)
        for gone in set(floors.seqs) - set(wanted):
            del floors.seqs[gone]
    for channel in wanted.values():
        await provision_channel_consumer(js, channel, floors=floors)
    return wanted


async def reconcile_channel_consumers(
    js: JetStreamContext, channels: Iterable[Channel], floors: AckFloors | None = None
) -> None:
    """:func:`keep_channel_consumers`, and no consumer is left for a channel that is gone."""
    wanted = await keep_channel_consumers(js, channels, floors)
    for info in await js.consumers_info(INVENTORY):
        durable = info.config.durable_name or info.name
        if durable and is_channel_consumer(durable) and durable not in wanted:
            with contextlib.suppress(js_errors.NotFoundError):
                await js.delete_consumer(INVENTORY, durable)
            log.info("removed consumer %s: no channel owns it", durable)


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subject: str,
    visit: Callable[[Msg], None],
    *,
    since: dt.datetime | None = None,
    last_per_subject: bool = False,
    max_messages: int = 1_000_000,
    fetch_timeout_s: float = 2.0,
) -> int:
    """Read what ``stream`` holds on ``subject`` now (from ``since``, or only the last per subject).

    Messages published while reading may or may not be included; the live consumer carries those.
    Returns how many messages were visited.
    """
    if since is not None:
        policy = js_api.DeliverPolicy.BY_START_TIME
    elif last_per_subject:
        policy = js_api.DeliverPolicy.LAST_PER_SUBJECT
    else:
        policy = js_api.DeliverPolicy.ALL
    config = js_api.ConsumerConfig(
        deliver_policy=policy,
        opt_start_time=since,
        ack_policy=js_api.AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
        filter_subject=subject,
    )
    sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=config)
    visited = 0
    name: str | None = None
    try:
        info = await sub.consumer_info()
        name = info.name
        remaining = info.num_pending or 0
        while remaining > 0 and visited < max_messages:
            try:
                batch = await sub.fetch(min(256, remaining, max_messages - visited), timeout=fetch_timeout_s)
            except nats.errors.TimeoutError:
                break
            for msg in batch:
                visit(msg)
                visited += 1
                remaining = msg.metadata.num_pending
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name is not None:
            # Deleted now rather than left to expire after its inactivity threshold.
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, name)
    return visited


def availability_kv_stream() -> tuple[str, str]:
    """The stream and subject behind the ``availability`` bucket."""
    return kv_stream(KV_AVAILABILITY), kv_subject(KV_AVAILABILITY, ">")
