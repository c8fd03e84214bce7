"""The admin API (design §6), behind the bearer token: channels, their deliveries, retries and replays."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Parameter
from msgspec import UNSET, UnsetType

from libs.bus import check_start_time
from libs.contracts import INVENTORY_KINDS
from libs.http import ADMIN_SECURITY, ApiError, SchemaOverrides, admin_guard, error_responses, int64_parameter
from libs.urlpolicy import DEFAULT_ALLOW_HOSTS, MAX_URL_LENGTH, url_pattern

from .domain.channel import (
    AVAILABILITY,
    CHANNEL_KINDS,
    CHANNEL_NAME_PATTERN,
    MAX_BUFFER,
    MAX_PATTERN_LENGTH,
    MAX_PATTERNS,
    SECRET_PATTERN,
    Channel,
    ChannelError,
    ChannelFilters,
    KindMismatch,
    jetstream_consumer_name,
)
from .domain.outcome import AttemptOutcome
from .domain.pending import DeliveryStatus
from .domain.records import ATTEMPTS_KEPT, DeliveryAttempt, DeliveryRecord
from .registry import ChannelChanges, ChannelRegistry, CreatedChannel, NotFound, Unavailable
from .store import DuplicateChannel

__all__ = [
    "AttemptOut",
    "AttemptsOut",
    "ChannelIn",
    "ChannelList",
    "ChannelOut",
    "ChannelPatch",
    "ChannelReplayOut",
    "DeliveryOut",
    "DeliveryPage",
    "FiltersIn",
    "ReplayIn",
    "admin_router",
    "channel_schemas",
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
    since: Annotated[
        dt.datetime,
        msgspec.Meta(
            description="From when: a time JetStream can start a consumer at, 1677-09-21T00:12:44Z to "
            "2262-04-11T23:47:16Z (else 422 `invalid_since`); without an offset, UTC"
        ),
    ]


_Outcome = Annotated[str, msgspec.Meta(extra_json_schema={"enum": [o.value for o in AttemptOutcome]})]


class AttemptOut(msgspec.Struct, forbid_unknown_fields=True):
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


class AttemptsOut(msgspec.Struct, forbid_unknown_fields=True):
    attempts: list[AttemptOut]
    """Newest first; at most the newest ``ATTEMPTS_KEPT`` of a delivery are kept."""


def _attempts_out(attempts: list[DeliveryAttempt], channel: str) -> list[AttemptOut]:
    return [msgspec.convert(a.as_dict(channel), AttemptOut) for a in attempts]


_STRING, _ARRAY, _NULL = OpenAPIType.STRING, OpenAPIType.ARRAY, OpenAPIType.NULL
_SECRETS_MAX = 16


def _filters_schema(kinds: list[str]) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        additional_properties=False,
        properties={
            "skus": Schema(
                type=_ARRAY,
                max_items=MAX_PATTERNS,
                items=Schema(type=_STRING, min_length=1, max_length=MAX_PATTERN_LENGTH),
                description="Shell-style SKU patterns (case-sensitive); none: every SKU",
            ),
            "kinds": Schema(
                type=_ARRAY,
                min_items=1,
                max_items=16,
                items=Schema(type=_STRING, enum=kinds),
                default=[AVAILABILITY],
            ),
        },
    )


def channel_schemas(allow_hosts: list[str] | tuple[str, ...] = DEFAULT_ALLOW_HOSTS) -> SchemaOverrides:
    """The documents' schemas of :class:`ChannelIn` and :class:`ChannelPatch`: which fields each kind of
    channel takes (``oneOf`` on ``kind``), secrets, filters, and the URLs ``allow_hosts`` lets through
    (:func:`libs.urlpolicy.url_pattern`; where a name resolves is checked when it is registered: 422
    ``url_refused``)."""
    name = Schema(type=_STRING, pattern=CHANNEL_NAME_PATTERN.pattern)
    url = Schema(
        type=_STRING,
        max_length=MAX_URL_LENGTH,
        pattern=url_pattern(allow_hosts),
        description="https, or http to a host on `allow_hosts`; a name must resolve to a global address only "
        "(else 422 `url_refused`)",
    )
    secret = Schema(type=_STRING, pattern=SECRET_PATTERN, description="`whsec_` and base64 of 24 to 64 bytes")
    # An empty secret counts as none given.
    optional_secret = Schema(
        type=[_STRING, _NULL], pattern=f"^$|{SECRET_PATTERN}", description="`whsec_` and base64 of 24 to 64 bytes"
    )
    secrets = Schema(type=_ARRAY, max_items=_SECRETS_MAX, items=secret)
    enabled = Schema(type=OpenAPIType.BOOLEAN, default=True)
    webhook = Schema(
        title="WebhookChannelIn",
        type=OpenAPIType.OBJECT,
        additional_properties=False,
        required=["name", "url"],
        description="Availability changes POSTed to `url`, signed with its secrets (one is generated when "
        "none is given, and answered once)",
        properties={
            "name": name,
            "kind": Schema(type=_STRING, enum=["webhook"], default="webhook"),
            "url": url,
            "secret": optional_secret,
            "secrets": secrets,
            "filters": Schema(one_of=[_filters_schema([AVAILABILITY]), Schema(type=_NULL)]),
            "buffer": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_BUFFER, default=0),
            "enabled": enabled,
        },
    )
    jetstream = Schema(
        title="JetStreamChannelIn",
        type=OpenAPIType.OBJECT,
        additional_properties=False,
        required=["name", "kind"],
        description="A durable consumer on INVENTORY that the channel pulls itself: no URL, secret or buffer",
        properties={
            "name": name,
            "kind": Schema(type=_STRING, enum=["jetstream"]),
            "url": Schema(type=[_STRING, _NULL], max_length=0),
            "secret": Schema(type=[_STRING, _NULL], max_length=0),
            "secrets": Schema(type=_ARRAY, max_items=0),
            "filters": Schema(one_of=[_filters_schema(list(INVENTORY_KINDS)), Schema(type=_NULL)]),
            "buffer": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=0, default=0),
            "enabled": enabled,
        },
    )
    channel_in = Schema(one_of=[webhook, jetstream], description="A webhook channel, or a jetstream channel")
    patch = Schema(
        type=OpenAPIType.OBJECT,
        additional_properties=False,
        description="What to change. A change the channel's kind cannot take (a jetstream channel's URL, "
        "secrets or buffer; a webhook channel's ledger kinds) is answered 409 `kind_mismatch`.",
        properties={
            "url": Schema(one_of=[url, Schema(type=_NULL)]),
            "secrets": Schema(
                type=[_ARRAY, _NULL],
                max_items=_SECRETS_MAX,
                items=secret,
                description="Replaces every secret (rotation: list the new and the old one, later drop the old one)",
            ),
            "generate_secret": Schema(
                type=OpenAPIType.BOOLEAN,
                default=False,
                description="Add a newly generated secret in front of the others; the answer carries it once",
            ),
            "filters": Schema(one_of=[_filters_schema(list(INVENTORY_KINDS)), Schema(type=_NULL)]),
            "buffer": Schema(type=[OpenAPIType.INTEGER, _NULL], minimum=0, maximum=MAX_BUFFER),
            "enabled": Schema(type=[OpenAPIType.BOOLEAN, _NULL]),
        },
        # A webhook channel keeps at least one secret: an empty list only with a generated one.
        any_of=[
            Schema(required=["generate_secret"], properties={"generate_secret": Schema(const=True)}),
            Schema(properties={"secrets": Schema(min_items=1)}),
        ],
    )
    return SchemaOverrides({ChannelIn: channel_in, ChannelPatch: patch})


class FiltersOut(msgspec.Struct, forbid_unknown_fields=True):
    skus: list[str]
    kinds: list[str]


class ConsumerOut(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    durable: str


class ChannelOut(msgspec.Struct, forbid_unknown_fields=True):
    """A channel as the API shows it: a webhook channel counts its secrets (never shows them), a jetstream
    channel names its consumer; ``secret`` is a newly generated one, in the answer that made it only."""

    name: str
    kind: Literal["webhook", "jetstream"]
    url: str | None
    filters: FiltersOut
    buffer: int
    enabled: bool
    disabled_reason: str | None
    created_at: float
    updated_at: float
    secrets: int | UnsetType = UNSET
    consumer: ConsumerOut | UnsetType = UNSET
    secret: str | UnsetType = UNSET


class ChannelList(msgspec.Struct, forbid_unknown_fields=True):
    channels: list[ChannelOut]


class DeliveryOut(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    sku: str
    version: int
    delivered_version: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    """When the next attempt is due, while pending."""
    pending_since: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    updated_at: float
    recent_attempts: list[AttemptOut] | UnsetType = UNSET
    """With ``attempts=N``: the delivery's newest attempts, newest first."""


