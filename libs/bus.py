"""JetStream connections: every service connects the same way, reconnects forever, and says so."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.backoff import backoff_delay
from libs.config import NatsSettings
from libs.contracts import DIRECT_GET_NOT_FOUND, HEADER_STATUS, direct_get_subject

__all__ = ["API_TIMEOUT_S", "connect", "direct_get_last", "jetstream"]

log = logging.getLogger("stockwire.bus")

API_TIMEOUT_S = 5.0
"""How long a JetStream API call waits for its answer (:func:`jetstream`'s default)."""


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca or settings.tls_cert):
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def connect(settings: NatsSettings, name: str, **extra: Any) -> Client:
    """Connect with unlimited reconnects and jittered backoff; the first connect also retries forever."""
    servers = list(settings.servers)

    def pick_server(pool: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        chosen = min(pool, key=lambda s: s.reconnects)
        return chosen, backoff_delay(chosen.reconnects, settings.reconnect_wait_s, settings.reconnect_wait_max_s)

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s: %s", name, type(exc).__name__, exc)

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats %s: disconnected, reconnecting", name)

    async def on_reconnected() -> None:
        log.info("nats %s: reconnected to %s", name, nc.connected_url.netloc if nc.connected_url else "?")

    async def on_closed() -> None:
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
            await nc.connect(**options)
            break
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            delay = backoff_delay(attempt, settings.reconnect_wait_s, settings.reconnect_wait_max_s)
            log.warning("nats %s: cannot connect to %s (%s); retrying in %.1fs", name, servers, exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
    log.info("nats %s: connected to %s", name, nc.connected_url.netloc if nc.connected_url else servers)
    return nc


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
