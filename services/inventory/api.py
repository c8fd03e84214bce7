"""The HTTP API: checkout reservations (admin token), stock and ledger reads, an order's trail."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType
from litestar.params import KwargDefinition, Parameter
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap

from libs.http import (
    ADMIN_SECURITY,
    ApiError,
    admin_guard,
    error_response,
    error_responses,
    int64_parameter,
    printable_pattern,
)
from libs.subjects import SOURCE_PATTERN

from .adapters.wire import MAX_ID_LENGTH, MAX_QTY, MalformedEvent, validate_id, validate_sku
from .domain.ledger import CartAnswer, CartResult
from .metrics import OVERSELL_REJECTIONS
from .service_layer import handlers
from .service_layer.unit_of_work import StoreUnavailable, UnitOfWorkFactory
from .settings import InventorySettings
from .store.reads import AmbiguousOrder, InventoryReader
from .views import (
    LedgerPage,
    OrderOut,
    ReservationOut,
    SkuStock,
    ledger_entry_out,
    order_out,
    reservation_out,
    sku_stock,
)

__all__ = ["LineIn", "ReservationRequest", "route_handlers"]

log = logging.getLogger("stockwire.inventory")


# The bounds below are documentation (KwargDefinition, which msgspec ignores): the handler checks the
# same bounds and answers 422 naming the field, as it always has; the OpenAPI document now says so.
_ID_PATTERN = printable_pattern(1, MAX_ID_LENGTH)
_Id = Annotated[
    str,
    KwargDefinition(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN, description="1 to 200 printable characters"
    ),
]


class LineIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: _Id
    qty: Annotated[int, KwargDefinition(ge=1, le=MAX_QTY)]


class ReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    reservation_id: _Id
    lines: list[LineIn]
    ttl_s: float | None = None


def _request_type(settings: InventorySettings) -> type[ReservationRequest]:
    """:class:`ReservationRequest` with this configuration's bounds on ``lines`` and ``ttl_s`` in its schema."""
    lines = Annotated[list[LineIn], KwargDefinition(min_items=1, max_items=settings.max_lines)]
    ttl = Annotated[float | None, KwargDefinition(ge=1, le=settings.max_reservation_ttl_s)]
    return msgspec.defstruct(  # type: ignore[return-value]
        "ReservationRequest",
        [("lines", lines), ("ttl_s", ttl, None)],
        bases=(ReservationRequest,),
        module=__name__,
    )


# A path segment as the handlers read it: an id or SKU, with `/` in it sent as `%2F`.
_PathId = Annotated[
    Path,
    Parameter(
        description="1 to 200 printable characters; a `/` in it is sent encoded (`%2F`)",
        # In the schema only: the value reaches the handler as a Path (the raw path is what it reads).
        schema_extra={
            "type": OpenAPIType.STRING,
            "format": None,
            "min_length": 1,
            "max_length": MAX_ID_LENGTH,
            "pattern": _ID_PATTERN,
        },
    ),
]


def _segments(request: Request[Any, Any, Any], prefix: str) -> list[str]:
    """The path after ``prefix``, split on the slashes that were slashes on the wire.

    SKUs and ids may hold ``/`` (sent as ``%2F``); the decoded path can no longer tell them apart,
    the raw one can.
    """
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(request.scope["path"])
    path = path.split("?", 1)[0]
    rest = path[len(prefix) :] if path.startswith(prefix) else ""
    return [unquote(part) for part in rest.split("/")] if rest else []


def _validated_lines(request: ReservationRequest, settings: InventorySettings) -> dict[str, int]:
    try:
        validate_id(request.reservation_id, "reservation_id")
        if not request.lines:
            raise MalformedEvent("'lines' must be a non-empty list")
        if len(request.lines) > settings.max_lines:
            raise MalformedEvent(f"at most {settings.max_lines} lines")
        lines: dict[str, int] = {}
        for i, line in enumerate(request.lines):
            validate_sku(line.sku, f"lines[{i}].sku")
            if isinstance(line.qty, bool) or not 1 <= line.qty <= MAX_QTY:
                raise MalformedEvent(f"'lines[{i}].qty' must be between 1 and {MAX_QTY}")
            lines[line.sku] = lines.get(line.sku, 0) + line.qty
    except MalformedEvent as exc:
        raise ApiError(422, "invalid_reservation", str(exc)) from None
    if any(qty > MAX_QTY for qty in lines.values()):
        raise ApiError(422, "invalid_reservation", f"a SKU's summed quantity must not exceed {MAX_QTY}")
    return lines


