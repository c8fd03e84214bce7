"""The ingress HTTP app: ``POST /webhooks/{source}`` plus health, metrics and the OpenAPI schema."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, post
from litestar.datastructures import State
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.openapi.spec import Parameter as OpenAPIParameter
from litestar.params import Parameter

from libs import tracing
from libs.bus import close_connection, connect, jetstream
from libs.config import SourceSettings, StockwireSettings
from libs.http import create_service_app, error_body, error_responses
from libs.natsserver import sync_warning
from libs.schemes import MAX_ID_LENGTH, SCHEMES, WebhookScheme
from libs.server import service_app
from libs.store import database_url
from libs.subjects import EVENT_TYPE_PATTERN, SOURCE_PATTERN
from libs.tasks import stop_tasks

from .front import Answer, WebhookFront
from .metrics import CONFLICTS, RECEIVED, REJECTED, REQUEST_SECONDS, SPOOL_DEPTH
from .publisher import Durability, DurableWriter, Outcome, StoreUnavailable
from .settings import IngressSettings
from .spool import Spool
from .webhook import (
    InboundWebhook,
    WebhookRejected,
    accept_webhook,
    check_header_block,
    check_headers,
    check_size,
    is_ping,
)

__all__ = ["build_app", "create_app"]

log = logging.getLogger("stockwire.ingress")


def _reject(source: str, exc: WebhookRejected, started: float) -> Answer:
    log.info("webhook from %s refused: %d %s: %s", source, exc.status, exc.code, exc.detail)
    REJECTED.labels(source, exc.code).inc()
    RECEIVED.labels(source, "unknown", "rejected").inc()
    REQUEST_SECONDS.labels("rejected").observe(time.perf_counter() - started)
    return exc.status, error_body(exc.code, exc.detail)


def _where(scheme: WebhookScheme) -> str:
    """One scheme's part of the request body's description: where its id and type are, and its ping."""
    text = f"{scheme.name}: id in {scheme.event_id.describe()}, type in {scheme.event_type.describe()}"
    if scheme.ping is not None:
        text += (
            f", and its platform's unsigned URL test (`{scheme.ping.pattern.decode()}`) is answered 200, kept nowhere"
        )
    return text


@dataclass
class _WebhookOperation(Operation):
    """The webhook operation as the handler reads it: the raw body, never parsed before the signature
    holds (so no ``data`` argument), and the headers of each source scheme (libs.schemes)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="The producer's event, as signed (at most `max_body_bytes`, nesting at most 32 levels). "
            + "; ".join(_where(scheme) for scheme in SCHEMES.values())
            + ". Where both are headers, the body is the platform's resource itself.",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={
                            "id": Schema(
                                one_of=[
                                    Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_ID_LENGTH),
                                    Schema(type=OpenAPIType.INTEGER),
                                ]
                            ),
                            "event_type": Schema(type=OpenAPIType.STRING, pattern=EVENT_TYPE_PATTERN.pattern),
                            "type": Schema(type=OpenAPIType.STRING, pattern=EVENT_TYPE_PATTERN.pattern),
                        },
                    )
                ),
                "application/x-www-form-urlencoded": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={"webhook_id": Schema(type=OpenAPIType.STRING, pattern="^[0-9]{1,20}$")},
                        required=["webhook_id"],
                        # WooCommerce's URL test is that one field, nothing else (any other form: 415).
                        additional_properties=False,
                    )
                ),
            },
        )
        headers = [
            OpenAPIParameter(
                name=spec.name,
                param_in=ParamType.HEADER,
                required=False,
                description=spec.description,
                schema=Schema(type=OpenAPIType.STRING, max_length=spec.max_length),
            )
            for scheme in SCHEMES.values()
            for spec in scheme.headers
        ]
        self.parameters = [*(self.parameters or []), *headers]


class Accepted(msgspec.Struct, forbid_unknown_fields=True):
    """Durable in JetStream, at this sequence of COMMERCE."""

    status: Literal["accepted"]
    stream_seq: int


class Duplicate(msgspec.Struct, forbid_unknown_fields=True):
    """Already received with the same body: nothing more is kept."""

    status: Literal["duplicate"]


class Ping(msgspec.Struct, forbid_unknown_fields=True):
    """WooCommerce's URL test, kept nowhere."""

    status: Literal["ping"]


class Spooled(msgspec.Struct, forbid_unknown_fields=True):
    """JetStream is away: durable in the local spool, to be published."""

    status: Literal["spooled"]


# The documented bodies; the handler answers the same JSON as plain dicts (the hot path stays as it is).
_ACCEPTED = ResponseSpec(
    Accepted | Duplicate | Ping,  # type: ignore[arg-type]
    description='Durable in JetStream (`{"status": "accepted", "stream_seq": n}`), already received with '
    'the same body (`{"status": "duplicate"}`), or WooCommerce\'s URL test, kept nowhere (`{"status": "ping"}`)',
    generate_examples=False,
)
_SPOOLED = ResponseSpec(
    Spooled,
    description="JetStream is away: the event is durable in the local spool and will be published "
    '(`{"status": "spooled"}`)',
    generate_examples=False,
)


