"""The admin API (design §6), behind the bearer token: channels, their deliveries, retries and replays."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIType
from litestar.params import Parameter

from libs.http import ADMIN_SECURITY, ApiError, admin_guard, error_responses, int64_parameter
from libs.urlpolicy import MAX_URL_LENGTH

from .domain.channel import (
    CHANNEL_KINDS,
    CHANNEL_NAME_PATTERN,
    MAX_BUFFER,
    Channel,
    ChannelError,
    ChannelFilters,
    jetstream_consumer_name,
)
from .domain.outcome import AttemptOutcome
from .domain.pending import DeliveryStatus
from .domain.records import ATTEMPTS_KEPT, DeliveryAttempt
from .registry import ChannelChanges, ChannelRegistry, CreatedChannel, NotFound, Unavailable
from .store import DuplicateChannel

__all__ = [
    "AttemptOut",
    "AttemptsOut",
    "ChannelIn",
    "ChannelPatch",
    "FiltersIn",
    "ReplayIn",
    "admin_router",
    "channel_view",
]

_MAX_PAGE = 1000

# Every string and list bounded where it enters, a 400 naming the field before any of it is used; the
# domain checks what the values mean (and the range of numbers, 422).
_Text = Annotated[str, msgspec.Meta(max_length=256)]
_Secrets = Annotated[list[_Text], msgspec.Meta(max_length=16)]
_Url = Annotated[str, msgspec.Meta(max_length=MAX_URL_LENGTH)]


class FiltersIn(msgspec.Struct, forbid_unknown_fields=True):
    skus: Annotated[list[_Text], msgspec.Meta(max_length=1024)] = []
    kinds: Annotated[list[_Text], msgspec.Meta(max_length=16)] = msgspec.field(default_factory=lambda: ["availability"])

    def build(self) -> ChannelFilters:
        return ChannelFilters.build(self.skus, self.kinds)


def _documented(**schema: Any) -> msgspec.Meta:
    """Bounds for the OpenAPI document only (Litestar reads ``extra_json_schema["extra"]``): the domain
    checks them and answers 422 naming the rule, where msgspec would answer a bare 400."""
    return msgspec.Meta(extra_json_schema={"extra": schema})


_Name = Annotated[_Text, _documented(pattern=CHANNEL_NAME_PATTERN.pattern)]
_Kind = Annotated[_Text, _documented(enum=list(CHANNEL_KINDS))]
_Buffer = Annotated[int, _documented(minimum=0, maximum=MAX_BUFFER)]


# A path name that does not match is answered 404 (no channel can have it).
_ChannelName = Annotated[
    str, Parameter(description="A channel name", schema_extra={"pattern": CHANNEL_NAME_PATTERN.pattern})
]
_STATUSES = [s.value for s in DeliveryStatus]


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: _Name
    kind: _Kind = "webhook"
    url: _Url | None = None
    secret: _Text | None = None
    secrets: _Secrets = []
    filters: FiltersIn | None = None
    buffer: _Buffer = 0
    enabled: bool = True


class ChannelPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: _Url | None = None
    secrets: _Secrets | None = None
    """Replaces every secret (rotation: list the new and the old one, later drop the old one)."""
    generate_secret: bool = False
    """Add a newly generated secret in front of the others; the answer carries it once."""
    filters: FiltersIn | None = None
    buffer: _Buffer | None = None
    enabled: bool | None = None


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    since: dt.datetime


_Outcome = Annotated[str, msgspec.Meta(extra_json_schema={"enum": [o.value for o in AttemptOutcome]})]


class AttemptOut(msgspec.Struct):
    """One kept attempt of a delivery: never its request's headers, signature or the channel's secrets."""

    delivery_id: int
    channel: str
    seq: Annotated[int, msgspec.Meta(ge=1, description="The row's attempts ever, this one included")]
    attempt: Annotated[int, msgspec.Meta(ge=1, description="The attempt's number in its delivery's current run")]
    started_at: Annotated[float, msgspec.Meta(description="Unix time the request began")]
    status_code: int | None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)]
    error: str | None
    outcome: _Outcome


class AttemptsOut(msgspec.Struct):
    attempts: list[AttemptOut]
    """Newest first; at most the newest ``ATTEMPTS_KEPT`` of a delivery are kept."""


def _attempts_out(attempts: list[DeliveryAttempt], channel: str) -> list[AttemptOut]:
    return [msgspec.convert(a.as_dict(channel), AttemptOut) for a in attempts]


def channel_view(channel: Channel, generated_secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "filters": channel.filters.as_dict(),
        "buffer": channel.buffer,
        "enabled": channel.enabled,
        "disabled_reason": channel.disabled_reason,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }
    if channel.is_webhook:
        view["secrets"] = len(channel.secrets)  # how many, never which
    else:
        view["consumer"] = {"stream": "INVENTORY", "durable": jetstream_consumer_name(channel.name)}
    if generated_secret:
        view["secret"] = generated_secret
    return view


def _registry(state: State) -> ChannelRegistry:
    return state.runtime.registry  # type: ignore[no-any-return]


def _known(name: str) -> str:
    """A channel name from the path, if it could name a channel; else 404 without asking the store."""
    if not CHANNEL_NAME_PATTERN.fullmatch(name):
        raise ApiError(404, "not_found", "no such channel: a name is 1-64 characters of [a-z0-9_-]")
    return name


def _translate(exc: Exception) -> ApiError:
    if isinstance(exc, ChannelError):
        return ApiError(422, exc.code, exc.detail, **exc.extra)
    if isinstance(exc, DuplicateChannel):
        return ApiError(409, "channel_exists", f"a channel named {exc} already exists")
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", f"{exc} does not exist")
    if isinstance(exc, Unavailable):
        return ApiError(503, "unavailable", str(exc))
    raise exc


_EXPECTED = (ChannelError, DuplicateChannel, NotFound, Unavailable)


def _created(result: CreatedChannel, status: int) -> Response[dict[str, Any]]:
    return Response(channel_view(result.channel, result.generated_secret), status_code=status)


class ChannelsController(Controller):
    path = "/channels"
    tags = ["channels"]

    @post(
        "/", summary="Register a channel", status_code=201, responses=error_responses(400, 401, 403, 409, 413, 422, 503)
    )
    async def create_channel(self, state: State, data: ChannelIn) -> Response[dict[str, Any]]:
        try:
            filters = (data.filters or FiltersIn()).build()
            result = await _registry(state).create(
                name=data.name,
                kind=data.kind,
                url=data.url,
                secrets=[*([data.secret] if data.secret else []), *data.secrets],
                filters=filters,
                buffer=data.buffer,
                enabled=data.enabled,
            )
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return _created(result, 201)

    @get("/", summary="List channels", responses=error_responses(401, 403))
    async def list_channels(self, state: State) -> dict[str, Any]:
        channels = await _registry(state).uow.run(lambda tx: tx.channels())
        return {"channels": [channel_view(c) for c in channels]}

    @get("/{name:str}", summary="One channel", responses=error_responses(400, 401, 403, 404, 503))
    async def get_channel(self, state: State, name: _ChannelName) -> dict[str, Any]:
        try:
            return channel_view(await _registry(state).get(_known(name)))
        except _EXPECTED as exc:
            raise _translate(exc) from None

    @patch(
        "/{name:str}",
        summary="Change a channel (url, secrets, filters, buffer, enabled)",
        responses=error_responses(400, 401, 403, 404, 413, 422, 503),
    )
    async def update_channel(self, state: State, name: _ChannelName, data: ChannelPatch) -> Response[dict[str, Any]]:
        try:
            changes = ChannelChanges(
                url=data.url,
                secrets=data.secrets,
                generate_secret=data.generate_secret,
                filters=data.filters.build() if data.filters is not None else None,
                buffer=data.buffer,
                enabled=data.enabled,
            )
            result = await _registry(state).update(_known(name), changes)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return _created(result, 200)

    @delete(
        "/{name:str}",
        summary="Delete a channel (and a jetstream channel's consumer)",
        status_code=204,
        responses=error_responses(400, 401, 403, 404, 503),
    )
    async def delete_channel(self, state: State, name: _ChannelName) -> None:
        try:
            await _registry(state).delete(_known(name))
        except _EXPECTED as exc:
            raise _translate(exc) from None

    @get(
        "/{name:str}/deliveries",
        summary="A channel's deliveries (one per SKU), by status",
        responses=error_responses(400, 401, 403, 404, 503),
    )
    async def list_deliveries(
        self,
        state: State,
        name: _ChannelName,
        status: str | None = Parameter(
            default=None, schema_extra={"one_of": None, "type": OpenAPIType.STRING, "enum": _STATUSES}
        ),
        limit: int = Parameter(default=100, ge=1, le=_MAX_PAGE),
        after_id: int = int64_parameter(default=0, ge=0),
        attempts: int = Parameter(
            default=0,
            ge=0,
            le=ATTEMPTS_KEPT,
            description="Embed each delivery's newest attempts, this many, as `recent_attempts` (0: none)",
        ),
    ) -> dict[str, Any]:
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise ApiError(400, "invalid_status", f"status must be one of {', '.join(s.value for s in DeliveryStatus)}")
        try:
            records, kept = await _registry(state).deliveries(_known(name), status, limit, after_id, attempts)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        views = [r.as_dict() for r in records]
        if attempts:
            for view in views:
                view["recent_attempts"] = [a.as_dict(name) for a in kept.get(view["id"], [])]
        return {"deliveries": views, "next_after_id": records[-1].id if len(records) == limit else None}

    @get(
        "/{name:str}/deliveries/{delivery_id:int}/attempts",
        summary="A delivery's attempts, newest first (the newest kept)",
        responses=error_responses(400, 401, 403, 404, 503),
    )
    async def list_attempts(
        self,
        state: State,
        name: _ChannelName,
        delivery_id: Annotated[int, int64_parameter(ge=1)],
        limit: int = Parameter(default=ATTEMPTS_KEPT, ge=1, le=ATTEMPTS_KEPT),
    ) -> AttemptsOut:
        try:
            found = await _registry(state).attempts(_known(name), delivery_id, limit)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return AttemptsOut(attempts=_attempts_out(found, name))

    @post(
        "/{name:str}/replay",
        summary="Send again what changed since a point in time",
        status_code=202,
        responses=error_responses(400, 401, 403, 404, 413, 422, 503),
    )
    async def replay_channel(self, state: State, name: _ChannelName, data: ReplayIn) -> dict[str, Any]:
        since = data.since if data.since.tzinfo else data.since.replace(tzinfo=dt.UTC)
        try:
            counts = await _registry(state).replay(_known(name), since)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return {"channel": name, "since": since.isoformat(), **counts}


class DeliveriesController(Controller):
    path = "/deliveries"
    tags = ["deliveries"]

    @post(
        "/{delivery_id:int}/retry",
        summary="Send one delivery again, from a fresh schedule",
        status_code=202,
        responses=error_responses(400, 401, 403, 404, 422, 503),
    )
    async def retry_delivery(
        self,
        state: State,
        delivery_id: Annotated[int, int64_parameter(ge=1)],
    ) -> dict[str, Any]:
        try:
            record = await _registry(state).retry(delivery_id)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return record.as_dict()


def admin_router(token: str | None) -> Router:
    return Router(
        path="/",
        route_handlers=[ChannelsController, DeliveriesController],
        guards=[admin_guard(token)],
        security=ADMIN_SECURITY,
    )