def _ttl(request: ReservationRequest, settings: InventorySettings) -> float:
    ttl = settings.reservation_ttl_s if request.ttl_s is None else request.ttl_s
    if not math.isfinite(ttl) or not 1 <= ttl <= settings.max_reservation_ttl_s:
        raise ApiError(422, "invalid_ttl", f"'ttl_s' must be between 1 and {settings.max_reservation_ttl_s:g} seconds")
    return ttl


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """The store cannot write (locked past its timeout, a PostgreSQL server gone): nothing was applied."""
    log.warning("%s %s -> 503: the store cannot write: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the store cannot write now; nothing was applied; retry")


_WRITES_UNAVAILABLE: ExceptionHandlersMap = {StoreUnavailable: _unavailable}


def route_handlers(settings: InventorySettings, admin_token: str | None) -> list[ControllerRouterHandler]:
    guard = admin_guard(admin_token)
    request_type = _request_type(settings)

    @post(
        "/reservations",
        guards=[guard],
        security=ADMIN_SECURITY,
        status_code=201,
        summary="Reserve every line, or none",
        description="201 with the reservation; 409 naming each short line; repeating a request returns 200.",
        signature_namespace={"ReservationRequest": request_type},
        exception_handlers=_WRITES_UNAVAILABLE,
        responses={
            200: ResponseSpec(
                ReservationOut,
                description="The same request again: the reservation as it stands",
                generate_examples=False,
            ),
            **error_responses(
                400, 401, 403, 409, 413, 422, 503, s409="Not enough stock, or the id names another request"
            ),
        },
    )
    async def create_reservation(data: ReservationRequest, state: State) -> Response[ReservationOut]:
        lines = _validated_lines(data, settings)
        ttl = _ttl(data, settings)
        units: UnitOfWorkFactory = state.units
        now = time.time()
        result, _rows = await handlers.reserve(
            units(), data.reservation_id, lines, ttl, now=now, ttl_s=settings.reservation_ttl_s
        )
        return _cart_response(data.reservation_id, result, now)

    @delete(
        "/reservations/{reservation_id:path}",
        guards=[guard],
        security=ADMIN_SECURITY,
        status_code=200,
        summary="Release a checkout reservation",
        responses=error_responses(400, 401, 403, 404, 503),
        exception_handlers=_WRITES_UNAVAILABLE,
    )
    async def release_reservation(
        request: Request[Any, Any, Any], state: State, reservation_id: _PathId
    ) -> ReservationOut:
        cart_id = _one_segment(request, "/reservations/", "unknown_reservation")
        units: UnitOfWorkFactory = state.units
        now = time.time()
        result, _rows = await handlers.release(units(), cart_id, now=now, ttl_s=settings.reservation_ttl_s)
        if result.answer == CartAnswer.UNKNOWN or result.reservation is None:
            raise ApiError(404, "unknown_reservation", result.detail or f"no reservation {cart_id!r}")
        return reservation_out(cart_id, result.reservation, now)

    @get(
        "/reservations/{reservation_id:path}",
        summary="A checkout reservation",
        responses=error_responses(400, 404),
    )
    async def get_reservation(request: Request[Any, Any, Any], state: State, reservation_id: _PathId) -> ReservationOut:
        cart_id = _one_segment(request, "/reservations/", "unknown_reservation")
        reader: InventoryReader = state.reader
        reservation = await reader.cart(cart_id)
        if reservation is None:
            raise ApiError(404, "unknown_reservation", f"no reservation {cart_id!r}")
        return reservation_out(cart_id, reservation, time.time())

    @get(
        "/skus/{sku_path:path}",
        summary="Stock of one SKU, or its ledger",
        description=(
            "`GET /skus/{sku}`: on_hand, reserved, committed, available, backordered (units orders accepted "
            "without stock wait for; never part of available), version (reservations past their TTL "
            "count as released). `GET /skus/{sku}/ledger?after=&limit=`: the SKU's ledger rows, its audit trail, "
            "oldest first. A SKU holding `/` is sent with it encoded (`%2F`)."
        ),
        responses=error_responses(400, 404),
    )
    async def get_sku(
        request: Request[Any, Any, Any],
        state: State,
        sku_path: Annotated[
            Path,
            Parameter(
                description="`{sku}` or `{sku}/ledger`; a `/` inside the SKU is sent encoded (`%2F`)",
                schema_extra={"type": OpenAPIType.STRING, "format": None, "min_length": 1},
            ),
        ],
        after: int = int64_parameter(default=0, ge=0, description="Ledger: rows with a version above this"),
        limit: int = Parameter(default=100, ge=1, le=1000, description="Ledger: at most this many rows"),
    ) -> SkuStock | LedgerPage:
        segments = _segments(request, "/skus/")
        reader: InventoryReader = state.reader
        if len(segments) == 2 and segments[1] == "ledger" and segments[0]:
            sku = _known_shape(segments[0], "unknown_sku")
            entries = await reader.ledger_page(sku, after=after, limit=limit)
            return LedgerPage(
                sku=sku,
                entries=[ledger_entry_out(e) for e in entries],
                next_after=entries[-1].version if len(entries) == limit else None,
            )
        if len(segments) != 1 or not segments[0]:
            raise ApiError(404, "not_found", "expected /skus/{sku} or /skus/{sku}/ledger")
        sku = _known_shape(segments[0], "unknown_sku")
        view = await reader.sku(sku, time.time())
        if view is None:
            raise ApiError(404, "unknown_sku", f"no stock has ever been recorded for {sku!r}")
        return sku_stock(view)

    @get(
        "/orders/{order_id:path}",
        summary="An order's reservation state and the events applied to it",
        description=(
            "Orders are keyed per source: `?source=` names whose order it is; without it, the one source "
            "that has an order of that number (409 `ambiguous_order` when several have)."
        ),
        responses=error_responses(400, 404, 409),
    )
    async def get_order(
        request: Request[Any, Any, Any],
        state: State,
        order_id: _PathId,
        source: str | None = Parameter(
            default=None,
            min_length=1,
            max_length=64,
            pattern=SOURCE_PATTERN.pattern,
            description="The source whose order it is (`[sources.<name>]`)",
        ),
    ) -> OrderOut:
        order = _one_segment(request, "/orders/", "unknown_order")
        reader: InventoryReader = state.reader
        try:
            found = await reader.order_source(order, source)
        except AmbiguousOrder as exc:
            raise ApiError(409, "ambiguous_order", str(exc)) from None
        reservation, events, parked = await reader.order(order, found) if found else (None, [], [])
        if found is None or (reservation is None and not events):
            where = f" from source {source!r}" if source else ""
            raise ApiError(404, "unknown_order", f"no event has named order {order!r}{where}")
        return order_out(
            order,
            found,
            reservation,
            events,
            parked,
            time.time(),
        )

    return [create_reservation, release_reservation, get_reservation, get_sku, get_order]