_SourceName = Annotated[str, Parameter(description="A configured source name")]
"""The path parameter; each app's document lists its configured names (see ``signature_namespace``)."""


async def _traced_write(writer: DurableWriter, event: InboundWebhook) -> Durability:
    """:meth:`DurableWriter.write` in an ``ingress publish`` span whose context the event carries on."""
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": event.subject,
        "messaging.message.id": event.msg_id,
        "stockwire.event_type": event.event_type,
    }
    with tracing.span("ingress publish", kind="producer", attributes=attributes) as span:
        result = await writer.write(dataclasses.replace(event, trace=tracing.inject({})))
        span.set_attribute("stockwire.outcome", result.outcome.value)
        if result.stream_seq is not None:
            span.set_attribute("stockwire.stream_seq", result.stream_seq)
        return result


_ROUTE_PREFIX = "/webhooks/"


class _Webhooks:
    """``POST /webhooks/{source}``, whichever way the request came in: Litestar's route (which also
    documents it) or :class:`.front.WebhookFront`, which serves it outside Litestar's router."""

    def __init__(self, sources: Mapping[str, SourceSettings], settings: IngressSettings) -> None:
        self.sources = sources
        self.limit = settings.max_body_bytes

    async def serve(
        self,
        source: str,
        raw_headers: Iterable[tuple[bytes, bytes]],
        headers: Mapping[str, str],
        body: Callable[[], Awaitable[bytes]],
        state: State,
    ) -> Answer:
        """The answer to one webhook: ``raw_headers`` as the ASGI scope holds them, ``headers`` the same
        read case-insensitively (the first of each name), ``body`` reads the body (raising as
        :meth:`litestar.Request.body` does), ``state`` the app's (its ``writer``). What escapes goes to
        :func:`libs.http.exception_answer`."""
        if not tracing.enabled():
            return await self._handle(source, raw_headers, headers, body, state, traced=False)
        attributes = {
            "http.request.method": "POST",
            "http.route": f"{_ROUTE_PREFIX}{{source}}",
            "stockwire.source": source[:64],
        }
        with tracing.span("ingress webhook", parent=headers, kind="server", attributes=attributes) as span:
            answer = await self._handle(source, raw_headers, headers, body, state, traced=True)
            span.set_attribute("http.response.status_code", answer[0])
            return answer

    async def _handle(
        self,
        source: str,
        raw_headers: Iterable[tuple[bytes, bytes]],
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        state: State,
        *,
        traced: bool,
    ) -> Answer:
        started = time.perf_counter()
        limit = self.limit
        config = self.sources.get(source)
        if config is None:
            return _reject(
                "unknown",
                # Echoed into the answer and the log: only as much of it as a source name can hold.
                WebhookRejected(404, "unknown_source", f"no webhook source named {source[:64]!r}"),
                started,
            )
        try:
            check_header_block(raw_headers)
            # Before the ping too: every path through ingress bounds the headers it may read.
            check_headers(headers)
            check_size(headers.get("content-length"), limit)
            body = await read_body()
            if is_ping(config, headers, body):
                log.info("webhook source %s: the platform's URL test (ping) answered; nothing kept", source)
                RECEIVED.labels(source, "ping", "ping").inc()
                REQUEST_SECONDS.labels("ping").observe(time.perf_counter() - started)
                return 200, {"status": "ping"}
            if traced:
                with tracing.span("ingress verify", attributes={"stockwire.scheme": config.scheme}):
                    event = accept_webhook(source, config, headers, body, max_body_bytes=limit)
            else:
                event = accept_webhook(source, config, headers, body, max_body_bytes=limit)
        except WebhookRejected as exc:
            return _reject(source, exc, started)
        writer: DurableWriter = state.writer
        try:
            if traced:
                result = await _traced_write(writer, event)
            else:
                result = await writer.write(event)
        except StoreUnavailable:
            RECEIVED.labels(source, event.event_type, "unavailable").inc()
            REQUEST_SECONDS.labels("unavailable").observe(time.perf_counter() - started)
            return 503, error_body("unavailable", "neither JetStream nor the spool can take the event; retry")
        outcome = result.outcome.value
        RECEIVED.labels(source, event.event_type, outcome).inc()
        REQUEST_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        if result.outcome is Outcome.ACCEPTED:
            return 200, {"status": "accepted", "stream_seq": result.stream_seq}
        if result.outcome is Outcome.DUPLICATE:
            return 200, {"status": "duplicate"}
        if result.outcome is Outcome.CONFLICT:
            CONFLICTS.labels(source).inc()
            return 409, error_body(
                "conflict",
                f"event id {event.event_id!r} was first received with a different body; the first one stands "
                "and this one is kept in DEADLETTER",
                first_body_sha256=result.first_digest,
            )
        return 202, {"status": "spooled"}


