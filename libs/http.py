"""What every service's HTTP API shares: JSON errors, health and metrics endpoints, the admin guard."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy.exc
from litestar import Litestar, Request, Response, get
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.params import Parameter
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import (
    ASGIApp,
    ControllerRouterHandler,
    ExceptionHandlersMap,
    HTTPScope,
    LifespanHook,
    Message,
    Receive,
    Scope,
    Send,
)
from litestar.typing import FieldDefinition

from libs import tracing
from libs.metrics import CONTENT_TYPE_LATEST, render_metrics

__all__ = [
    "ADMIN_SECURITY",
    "MAX_INT64",
    "ApiError",
    "ErrorAnswer",
    "ErrorBody",
    "Liveness",
    "Readiness",
    "ReadinessCheck",
    "SchemaOverrides",
    "admin_guard",
    "create_service_app",
    "error_body",
    "error_response",
    "error_responses",
    "exception_answer",
    "exception_response",
    "int64_parameter",
    "is_json_media_type",
    "printable_pattern",
    "text_response",
]

log = logging.getLogger("stockwire.http")

ReadinessCheck = Callable[[], Awaitable[bool]]

MAX_INT64 = 2**63 - 1
"""The largest integer a BIGINT column (SQLite INTEGER, PostgreSQL BIGINT) holds: the bound of every id,
version or cursor an API takes (``Parameter(le=MAX_INT64)``, ``msgspec.Meta(le=MAX_INT64)``)."""


def int64_parameter(**kwargs: Any) -> Any:
    """``Parameter(...)`` for an id, version or cursor: at most :data:`MAX_INT64`, and so in the document
    (Litestar writes ``le`` as a float, 2^63, which would let one value too many through)."""
    return Parameter(le=MAX_INT64, schema_extra={"maximum": MAX_INT64}, **kwargs)


def _class_char(code: int) -> str:
    """One end of a range in a regex class, as both Python's ``re`` and ECMA-262 (``u`` flag) read it: an
    escape in the Basic Multilingual Plane (which also covers control characters and lone surrogates,
    unwritable as such in JSON), the character itself above it (neither dialect shares an escape there)."""
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


@functools.cache
def _printable_class(space: bool = True) -> str:
    """The code points ``str.isprintable()`` takes (every one but those of categories Cc, Cf, Cs, Co, Cn, Zl,
    Zp and the Zs other than the space), as the ranges of a regex class, from this interpreter's Unicode
    database; without the space unless ``space``. A class of what is taken, not a negated one of what is
    refused: generators (hypothesis) build it in a fraction of the time."""
    ranges: list[str] = []
    start: int | None = None
    for code in range(sys.maxunicode + 2):
        taken = code <= sys.maxunicode and chr(code).isprintable() and (space or code != 0x20)
        if taken and start is None:
            start = code
        elif not taken and start is not None:
            end = code - 1
            ranges.append(_class_char(start) if start == end else f"{_class_char(start)}-{_class_char(end)}")
            start = None
    return "".join(ranges)


def printable_pattern(min_length: int, max_length: int, *, strip: bool = False) -> str:
    """A JSON Schema ``pattern`` for ``min_length`` to ``max_length`` characters of which ``str.isprintable()``
    holds for each: the rule of ids, SKUs and reasons, which the documents could not say otherwise.
    ``strip``: the service strips white space from both ends first (``str.strip()``), then asks for at least
    one character (``min_length`` must be 1); ``max_length`` bounds what is left."""
    printable = f"[{_printable_class()}]"
    if not strip:
        return f"^{printable}{{{min_length},{max_length}}}$"
    assert min_length == 1, "strip is only for a minimum of one character"
    # White space, one printable character that is not a space, printable ones, white space.
    solid = f"[{_printable_class(space=False)}]"
    return rf"^\s*{solid}(?:{printable}{{0,{max_length - 2}}}{solid})?\s*$"


def _split_charset(media_type: str) -> tuple[str, str | None]:
    """``media_type`` without its ``charset`` parameter, and that charset (``None`` when it names none)."""
    kept: list[str] = []
    charset: str | None = None
    for part in media_type.split(";"):
        name, _, value = part.strip().partition("=")
        if kept and name.lower() == "charset":
            charset = value.strip().strip('"')
        else:
            kept.append(part.strip())
    return "; ".join(kept), charset


def text_response(body: str | bytes, media_type: str, *, status_code: int = 200) -> Response[Any]:
    """A response of ``body`` as ``media_type`` (e.g. ``text/html; charset=utf-8``) whose Content-Type names
    one charset: Litestar appends ``; charset=<encoding>`` to every ``text/`` media type, one that names
    its own too (a repeated parameter, which Go's ``mime.ParseMediaType``, and so Prometheus, refuses).
    The media type's charset (UTF-8 when it names none) is the response's encoding; a ``str`` body is
    encoded with it."""
    bare, charset = _split_charset(media_type)
    # Litestar adds the charset to text/ types only: any other keeps the one it names.
    shown = bare if bare.startswith("text/") else media_type
    return Response(body, media_type=shown, encoding=charset or "utf-8", status_code=status_code)


class ApiError(HTTPException):
    """An error with a stable machine-readable ``code`` besides the human ``detail``."""

    def __init__(self, status_code: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code
        self.fields = extra


class ErrorBody(msgspec.Struct):
    """The body of every 4xx/5xx answer, as the OpenAPI documents show it. Some errors add fields
    (``problems``, ``short``, ``first_body_sha256``): the schema leaves extra properties open."""

    error: Annotated[str, msgspec.Meta(min_length=1, description="A stable machine-readable code, e.g. `not_found`.")]
    detail: Annotated[str, msgspec.Meta(min_length=1, description="What went wrong, for a human.")]


ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
"""The OpenAPI ``security`` of every operation behind :func:`admin_guard`."""

_SECURITY_SCHEMES = {
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        description="The admin token (STOCKWIRE_ADMIN_TOKEN or [admin] token), as `Authorization: Bearer <token>`.",
    )
}

_ERROR_DESCRIPTIONS = {
    400: "The request is malformed: a parameter or body that does not fit its schema",
    401: "No valid admin bearer token",
    403: "The admin API is disabled (no admin token configured)",
    404: "No such resource",
    409: "Conflicts with what is stored",
    413: "The body is over the size limit",
    415: "The body is not JSON",
    422: "Well-formed, but a value cannot be used",
    431: "A header, or the header block, is over its limit",
    503: "A dependency (NATS, the store) is unavailable; retry",
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses=`` for a handler: each of ``statuses`` answered with :class:`ErrorBody`.
    ``descriptions`` (keyed ``s409`` and so on) replace the default description of a status."""
    return {
        status: ResponseSpec(
            ErrorBody,
            description=descriptions.get(f"s{status}", _ERROR_DESCRIPTIONS.get(status, "Error")),
            generate_examples=False,
        )
        for status in statuses
    }


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The one error shape of every service: ``{"error": code, "detail": detail, **extra}``."""
    return {"error": code, "detail": detail, **extra}


def error_response(status: int, code: str, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    """:func:`error_body` answered with ``status``."""
    return Response(error_body(code, detail, **extra), status_code=status)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "unavailable",
}


_INPUT_ERRORS: dict[type[Exception], tuple[str, str]] = {
    OverflowError: ("out_of_range", "a number in the request is out of range"),
    # The database refused a value (PostgreSQL: NUL in text, an integer past its column's range).
    sqlalchemy.exc.DataError: ("invalid_input", "a value in the request cannot be stored"),
    RecursionError: ("too_deep", "the request nests too deeply"),
    ValueError: ("invalid_input", "a value in the request cannot be used"),
}


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a service answers for an exception that escaped a handler: ``status``, the JSON ``body``
    (:func:`error_body`'s shape) and any ``headers`` the exception asks for."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


def _http_error(method: str, path: str, exc: HTTPException) -> ErrorAnswer:
    status = exc.status_code
    if isinstance(exc, ApiError):
        code, extra = exc.code, exc.fields
    else:
        code, extra = _CODES.get(status, "error"), {}
        if exc.extra:
            extra = {"problems": exc.extra}
    if status >= 500:
        log.error("%s %s -> %d %s: %s", method, path, status, code, exc.detail)
    else:
        log.info("%s %s -> %d %s: %s", method, path, status, code, exc.detail)
    return ErrorAnswer(status, error_body(code, exc.detail, **extra), exc.headers or {})


def _input_error(method: str, path: str, exc: Exception, code: str, detail: str) -> ErrorAnswer:
    """What escapes a handler as ValueError, OverflowError or RecursionError came from a value in the
    request that no bound caught where it entered: a 400, logged with its traceback so the missing bound
    is found and added."""
    trace = None if isinstance(exc, RecursionError) else exc  # thousands of frames say nothing more
    log.warning("%s %s -> 400 %s: %s: %s", method, path, code, type(exc).__name__, exc, exc_info=trace)
    return ErrorAnswer(400, error_body(code, detail), {})


def exception_answer(method: str, path: str, exc: Exception) -> ErrorAnswer:
    """The answer to ``exc``, raised while handling ``method path``, logged as it is logged: an
    :class:`~litestar.exceptions.HTTPException` with its status (an :class:`ApiError` with its code and
    fields), a 400 for an input error (ValueError, OverflowError, RecursionError, a value the database
    refused), else a 500. The nearest of those classes in the exception's MRO decides, as Litestar picks
    a handler; this is every service's exception handler, and what a route served outside Litestar's
    router answers."""
    for kind in type(exc).__mro__:
        if kind is HTTPException:
            assert isinstance(exc, HTTPException)
            return _http_error(method, path, exc)
        if kind in _INPUT_ERRORS:
            return _input_error(method, path, exc, *_INPUT_ERRORS[kind])
    log.exception("%s %s failed", method, path, exc_info=exc)
    body = error_body("internal_error", "internal error; see the service log")
    return ErrorAnswer(HTTP_500_INTERNAL_SERVER_ERROR, body, {})


_HANDLED: tuple[type[Exception], ...] = (HTTPException, *_INPUT_ERRORS, Exception)


def exception_response(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Every service's Litestar exception handler: :func:`exception_answer`'s status, JSON body and headers."""
    answer = exception_answer(request.method, request.url.path, exc)
    response = Response(answer.body, status_code=answer.status)
    if answer.headers:
        response.headers.update(answer.headers)
    return response


def admin_guard(token: str | None) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """A Litestar guard: ``Authorization: Bearer <token>``, compared in constant time."""
    expected = token.encode() if token else None

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if expected is None:
            raise PermissionDeniedException("the admin API is disabled: set STOCKWIRE_ADMIN_TOKEN or [admin] token")
        header = connection.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
            raise NotAuthorizedException(
                "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    return guard


class Liveness(msgspec.Struct, forbid_unknown_fields=True):
    """``GET /healthz``: the process answers."""

    status: Literal["ok"]


class Readiness(msgspec.Struct, forbid_unknown_fields=True):
    """``GET /readyz``: each check and whether it passes; ``ready`` when all do."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


def _health_handlers(checks: Mapping[str, ReadinessCheck]) -> list[ControllerRouterHandler]:
    @get("/healthz", sync_to_thread=False, summary="Liveness", tags=["health"])
    def healthz() -> Liveness:
        return Liveness("ok")

    @get(
        "/readyz",
        summary="Readiness: each check and whether it passes",
        tags=["health"],
        responses={503: ResponseSpec(Readiness, description="A check fails", generate_examples=False)},
    )
    async def readyz() -> Response[Readiness]:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await check())
            except Exception as exc:  # a failing check is an answer, not a crash
                log.warning("readiness check %s failed: %s", name, exc)
                results[name] = False
        ready = all(results.values())
        return Response(Readiness("ready" if ready else "not_ready", results), status_code=200 if ready else 503)

    @get(
        "/metrics",
        media_type=CONTENT_TYPE_LATEST,  # the document's; the response's own is text_response's
        sync_to_thread=False,
        summary="Prometheus metrics (text exposition format)",
        tags=["health"],
    )
    def metrics() -> Response[bytes]:
        return text_response(render_metrics(), CONTENT_TYPE_LATEST)

    return [healthz, readyz, metrics]


class _ClosedStructs(StructSchemaPlugin):
    """A msgspec Struct declared ``forbid_unknown_fields`` is refused (400) with any other field: its schema
    says so with ``additionalProperties: false``, which Litestar's own Struct plugin leaves out."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        if not super().is_plugin_supported_field(field_definition):
            return False
        info = msgspec.inspect.type_info(field_definition.type_)
        return isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


class SchemaOverrides(OpenAPISchemaPlugin):
    """The document's schema of each listed type written out, for a rule that spans fields (a channel's
    ``kind`` deciding which others it takes: ``oneOf``), which no generated schema can say; the type
    itself still decodes the body. Pass it in ``plugins=`` of :func:`create_service_app`."""

    def __init__(self, schemas: Mapping[type, Schema]) -> None:
        self._schemas = dict(schemas)

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        """Whether the field's type is one of those listed."""
        return field_definition.annotation in self._schemas

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        """The schema listed for the field's type."""
        return self._schemas[field_definition.annotation]


class _RequestChecks:
    """Litestar answers ``OPTIONS`` from the route of one of the handlers declared at a path, naming only
    its methods (``OPTIONS /channels/x`` named DELETE, not GET and PATCH). This ``before_request`` hook
    answers it instead, with every method of the path (the app's merged routes, known once it is built).

    It also reads every JSON body a handler takes as ``data`` (a struct) as strictly as it is declared:
    Litestar converts bodies as it converts path and query strings, leniently (``"qty": "5"`` became 5),
    and does not look at the content type. A body whose media type is not JSON is 415
    ``unsupported_media_type``; a value of another type than declared is 400 with Litestar's ``problems``
    shape (``message``, ``key``, ``source: body``)."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}
        self._bodies: dict[int, type[msgspec.Struct] | None] = {}

    def learn(self, app: Litestar) -> Litestar:
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                self.by_path[route.path] = ", ".join(sorted(route.methods))
        return app

    # A coroutine: Litestar runs a plain callable hook in a worker thread, a hop (and GIL hand-off)
    # on every request of every service.
    async def __call__(self, request: Request[Any, Any, Any]) -> Response[None] | None:
        if request.method == "OPTIONS":
            allowed = next((self.by_path[p] for p in request.route_handler.paths if p in self.by_path), None)
            if allowed is None:
                return None
            return Response(None, status_code=204, headers={"Allow": allowed})
        body_type = self._body_type(request.route_handler)
        if body_type is not None:
            await _read_strictly(request, body_type)
        return None

    def _body_type(self, handler: BaseRouteHandler) -> type[msgspec.Struct] | None:
        key = id(handler)
        if key not in self._bodies:
            data = handler.parsed_fn_signature.parameters.get("data")
            annotation = data.annotation if data is not None else None
            is_struct = isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)
            self._bodies[key] = annotation if is_struct else None
        return self._bodies[key]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value names JSON: ``application/json`` or ``application/<x>+json``
    (RFC 6839), any parameters and letter case."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_strictly(request: Request[Any, Any, Any], body_type: type[msgspec.Struct]) -> None:
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type):
        raise ApiError(
            415, "unsupported_media_type", f"content type must be application/json, got {content_type or 'none'!r}"
        )
    try:
        document = _integers_as_integers(msgspec.json.decode(await request.body()))
    except (msgspec.DecodeError, RecursionError):
        return  # not JSON, or too deep to walk: Litestar's own reading answers it as it always has
    try:
        msgspec.convert(document, type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `")
        key = at.rstrip("`").removeprefix("$").removeprefix(".") or "body"
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}",
            extra=[{"message": message, "key": key, "source": "body"}],
        ) from None


def _integers_as_integers(value: Any) -> Any:
    """``value`` with every number that has no fractional part as an ``int``: JSON Schema's integers
    (2020-12, §6.1.1: ``1.0`` is an integer), which the OpenAPI documents promise an integer field takes."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value  # inf and nan are not: they stay floats
    if isinstance(value, dict):
        return {key: _integers_as_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers_as_integers(item) for item in value]
    return value


async def _flush_traces() -> None:
    if tracing.enabled():
        await asyncio.to_thread(tracing.flush)


class _HeadAsGet:
    """``HEAD`` answered as ``GET`` without its content: every general-purpose server supports both
    (RFC 9110 §9.1), and a ``HEAD`` answer has the ``GET`` answer's status and header fields, content
    length included, with no content (§9.3.2). Litestar routes ``HEAD`` only to handlers declared for it,
    so a load balancer's or a monitor's ``HEAD /healthz`` was answered 405. Sits where Litestar's ASGI
    handler sits (before routing), in every service's app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_content(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        as_get: HTTPScope = {**scope, "method": "GET"}
        await self.app(as_get, receive, without_content)


def create_service_app(
    service: str,
    route_handlers: Sequence[ControllerRouterHandler],
    *,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
    lifespan: Sequence[Any] = (),
    request_max_body_size: int | None = 1024 * 1024,
    description: str | None = None,
    exception_handlers: ExceptionHandlersMap | None = None,
    **kwargs: Any,
) -> Litestar:
    """A Litestar app with the shared error shape, ``/healthz``, ``/readyz``, ``/metrics`` and ``/schema``,
    answering ``HEAD`` wherever it answers ``GET``. ``exception_handlers``: the service's own for some
    exception classes (the nearest class in an exception's MRO decides), :func:`exception_response` for
    the rest."""
    checks = _RequestChecks()
    app = Litestar(
        route_handlers=[*route_handlers, *_health_handlers(readiness or {})],
        # One handler for every class: :func:`exception_answer` picks the answer by the MRO.
        exception_handlers={**dict.fromkeys(_HANDLED, exception_response), **(exception_handlers or {})},
        on_startup=list(on_startup),
        # Last: the spans of the shutdown itself are exported too (a uvicorn worker process ends
        # without running atexit hooks).
        on_shutdown=[*on_shutdown, _flush_traces],
        lifespan=list(lifespan),
        openapi_config=OpenAPIConfig(
            title=f"Stockwire {service}",
            version="0.1.0",
            description=description,
            path="/schema",
            components=Components(security_schemes=dict(_SECURITY_SCHEMES)),
        ),
        request_max_body_size=request_max_body_size,
        response_headers=None,
        # Logging is configured once per process by libs.logs; Litestar's own config would replace it.
        logging_config=None,
        before_request=checks,
        # The service's own first: the first plugin that takes a type writes its schema.
        plugins=[*kwargs.pop("plugins", []), _ClosedStructs()],
        **kwargs,
    )
    app.asgi_handler = _HeadAsGet(app.asgi_handler)
    return checks.learn(app)