def _one_segment(request: Request[Any, Any, Any], prefix: str, code: str) -> str:
    segments = _segments(request, prefix)
    if len(segments) != 1 or not segments[0]:
        raise ApiError(404, code, "not found")
    return _known_shape(segments[0], code)


def _known_shape(identifier: str, code: str) -> str:
    """An id or SKU from the path, if it could ever have been stored (events and requests are validated
    the same way); else 404 without asking the store (PostgreSQL refuses NUL in text, for one)."""
    try:
        validate_id(identifier, "id")
    except MalformedEvent:
        raise ApiError(404, code, f"no such id: it must be 1 to {MAX_ID_LENGTH} printable characters") from None
    return identifier


def _cart_response(reservation_id: str, result: CartResult, now: float) -> Response[Any]:
    if result.answer == CartAnswer.SHORT:
        OVERSELL_REJECTIONS.labels("http").inc()
        return Response(
            {
                "error": "insufficient_stock",
                "detail": f"not enough stock: {result.detail}",
                "short": [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in result.shortages],
            },
            status_code=409,
        )
    if result.answer == CartAnswer.CONFLICT:
        return Response({"error": "reservation_exists", "detail": result.detail}, status_code=409)
    assert result.reservation is not None
    status = 201 if result.answer == CartAnswer.CREATED else 200
    return Response(reservation_out(reservation_id, result.reservation, now), status_code=status)
