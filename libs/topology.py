"""The JetStream topology of design §2, declared once and applied idempotently.

``apply_topology`` creates what is missing, updates what differs in a compatible way, and refuses an
incompatible change with a :class:`TopologyError` that names the object and the field. A setting the
server answers without (an older nats-server drops what it does not know, such as ``allow_atomic``
before 2.12) is reported as not kept, never as updated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.config import TopologySettings
from libs.subjects import inventory_kind_filter

__all__ = [
    "COMMERCE",
    "DEADLETTER",
    "INVENTORY",
    "KV_AVAILABILITY",
    "KV_EVENT_IDS",
    "KV_LEASES",
    "ConsumerSpec",
    "KvSpec",
    "StreamSpec",
    "TopologyError",
    "apply_consumer",
    "apply_topology",
    "consumer_spec",
    "describe_topology",
    "kv_stream",
    "kv_subject",
    "topology_specs",
]

COMMERCE = "COMMERCE"
INVENTORY = "INVENTORY"
DEADLETTER = "DEADLETTER"
KV_AVAILABILITY = "availability"
KV_LEASES = "leases"
# The first body digest of every webhook id, kept as long as COMMERCE keeps the events themselves:
# how ingress tells a re-sent event from an id reused with different content after the dedup window.
KV_EVENT_IDS = "event-ids"
INVENTORY_CONSUMER = "inventory"
NOTIFIER_CONSUMER = "channel-notifier"


def kv_stream(bucket: str) -> str:
    """The stream that holds KV ``bucket``: ``KV_<bucket>``."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject of ``key`` in KV ``bucket``: ``$KV.<bucket>.<key>`` (``key`` may be a wildcard, ``>``)."""
    return f"$KV.{bucket}.{key}"


_DAY = 86_400.0
log = logging.getLogger("stockwire.topology")


class TopologyError(RuntimeError):
    """An existing JetStream object cannot be brought to the declared shape."""


@dataclass(frozen=True)
class StreamSpec:
    """A declared stream: file storage, limits retention, discard old; ages and windows in seconds."""

    name: str
    subjects: list[str]
    max_age_s: float
    duplicate_window_s: float
    replicas: int
    description: str

    def config(self) -> js_api.StreamConfig:
        """The stream's configuration as nats-py sends it."""
        return js_api.StreamConfig(
            name=self.name,
            description=self.description,
            subjects=self.subjects,
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            num_replicas=self.replicas,
            discard=js_api.DiscardPolicy.OLD,
            allow_direct=True,
            # The outbox relay commits a batch of messages with one answer and one fsync.
            allow_atomic=True,
        )


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer as declared.

    Retry timing: the declared consumers carry no ``backoff`` list. nats-server applies a backoff list
    to ``nak(delay=...)`` redeliveries as well as to ack timeouts, so a list here would override the
    runner's schedule (:func:`libs.consumer.retry_schedule`), which is the one schedule. ``ack_wait_s``
    is short (seconds): it bounds how long a batch held by a process that died waits before it is
    redelivered, and the runner keeps a live batch from timing out with ``in_progress`` heartbeats.
    ``backoff_s`` remains for consumers declared outside the topology that want the server's timing.
    """

    stream: str
    durable: str
    filter_subject: str
    max_deliver: int
    ack_wait_s: float
    max_ack_pending: int
    backoff_s: list[float] = field(default_factory=list)
    description: str = ""

    def config(self, *, start_seq: int | None = None) -> js_api.ConsumerConfig:
        """The server config; with ``start_seq`` (a stream sequence, >= 1) delivery starts there
        instead of at the beginning of the stream (a consumer re-created after it was lost)."""
        return js_api.ConsumerConfig(
            durable_name=self.durable,
            description=self.description,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE if start_seq else js_api.DeliverPolicy.ALL,
            opt_start_seq=start_seq or None,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            backoff=self.backoff_s or None,
            filter_subject=self.filter_subject,
            max_ack_pending=self.max_ack_pending,
            max_waiting=512,
        )


@dataclass(frozen=True)
class KvSpec:
    """A declared KV bucket: ``history`` values kept per key, entries expiring after ``ttl_s`` (None: never)."""

    bucket: str
    history: int
    ttl_s: float | None
    replicas: int
    description: str

    def config(self) -> js_api.KeyValueConfig:
        """The bucket's configuration as nats-py sends it."""
        return js_api.KeyValueConfig(
            bucket=self.bucket,
            description=self.description,
            history=self.history,
            ttl=self.ttl_s,
            replicas=self.replicas,
            storage=js_api.StorageType.FILE,
            # Reads as direct gets: the JetStream API path costs the server several times as much
            # per read (a request through the API handler, an advisory), and ingress reads once per webhook.
            direct=True,
        )