def _webhook_handler(webhooks: _Webhooks) -> Any:
    sources = webhooks.sources
    # Any other name is answered 404: the document lists the configured ones.
    source_schema: dict[str, Any] = (
        {"enum": sorted(sources)} if sources else {"pattern": SOURCE_PATTERN.pattern, "max_length": 64}
    )

    @post(
        f"{_ROUTE_PREFIX}{{source:str}}",
        request_max_body_size=webhooks.limit + 1,
        summary="Receive a signed webhook",
        description="Verifies the source's signature and answers once the event is durable (design §3).",
        status_code=200,
        operation_class=_WebhookOperation,
        signature_namespace={
            "_SourceName": Annotated[str, Parameter(description="A configured source name", schema_extra=source_schema)]
        },
        responses={
            200: _ACCEPTED,
            202: _SPOOLED,
            **error_responses(
                400,
                401,
                404,
                409,
                413,
                415,
                422,
                431,
                503,
                s400="Malformed JSON, a body nested too deeply, or a bad Content-Length",
                s401="The signature does not verify (missing, wrong secret, or a timestamp out of tolerance)",
                s404="No source of that name is configured",
                s409="The event id was first received with another body; the first stands "
                "(`first_body_sha256` names it)",
                s422="Signed, but the event has no usable id or event type",
                s503="Neither JetStream nor the spool can take the event; retry",
            ),
        },
    )
    async def receive_webhook(
        source: _SourceName,
        request: Request[Any, Any, State],
    ) -> Response[dict[str, Any]]:
        status, content = await webhooks.serve(
            source, request.scope["headers"], request.headers, request.body, request.app.state
        )
        return Response(content, status_code=status)

    return receive_webhook


_CANCELLED_TASKS_WAIT_S = 2.0


def build_app(shared: StockwireSettings, settings: IngressSettings) -> Litestar:
    if not shared.sources:
        log.warning("no [sources] configured: every webhook will be refused with 404")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        spool = await Spool.open(database_url(settings.database_url, shared.data_dir, "ingress"))
        writer = DurableWriter(spool, settings.publish_timeout_s, settings.startup_wait_s)
        app.state.writer = writer

        async def connect_bus() -> None:
            nc = await connect(shared.nats, "stockwire-ingress")
            writer.attach(nc, jetstream(nc))
            if shared.nats.monitor_url:
                # A 200 is only as durable as JetStream's acknowledgement (design §3, durability).
                warning = await asyncio.to_thread(sync_warning, shared.nats.monitor_url)
                if warning:
                    log.warning("%s", warning)

        async def watch_spool() -> None:
            while True:
                with contextlib.suppress(Exception):
                    SPOOL_DEPTH.set(await spool.depth())
                try:
                    await writer.remember_relayed()
                except Exception as exc:
                    log.warning("recording the digests of relayed events failed: %s", exc)
                await asyncio.sleep(settings.spool_depth_interval_s)

        tasks = [
            asyncio.create_task(connect_bus(), name="ingress-connect"),
            asyncio.create_task(watch_spool(), name="ingress-spool-watch"),
        ]
        try:
            yield
        finally:
            # Awaited (bounded, as every wait of the shutdown): a connection made as the cancel arrives (a
            # port in use ends the lifespan within a millisecond) is then attached and closed below, not
            # left running past the event loop.
            await stop_tasks(tasks, timeout_s=_CANCELLED_TASKS_WAIT_S, log=log)
            if writer.nc is not None:
                await writer.flush_records(timeout_s=5.0)
                await close_connection(writer.nc)
            await spool.close()

    async def spool_writable() -> bool:
        writer: DurableWriter = app.state.writer
        return await writer.spool.writable()

    async def nats_connected() -> bool:
        writer: DurableWriter = app.state.writer
        return writer.bus_connected

    webhooks = _Webhooks(shared.sources, settings)
    app = create_service_app(
        "ingress",
        [_webhook_handler(webhooks)],
        # Ingress stays ready while JetStream is away: the spool keeps every event, and taking the
        # pods out of rotation would turn a broker outage into lost webhooks at the producer.
        readiness={"spool_writable": spool_writable},
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes + 1,
        description="Receives signed webhooks and makes each one durable in JetStream before answering.",
    )
    app.state.nats_connected = nats_connected
    # In front of Litestar's router: the webhook route costs a fraction of the CPU this way (see
    # docs/architecture.md); every other request, and any a webhook route would not take, goes on to it.
    app.asgi_handler = WebhookFront(webhooks.serve, app.state, app.asgi_handler, _ROUTE_PREFIX, webhooks.limit + 1)
    return app


def create_app() -> Litestar:
    """The uvicorn factory: reads configuration from the file and the environment."""
    return service_app("ingress", IngressSettings, build_app)