class DeliveryPage(msgspec.Struct, forbid_unknown_fields=True):
    deliveries: list[DeliveryOut]
    next_after_id: int | None
    """Where the next page starts (``after_id``); null on the last page."""


class ChannelReplayOut(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    since: str
    messages: int
    """INVENTORY messages read (0 for a jetstream channel: its consumer starts again at ``since``)."""
    skus: int
    """SKUs sent again, each at its newest version."""


def channel_view(channel: Channel, generated_secret: str | None = None) -> ChannelOut:
    """``channel`` as the API shows it, with ``generated_secret`` when one was just made."""
    view = ChannelOut(
        name=channel.name,
        kind=channel.kind,  # type: ignore[arg-type]
        url=channel.url,
        filters=FiltersOut(list(channel.filters.skus), list(channel.filters.kinds)),
        buffer=channel.buffer,
        enabled=channel.enabled,
        disabled_reason=channel.disabled_reason,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )
    if channel.is_webhook:
        view.secrets = len(channel.secrets)  # how many, never which
    else:
        view.consumer = ConsumerOut("INVENTORY", jetstream_consumer_name(channel.name))
    if generated_secret:
        view.secret = generated_secret
    return view


def _delivery(record: DeliveryRecord) -> DeliveryOut:
    return msgspec.convert(record.as_dict(), DeliveryOut)


def _registry(state: State) -> ChannelRegistry:
    return state.runtime.registry  # type: ignore[no-any-return]


def _known(name: str) -> str:
    """A channel name from the path, if it could name a channel; else 404 without asking the store."""
    if not CHANNEL_NAME_PATTERN.fullmatch(name):
        raise ApiError(404, "not_found", "no such channel: a name is 1-64 characters of [a-z0-9_-]")
    return name


def _translate(exc: Exception, *, stored: bool = False) -> ApiError:
    """``exc`` as the API's answer; ``stored``: a change to a stored channel, where a value its kind cannot
    take conflicts with what is stored (409) rather than with the rest of the request (422)."""
    if stored and isinstance(exc, KindMismatch):
        return ApiError(409, "kind_mismatch", exc.detail, **exc.extra)
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


def _created(result: CreatedChannel, status: int) -> Response[ChannelOut]:
    return Response(channel_view(result.channel, result.generated_secret), status_code=status)


class ChannelsController(Controller):
    path = "/channels"
    tags = ["channels"]

    @post(
        "/", summary="Register a channel", status_code=201, responses=error_responses(400, 401, 403, 409, 413, 422, 503)
    )
    async def create_channel(self, state: State, data: ChannelIn) -> Response[ChannelOut]:
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
    async def list_channels(self, state: State) -> ChannelList:
        channels = await _registry(state).uow.run(lambda tx: tx.channels())
        return ChannelList([channel_view(c) for c in channels])

    @get("/{name:str}", summary="One channel", responses=error_responses(400, 401, 403, 404, 503))
    async def get_channel(self, state: State, name: _ChannelName) -> ChannelOut:
        try:
            return channel_view(await _registry(state).get(_known(name)))
        except _EXPECTED as exc:
            raise _translate(exc) from None

    @patch(
        "/{name:str}",
        summary="Change a channel (url, secrets, filters, buffer, enabled)",
        responses=error_responses(
            400, 401, 403, 404, 409, 413, 422, 503, s409="The channel's kind cannot take the change (`kind_mismatch`)"
        ),
    )
    async def update_channel(self, state: State, name: _ChannelName, data: ChannelPatch) -> Response[ChannelOut]:
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
            raise _translate(exc, stored=True) from None
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
    ) -> DeliveryPage:
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise ApiError(400, "invalid_status", f"status must be one of {', '.join(s.value for s in DeliveryStatus)}")
        try:
            records, kept = await _registry(state).deliveries(_known(name), status, limit, after_id, attempts)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        views = [_delivery(r) for r in records]
        if attempts:
            for view in views:
                view.recent_attempts = _attempts_out(kept.get(view.id, []), name)
        return DeliveryPage(views, records[-1].id if len(records) == limit else None)

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
    async def replay_channel(self, state: State, name: _ChannelName, data: ReplayIn) -> ChannelReplayOut:
        try:
            since = check_start_time(data.since)
        except ValueError as exc:
            raise ApiError(422, "invalid_since", f"since: {exc}") from None
        try:
            counts = await _registry(state).replay(_known(name), since)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return ChannelReplayOut(name, since.isoformat(), counts["messages"], counts["skus"])


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
    ) -> DeliveryOut:
        try:
            record = await _registry(state).retry(delivery_id)
        except _EXPECTED as exc:
            raise _translate(exc) from None
        return _delivery(record)


def admin_router(token: str | None) -> Router:
    return Router(
        path="/",
        route_handlers=[ChannelsController, DeliveriesController],
        guards=[admin_guard(token)],
        security=ADMIN_SECURITY,
    )