def topology_specs(settings: TopologySettings) -> tuple[list[StreamSpec], list[KvSpec], list[ConsumerSpec]]:
    """Every stream, KV bucket and durable consumer of design §2, sized by ``settings``: the one place the
    topology is declared (applied by :func:`apply_topology`, described by :mod:`libs.asyncapi`)."""
    streams = [
        StreamSpec(
            COMMERCE,
            ["commerce.>"],
            settings.commerce_max_age_days * _DAY,
            settings.duplicate_window_s,
            settings.replicas,
            "Every webhook received, byte for byte: the audit log",
        ),
        StreamSpec(
            INVENTORY,
            ["inventory.>"],
            settings.inventory_max_age_days * _DAY,
            settings.duplicate_window_s,
            settings.replicas,
            "Inventory events and availability snapshots",
        ),
        StreamSpec(
            DEADLETTER,
            ["deadletter.>"],
            settings.deadletter_max_age_days * _DAY,
            settings.duplicate_window_s,
            settings.replicas,
            "Messages a consumer gave up on",
        ),
    ]
    buckets = [
        KvSpec(KV_AVAILABILITY, 1, None, settings.replicas, "Latest availability per SKU"),
        KvSpec(KV_LEASES, 1, settings.lease_ttl_s, settings.replicas, "Leader leases"),
        KvSpec(
            KV_EVENT_IDS,
            1,
            settings.commerce_max_age_days * _DAY,
            settings.replicas,
            "First body digest of each webhook id (ingress)",
        ),
    ]
    consumers = [
        ConsumerSpec(
            COMMERCE,
            INVENTORY_CONSUMER,
            "commerce.>",
            settings.max_deliver,
            settings.ack_wait_s,
            settings.max_ack_pending,
            description="inventory ledger",
        ),
        ConsumerSpec(
            INVENTORY,
            NOTIFIER_CONSUMER,
            # Webhook channels are sent availability only (jetstream channels pull ledger events on their
            # own): the server skips the other four of every five INVENTORY messages.
            inventory_kind_filter("availability"),
            settings.max_deliver,
            settings.ack_wait_s,
            settings.max_ack_pending,
            description="channel fan-out",
        ),
    ]
    return streams, buckets, consumers


