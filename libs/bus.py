"""JetStream connections: every service connects the same way, reconnects forever, and says so."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.backoff import backoff_delay
from libs.config import NatsSettings
from libs.contracts import (
    DIRECT_GET_NOT_FOUND,
    HEADER_BATCH_COMMIT,
    HEADER_BATCH_ID,
    HEADER_BATCH_SEQUENCE,
    HEADER_STATUS,
    NO_RESPONDERS,
    direct_get_subject,
)
from libs.tasks import stop_tasks

__all__ = [
    "API_TIMEOUT_S",
    "ATOMIC_DISABLED",
    "ATOMIC_DUPLICATE",
    "ATOMIC_MIN_BATCH",
    "CLOSE_TIMEOUT_S",
    "EARLIEST_START_TIME",
    "LATEST_START_TIME",
    "MAX_ATOMIC_BATCH",
    "AtomicAck",
    "AtomicBatchRefused",
    "atomic_pays",
    "check_start_time",
    "client_of",
    "close_connection",
    "connect",
    "connect_within",
    "direct_get_last",
    "jetstream",
    "publish_atomic",
    "stream_allows_atomic",
]

log = logging.getLogger("stockwire.bus")

API_TIMEOUT_S = 5.0
"""How long a JetStream API call waits for its answer (:func:`jetstream`'s default)."""

# nats-server compares a consumer's start time as nanoseconds since 1970 in a signed 64-bit integer (Go's
# time.UnixNano, undefined outside these bounds): a later time wrapped round and started at the beginning.
EARLIEST_START_TIME = dt.datetime(1677, 9, 21, 0, 12, 44, tzinfo=dt.UTC)
"""The earliest time a JetStream consumer can start at (whole seconds inside int64 nanoseconds)."""
LATEST_START_TIME = dt.datetime(2262, 4, 11, 23, 47, 16, tzinfo=dt.UTC)
"""The latest time a JetStream consumer can start at (whole seconds inside int64 nanoseconds)."""


def check_start_time(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC time a JetStream consumer can start at (a naive one is taken as UTC).

    Raises ``ValueError`` naming the bounds when it lies outside :data:`EARLIEST_START_TIME` ..
    :data:`LATEST_START_TIME`, which nats-server would misread (see there)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    if not EARLIEST_START_TIME <= aware <= LATEST_START_TIME:
        raise ValueError(
            f"{aware.isoformat()} is outside the times JetStream can start from "
            f"({EARLIEST_START_TIME.isoformat()} to {LATEST_START_TIME.isoformat()})"
        )
    return aware.astimezone(dt.UTC)


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca or settings.tls_cert):
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def connect(settings: NatsSettings, name: str, *, quiet_until_connected: bool = False, **extra: Any) -> Client:
    """Connect with unlimited reconnects and jittered backoff; the first connect also retries forever.

    ``quiet_until_connected``: the failed attempts before the first connection are logged at DEBUG, not
    WARNING (a command that waits for NATS within a deadline says itself, in one line, that it did not
    answer); errors once connected are warnings as always."""
    servers = list(settings.servers)
    connected = False
    early = logging.DEBUG if quiet_until_connected else logging.WARNING

    def pick_server(pool: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        chosen = min(pool, key=lambda s: s.reconnects)
        return chosen, backoff_delay(chosen.reconnects, settings.reconnect_wait_s, settings.reconnect_wait_max_s)

    async def on_error(exc: Exception) -> None:
        log.log(logging.WARNING if connected else early, "nats %s: %s: %s", name, type(exc).__name__, exc)

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats %s: disconnected, reconnecting", name)

    async def on_reconnected() -> None:
        log.info("nats %s: reconnected to %s", name, nc.connected_url.netloc if nc.connected_url else "?")

    async def on_closed() -> None:
        if connected:  # not an attempt given up before the first connection
            log.info("nats %s: connection closed", name)

    options: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": settings.reconnect_wait_s,
        "connect_timeout": settings.connect_timeout_s,
        "reconnect_to_server_handler": pick_server,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "closed_cb": on_closed,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "pending_size": 16 * 1024 * 1024,
    }
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    if settings.nkey_seed_file:
        options["nkeys_seed"] = settings.nkey_seed_file
    if settings.user:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.token:
        options["token"] = settings.token
    tls = _tls_context(settings)
    if tls is not None:
        options["tls"] = tls
    options.update(extra)
    attempt = 0
    while True:
        nc = Client()
        try:
            await _connect_cancellably(nc, options)
            break
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            delay = backoff_delay(attempt, settings.reconnect_wait_s, settings.reconnect_wait_max_s)
            log.log(early, "nats %s: cannot connect to %s (%s); retrying in %.1fs", name, servers, exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
    connected = True
    log.info("nats %s: connected to %s", name, nc.connected_url.netloc if nc.connected_url else servers)
    return nc


async def _connect_cancellably(nc: Client, options: dict[str, Any]) -> None:
    """``nc.connect(**options)``, ended by a cancel wherever it lands: nats-py's first connect, retrying
    while no server answers, may take a cancel for a failed attempt and go on retrying, which would hold
    a service's shutdown for ever. It runs as a task of its own, which a cancel here stops and closes."""
    attempt = asyncio.ensure_future(nc.connect(**options))
    # What a stopped attempt raises (its socket closed under it) is of no interest.
    attempt.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await asyncio.wait({attempt})
    except asyncio.CancelledError:
        attempt.cancel()
        await close_connection(nc, drain=False, timeout_s=1.0)
        raise
    attempt.result()


CLOSE_TIMEOUT_S = 5.0
"""The longest each step of :func:`close_connection` (drain, close) may take."""


async def close_connection(nc: Client, *, drain: bool = True, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """End a service's connection at shutdown: drain it first when ``drain`` (its subscriptions'
    messages in hand delivered, what was published flushed), then close it; each step at most
    ``timeout_s`` seconds, stopped with :func:`libs.tasks.stop_tasks` when it overruns.

    nats-py's ``drain`` against a server that stopped answering waits for its flush (10 s), raises and
    leaves the connection open, its reader and pinger still running; the close after it ends them.
    What a step raises is logged at INFO, never raised: the connection is ending either way."""
    steps = [nc.drain, nc.close] if drain else [nc.close]
    for step in steps:
        if nc.is_closed:
            return
        task = asyncio.ensure_future(step())
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            log.warning("nats: %s did not end within %.0f s at shutdown", step.__name__, timeout_s)
            await stop_tasks([task], log=log, timeout_s=1.0)
        elif not task.cancelled() and (error := task.exception()) is not None:
            log.info("nats: %s at shutdown: %s: %s", step.__name__, type(error).__name__, error)


async def connect_within(settings: NatsSettings, name: str, timeout_s: float) -> Client | None:
    """A command's connection: :func:`connect`, quiet until connected, given up after ``timeout_s``
    seconds (None), so that the command says in one line that NATS did not answer."""
    try:
        return await asyncio.wait_for(connect(settings, name, quiet_until_connected=True), timeout_s)
    except TimeoutError:
        return None


def client_of(js: JetStreamContext) -> Client:
    """The connection ``js`` runs on (nats-py keeps it without a public accessor)."""
    client: Client = js._nc
    return client


def jetstream(nc: Client, *, max_pending: int = 4000, timeout: float = API_TIMEOUT_S) -> JetStreamContext:
    """A JetStream context on ``nc``: API calls time out after ``timeout`` seconds, and at most
    ``max_pending`` ``publish_async`` PubAcks may be outstanding before a publish waits."""
    return nc.jetstream(timeout=timeout, publish_async_max_pending=max_pending)


async def direct_get_last(nc: Client, stream: str, subject: str, *, timeout: float = API_TIMEOUT_S) -> Msg | None:
    """The last message of ``subject`` in ``stream`` by one direct get request (``stream`` declared with
    ``allow_direct``), the answer as the server sent it: ``data`` and ``headers``, among them
    :data:`~libs.contracts.HEADER_DIRECT_GET_SUBJECT`; None when the stream holds none on ``subject``.

    What ``JetStreamContext.get_msg(direct=True)`` does without its layers per call (argument checks, a
    JSON request, the answer's timestamp parsed). Raises as it does: ``nats.errors.NoRespondersError``
    (no such stream, or direct gets off), ``nats.errors.TimeoutError``, the connection's errors, and
    ``nats.js.errors.APIError`` (``ServiceUnavailableError`` on 503) for any other status."""
    reply = await nc.request(direct_get_subject(stream, subject), b"", timeout=timeout)
    if not reply.data:
        status = (reply.headers or {}).get(HEADER_STATUS)
        if status == DIRECT_GET_NOT_FOUND:
            return None
        if status:
            js_errors.APIError.from_msg(reply)
    return reply


MAX_ATOMIC_BATCH = 1000
"""The most messages nats-server takes in one atomic batch (its ``max_batch_size`` default)."""
ATOMIC_MIN_BATCH = 32
"""The fewest messages worth one atomic batch. On a single-replica file stream nats-server stages each
batch in a file store of its own (a directory, its metadata and a block, each written and synced, then
removed): a fixed cost that only enough messages pay back. ``python -m bench.atomic_batches`` on
2 cores, ``sync_interval: always``, nats-server CPU per message, atomic against pipelined publishes:
1 message 2.86 against 0.26 ms, 8 0.35 against 0.18, 16 0.19 against 0.11, 32 0.10 against 0.10,
64 0.05 against 0.09, 128 0.04 against 0.11. (Without ``always`` an atomic batch costs more at every
size, 3.7 times as much at 64: Stockwire's durability asks for ``always``, see deploy/k8s/README.md.)"""


def atomic_pays(count: int) -> bool:
    """Whether ``count`` messages bound for one stream are cheaper sent as one atomic batch than
    published one by one: :data:`ATOMIC_MIN_BATCH` to :data:`MAX_ATOMIC_BATCH` messages."""
    return ATOMIC_MIN_BATCH <= count <= MAX_ATOMIC_BATCH


ATOMIC_DISABLED = 10174
"""JetStream's error code for a batch sent to a stream without ``allow_atomic`` (nothing stored)."""
ATOMIC_DUPLICATE = 10201
"""JetStream's error code for a batch holding a ``Nats-Msg-Id`` the stream already has: the whole
batch is refused, so a batch that may repeat messages is published one by one instead."""


@dataclass(frozen=True, slots=True)
class AtomicAck:
    """A committed batch: ``count`` messages stored in ``stream``, the last at ``last_seq``."""

    stream: str
    last_seq: int
    count: int

    def seqs(self) -> range:
        """The stream sequences of the batch's messages, in the order they were sent."""
        return range(self.last_seq - self.count + 1, self.last_seq + 1)


class AtomicBatchRefused(Exception):
    """JetStream refused a whole atomic batch: none of its messages was stored."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"atomic batch refused: {description} (err_code {err_code})")
        self.err_code = err_code
        self.description = description


async def publish_atomic(
    nc: Client, messages: Sequence[tuple[str, bytes, Mapping[str, str]]], *, timeout_s: float
) -> asyncio.Future[AtomicAck]:
    """Send ``messages`` (subject, payload, headers; 1 to :data:`MAX_ATOMIC_BATCH`, all to one stream
    with ``allow_atomic``) as one atomic batch; returns a future of the batch's :class:`AtomicAck`.

    Every message is handed to the connection before this returns, in order; only the commit is
    answered, so the batch costs one round trip and, with ``sync_interval: always``, one fsync of the
    stream rather than one per message; the server's staging of the batch costs more than that saves
    below :data:`ATOMIC_MIN_BATCH` messages (see :func:`atomic_pays`). The future fails with :class:`AtomicBatchRefused`
    (nothing stored), or with the client's errors (``nats.errors.TimeoutError`` after ``timeout_s``
    seconds: the outcome is then unknown, as for any unanswered publish). Raises ``ValueError`` for an
    empty or oversized batch and what ``nc.publish`` raises (a closed connection). Protocol: ADR-50,
    "JetStream Batch Publishing", nats-server 2.12+.
    """
    if not 0 < len(messages) <= MAX_ATOMIC_BATCH:
        raise ValueError(f"an atomic batch holds 1 to {MAX_ATOMIC_BATCH} messages, not {len(messages)}")
    batch_id = uuid.uuid4().hex
    last = len(messages)
    for sequence, (subject, payload, headers) in enumerate(messages[:-1], start=1):
        await nc.publish(
            subject,
            payload,
            headers={**headers, HEADER_BATCH_ID: batch_id, HEADER_BATCH_SEQUENCE: str(sequence)},
        )
    subject, payload, headers = messages[-1]
    commit = {**headers, HEADER_BATCH_ID: batch_id, HEADER_BATCH_SEQUENCE: str(last), HEADER_BATCH_COMMIT: "1"}
    # The commit is on the connection before this returns, so that whatever the caller publishes next
    # reaches the server after the batch (``nc.request`` would send it only once its task runs).
    inbox = nc.new_inbox()
    answers = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(subject, payload, reply=inbox, headers=commit)
    except BaseException:
        await answers.unsubscribe()
        raise
    return asyncio.ensure_future(_committed(answers, timeout_s))


async def stream_allows_atomic(js: JetStreamContext, stream: str, what: str) -> bool | None:
    """Whether ``stream`` takes atomic batches (``allow_atomic``; a nats-server before 2.12 has no such
    field: False) and Stockwire uses them there (single-replica streams only, for now). None when
    JetStream could not say (logged as a warning): ask again later. ``what`` names the stream's use in
    the log lines (``kv event-ids``)."""
    try:
        config = (await js.stream_info(stream)).config
    except (nats.errors.Error, js_errors.Error, TimeoutError) as exc:
        log.warning("cannot tell whether %s takes atomic batches (%s: %s)", what, type(exc).__name__, exc)
        return None
    if (config.num_replicas or 1) > 1:
        # Not yet on replicated streams: they were taken off when the R3 chaos test missed its recovery
        # bound with atomic batches, a failure later seen without them too and traced to two faults of
        # the relay's epoch (since fixed); turning them on there waits for a measurement with the fixes.
        log.info("%s is replicated: written one message at a time, not in atomic batches", what)
        return False
    allowed = bool(config.allow_atomic)
    if not allowed:
        log.info(
            "%s does not allow atomic batches (`stockwire topology apply` turns them on where nats-server is "
            "2.12 or later): one message at a time",
            what,
        )
    return allowed


async def _committed(answers: Subscription, timeout_s: float) -> AtomicAck:
    try:
        reply = await answers.next_msg(timeout=timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await answers.unsubscribe()
    if not reply.data and (reply.headers or {}).get(HEADER_STATUS) == NO_RESPONDERS:
        raise nats.errors.NoRespondersError
    answer = json.loads(reply.data)
    error = answer.get("error")
    if error:
        raise AtomicBatchRefused(int(error.get("err_code", 0)), str(error.get("description", "")))
    return AtomicAck(str(answer["stream"]), int(answer["seq"]), int(answer["count"]))