def consumer_spec(settings: TopologySettings, stream: str, durable: str) -> ConsumerSpec:
    """The declared spec of one durable consumer; raises ``KeyError`` when none is declared."""
    for spec in topology_specs(settings)[2]:
        if (spec.stream, spec.durable) == (stream, durable):
            return spec
    raise KeyError(f"no consumer {stream}/{durable} is declared")


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _differences(current: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    out = []
    for name in fields:
        have, want = _enum_value(getattr(current, name)), _enum_value(getattr(wanted, name))
        if isinstance(want, float) or isinstance(have, float):
            unset = have in (None, 0) and want in (None, 0)
            if not unset and (have is None or want is None or abs(float(have) - float(want)) > 1e-3):
                out.append(name)
        elif (have or None) != (want or None):
            out.append(name)
    return out


_NOT_KEPT_WHY = {
    "allow_atomic": "atomic batch publish needs nats-server 2.12 or later; Stockwire publishes one by one there",
    "allow_direct": "direct gets need nats-server 2.9 or later",
}


def _kept(label: str, answered: Any, wanted: Any, fields: tuple[str, ...], *, created: str | None = None) -> str:
    """What was done to ``label`` (:func:`_outcome`), checked against the configuration the server
    ``answered`` with: the ``fields`` it did not take are named as not kept (it ignored them)."""
    left = _differences(answered, wanted, fields)
    return _outcome(label, [name for name in fields if name not in left], left, created=created)


def _outcome(label: str, kept: list[str], left: list[str], *, created: str | None = None) -> str:
    """The operator's line: ``created <label><created>`` or else ``updated <label> (<kept>)`` (``<label>
    up to date`` when nothing was kept), then ``; this nats-server does not keep <left> (why)``."""
    if created is not None:
        line = f"created {label}{created}"
    else:
        line = f"updated {label} ({', '.join(kept)})" if kept else f"{label} up to date"
    if not left:
        return line
    why = "; ".join(_NOT_KEPT_WHY[name] for name in left if name in _NOT_KEPT_WHY)
    return line + f"; this nats-server does not keep {', '.join(left)}" + (f" ({why})" if why else "")


_STREAM_FIXED = ("storage", "retention")
_STREAM_MUTABLE = (
    "subjects",
    "max_age",
    "duplicate_window",
    "num_replicas",
    "description",
    "discard",
    "allow_direct",
    "allow_atomic",
)
# Where delivery started is not compared: a consumer re-created after it was lost starts at its ack floor.
_CONSUMER_FIXED = ("ack_policy",)
_CONSUMER_MUTABLE = ("ack_wait", "max_deliver", "backoff", "filter_subject", "max_ack_pending", "description")


async def _apply_stream(js: JetStreamContext, wanted: js_api.StreamConfig) -> str:
    assert wanted.name is not None  # every StreamSpec names its stream
    try:
        info = await js.stream_info(wanted.name)
    except js_errors.NotFoundError:
        created = await js.add_stream(wanted)
        return _kept(f"stream {wanted.name}", created.config, wanted, _STREAM_MUTABLE, created="")
    fixed = _differences(info.config, wanted, _STREAM_FIXED)
    if fixed:
        raise TopologyError(
            f"stream {wanted.name}: {', '.join(fixed)} differs from the declared value and cannot be changed "
            f"in place (have {[_enum_value(getattr(info.config, f)) for f in fixed]}, "
            f"want {[_enum_value(getattr(wanted, f)) for f in fixed]})"
        )
    changed = _differences(info.config, wanted, _STREAM_MUTABLE)
    if not changed:
        return f"stream {wanted.name} up to date"
    try:
        updated = await js.update_stream(wanted)
    except js_errors.BadRequestError as exc:
        raise TopologyError(f"stream {wanted.name}: cannot update {', '.join(changed)}: {exc.description}") from exc
    return _kept(f"stream {wanted.name}", updated.config, wanted, tuple(changed))


async def apply_consumer(js: JetStreamContext, spec: ConsumerSpec, *, resume_after: int = 0) -> str:
    """Create or update one durable consumer (idempotent); returns what was done, for the operator.

    A missing consumer is created to deliver from stream sequence ``resume_after + 1`` (0: from the
    start of the stream). An existing one keeps where it started (the server cannot change that) and
    has its other fields brought to ``spec``. Raises :class:`TopologyError` when the ack policy differs.
    """
    label = f"consumer {spec.stream}/{spec.durable}"
    # With a backoff list the server derives ack_wait from its first entry.
    mutable = tuple(f for f in _CONSUMER_MUTABLE if not (f == "ack_wait" and spec.backoff_s))
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except js_errors.NotFoundError:
        config = spec.config(start_seq=resume_after + 1 if resume_after > 0 else None)
        created = await js.add_consumer(spec.stream, config)
        since = f" (from stream sequence {resume_after + 1})" if resume_after > 0 else ""
        return _kept(label, created.config, config, mutable, created=since)
    wanted = spec.config()
    wanted.deliver_policy = info.config.deliver_policy
    wanted.opt_start_seq = info.config.opt_start_seq
    wanted.opt_start_time = info.config.opt_start_time
    fixed = _differences(info.config, wanted, _CONSUMER_FIXED)
    if fixed:
        raise TopologyError(f"{label}: {', '.join(fixed)} cannot be changed; delete the consumer to recreate it")
    changed = _differences(info.config, wanted, mutable)
    if not changed:
        return f"{label} up to date"
    try:
        updated = await js.add_consumer(spec.stream, wanted)
    except js_errors.BadRequestError as exc:
        raise TopologyError(f"{label}: cannot update {', '.join(changed)}: {exc.description}") from exc
    return _kept(label, updated.config, wanted, tuple(changed))


async def _apply_bucket(js: JetStreamContext, spec: KvSpec) -> str:
    try:
        await js.key_value(spec.bucket)
    except js_errors.BucketNotFoundError:
        await js.create_key_value(spec.config())
        # nats-py's bucket configuration has no atomic batches: the stream is brought there here.
        _, left = await _bring_bucket(js, spec)
        return _outcome(f"kv {spec.bucket}", [], left, created="")
    return _outcome(f"kv {spec.bucket}", *await _bring_bucket(js, spec))


async def _bring_bucket(js: JetStreamContext, spec: KvSpec) -> tuple[list[str], list[str]]:
    """Update the bucket's stream where it differs from ``spec``: what changed (as the operator reads
    it) and the stream fields the server answered without (not kept)."""
    config = (await js.stream_info(kv_stream(spec.bucket))).config
    changed: dict[str, str] = {}  # stream field -> what the operator reads
    if (config.max_msgs_per_subject or 0) != spec.history:
        config.max_msgs_per_subject = spec.history
        changed["max_msgs_per_subject"] = "history"
    if abs(float(config.max_age or 0) - float(spec.ttl_s or 0)) > 1e-3:
        config.max_age = spec.ttl_s or 0
        changed["max_age"] = "ttl"
    if (config.num_replicas or 1) != spec.replicas:
        config.num_replicas = spec.replicas
        changed["num_replicas"] = "replicas"
    if not config.allow_direct:
        config.allow_direct = True
        changed["allow_direct"] = "direct gets"
    if not config.allow_atomic:
        # The channel-notifier writes a batch's SKUs in one atomic batch.
        config.allow_atomic = True
        changed["allow_atomic"] = "atomic batches"
    if not changed:
        return [], []
    try:
        updated = await js.update_stream(config)
    except js_errors.BadRequestError as exc:
        raise TopologyError(
            f"kv {spec.bucket}: cannot update {', '.join(changed.values())}: {exc.description}"
        ) from exc
    left = _differences(updated.config, config, tuple(changed))
    return [label for name, label in changed.items() if name not in left], left


async def _apply_declared_consumer(js: JetStreamContext, spec: ConsumerSpec) -> str:
    """As :func:`apply_consumer`, except that a durable missing on a stream that holds messages is left
    to its service: only it knows where the consumer had acknowledged up to (created here it would start
    at the beginning and replay the stream, dead letters included)."""
    try:
        await js.consumer_info(spec.stream, spec.durable)
    except js_errors.NotFoundError:
        if (await js.stream_info(spec.stream)).state.messages:
            return (
                f"consumer {spec.stream}/{spec.durable} missing on a stream that holds messages: left to its "
                "service, which re-creates it after its ack floor"
            )
    return await apply_consumer(js, spec)


async def apply_topology(js: JetStreamContext, settings: TopologySettings) -> list[str]:
    """Bring the server to the declared topology; returns one line per object saying what was done."""
    streams, buckets, consumers = topology_specs(settings)
    actions = [await _apply_stream(js, spec.config()) for spec in streams]
    actions += [await _apply_bucket(js, spec) for spec in buckets]
    actions += [await _apply_declared_consumer(js, spec) for spec in consumers]
    for line in actions:
        log.info("topology: %s", line)
    return actions


async def describe_topology(js: JetStreamContext, settings: TopologySettings) -> dict[str, Any]:
    """What is declared and what the server holds now, for ``stockwire topology show``."""
    streams, buckets, consumers = topology_specs(settings)
    out: dict[str, Any] = {"streams": {}, "kv": {}, "consumers": {}}
    for spec in streams:
        try:
            info = await js.stream_info(spec.name)
            state: dict[str, Any] = {
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "first_seq": info.state.first_seq,
                "last_seq": info.state.last_seq,
            }
        except js_errors.NotFoundError:
            state = {"missing": True}
        out["streams"][spec.name] = {
            "subjects": spec.subjects,
            "max_age_s": spec.max_age_s,
            "duplicate_window_s": spec.duplicate_window_s,
            "replicas": spec.replicas,
            **state,
        }
    for kv in buckets:
        try:
            info = await js.stream_info(kv_stream(kv.bucket))
            kv_state: dict[str, Any] = {"keys": info.state.messages}
        except js_errors.NotFoundError:
            kv_state = {"missing": True}
        out["kv"][kv.bucket] = {"history": kv.history, "ttl_s": kv.ttl_s, **kv_state}
    for consumer in consumers:
        try:
            cinfo = await js.consumer_info(consumer.stream, consumer.durable)
            c_state: dict[str, Any] = {
                "pending": cinfo.num_pending,
                "ack_pending": cinfo.num_ack_pending,
                "redelivered": cinfo.num_redelivered,
            }
        except js_errors.NotFoundError:
            c_state = {"missing": True}
        out["consumers"][f"{consumer.stream}/{consumer.durable}"] = {
            "filter": consumer.filter_subject,
            "max_deliver": consumer.max_deliver,
            "ack_wait_s": consumer.ack_wait_s,
            "backoff_s": consumer.backoff_s,
            **c_state,
        }
    return out
