"""The dead-letter admin API (admin token): list and show what DEADLETTER holds, replay it, discard it.

Inventory serves it because it owns the COMMERCE consumer whose dead letters an operator replays; the work
is :mod:`libs.deadletters`, over the service's own NATS connection (``app.state.nc``).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Router, get, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Reference, Schema
from litestar.params import Parameter
from nats.aio.client import Client

from libs.bus import jetstream
from libs.deadletters import (
    MAX_DISCARD,
    MAX_DISCARD_REASON,
    MAX_LIMIT,
    MAX_REASON_FILTER,
    MAX_REPLAY,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterMessage,
    DeadLetterNotFound,
    DeadLettersUnavailable,
    ReplayReport,
    ReplayResult,
    check_discard_reason,
    discard_deadletters,
    list_deadletters,
    replay_deadletters,
    replay_matching,
    show_deadletter,
)
from libs.http import (
    ADMIN_SECURITY,
    MAX_INT64,
    ApiError,
    SchemaOverrides,
    admin_guard,
    error_responses,
    int64_parameter,
    printable_pattern,
)

__all__ = [
    "DeadLetterDetail",
    "DeadLetterPage",
    "DiscardIn",
    "DiscardOut",
    "ReplayIn",
    "ReplayOut",
    "deadletter_router",
    "deadletter_schemas",
]

MAX_SCAN_PER_REQUEST = 10_000
"""Most DEADLETTER messages one request reads (about 2 s): a longer scan pages on ``next_seq``."""
_DEFAULT_SCAN = 1000
_DISCARDED_BY = "admin"
"""Who a discard record names: the admin token's holder (one token, no user names)."""

# As the library checks them (400 before any of it is used); the patterns let the document say so too.
# Every character Python calls white space (the library's `\s`) is named, each as an escape both the
# document's regex dialect and Python's read the same way.
_SPACE = "".join(f"\\u{code:04x}" for code in range(sys.maxunicode + 1) if chr(code).isspace())
_CONSUMER_PATTERN = rf"^[^.*>{_SPACE}]{{1,256}}$"
_TOKEN = rf"(?:[^.*>{_SPACE}]+|\*)"
_SUBJECT_PATTERN = rf"^(?:{_TOKEN}(?:\.{_TOKEN})*(?:\.>)?|>)$"
_Consumer = Annotated[str, msgspec.Meta(pattern=_CONSUMER_PATTERN, description="The consumer that gave up")]
_Subject = Annotated[
    str,
    msgspec.Meta(
        max_length=1024,
        pattern=_SUBJECT_PATTERN,
        description="The original subject: a NATS filter (`commerce.*.order.>`) or a prefix of whole tokens "
        "(`commerce.shop` takes `commerce.shop` and `commerce.shop.…`)",
    ),
]
_Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_REASON_FILTER, description="A substring of the reason, any case")
]
_Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT64)]
_TIME = "DEADLETTER's timestamp, RFC 3339 with an offset"


class DeadLetterPage(msgspec.Struct, forbid_unknown_fields=True):
    deadletters: list[DeadLetter]
    scanned: int
    next_seq: int | None
    """Where the next page starts (`start_seq`); null once DEADLETTER's last message was read."""
    last_seq: int


@dataclass(frozen=True, slots=True)
class DeadLetterDetail(DeadLetter):
    """A dead letter in full: every stored header, the body as text (null unless UTF-8) and in base64."""

    headers: dict[str, str]
    body: str | None
    body_base64: str

    @classmethod
    def of(cls, message: DeadLetterMessage) -> DeadLetterDetail:
        return cls(**{**message.as_dict(), "time": message.record.time})


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    """Either ``seqs``, or ``all: true`` with the filters of ``GET /deadletters`` (and its paging)."""

    seqs: (
        Annotated[
            list[_Seq],
            msgspec.Meta(
                min_length=1,
                max_length=MAX_REPLAY,
                description="DEADLETTER sequences",
                # Litestar leaves the items' bounds out of the document; msgspec checks them all the same.
                extra_json_schema={"extra": {"items": {"type": "integer", "minimum": 1, "maximum": MAX_INT64}}},
            ),
        ]
        | None
    ) = None
    all: bool = False
    consumer: _Consumer | None = None
    subject: _Subject | None = None
    reason: _Reason | None = None
    since: Annotated[dt.datetime, msgspec.Meta(description=_TIME)] | None = None
    until: Annotated[dt.datetime, msgspec.Meta(description=_TIME)] | None = None
    start_seq: _Seq | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_REPLAY)] | None = None
    scan: Annotated[int, msgspec.Meta(ge=1, le=MAX_SCAN_PER_REQUEST)] | None = None
    dry_run: bool = False


def _replay_schema() -> Schema:
    """:class:`ReplayIn` as the document shows it: ``seqs`` (and no filter or paging), or ``all: true``."""
    integer, string, null = OpenAPIType.INTEGER, OpenAPIType.STRING, OpenAPIType.NULL
    seq = Schema(type=integer, minimum=1, maximum=MAX_INT64)
    time = Schema(one_of=[Schema(type=string, format=OpenAPIFormat.DATE_TIME), Schema(type=null)], description=_TIME)
    seqs = Schema(
        type=OpenAPIType.ARRAY, min_items=1, max_items=MAX_REPLAY, items=seq, description="DEADLETTER sequences"
    )
    selection = {
        "consumer": Schema(type=[string, null], pattern=_CONSUMER_PATTERN, description="The consumer that gave up"),
        "subject": Schema(
            type=[string, null], max_length=1024, pattern=_SUBJECT_PATTERN, description="The original subject"
        ),
        "reason": Schema(
            type=[string, null], min_length=1, max_length=MAX_REASON_FILTER, description="A substring of the reason"
        ),
        "since": time,
        "until": time,
        "start_seq": Schema(type=[integer, null], minimum=1, maximum=MAX_INT64),
        "limit": Schema(type=[integer, null], minimum=1, maximum=MAX_REPLAY),
        "scan": Schema(type=[integer, null], minimum=1, maximum=MAX_SCAN_PER_REQUEST),
    }

    def variant(title: str, required: str, seqs: Schema, all: Schema, selection: dict[str, Schema]) -> Schema:
        dry_run = Schema(type=OpenAPIType.BOOLEAN, default=False)
        properties: dict[str, Schema | Reference] = {"seqs": seqs, "all": all, **selection, "dry_run": dry_run}
        return Schema(
            title=title,
            type=OpenAPIType.OBJECT,
            additional_properties=False,
            required=[required],
            properties=properties,
        )

    no_selection = {name: Schema(type=null) for name in selection}
    by_seqs = variant("ReplaySeqs", "seqs", seqs, Schema(type=OpenAPIType.BOOLEAN, enum=[False]), no_selection)
    by_filters = variant(
        "ReplayAll", "all", Schema(type=null), Schema(type=OpenAPIType.BOOLEAN, enum=[True]), selection
    )
    return Schema(
        one_of=[by_seqs, by_filters],
        description="Either `seqs`, or `all: true` with the filters of `GET /deadletters` (and its paging)",
    )


def deadletter_schemas() -> SchemaOverrides:
    """The document's schema of the replay request, whose fields depend on one another (``oneOf``)."""
    return SchemaOverrides({ReplayIn: _replay_schema()})


class ReplaySummaryOut(msgspec.Struct, forbid_unknown_fields=True):
    replayed: int
    duplicate: int
    would_replay: int
    skipped: int
    failed: int


class ReplayOut(msgspec.Struct, forbid_unknown_fields=True):
    dry_run: bool
    results: list[ReplayResult]
    summary: ReplaySummaryOut
    scanned: int
    next_seq: int | None
    stopped: bool
    """A publish failed and the rest were not tried (replaying again is safe)."""


class DiscardIn(msgspec.Struct, forbid_unknown_fields=True):
    seqs: Annotated[
        list[_Seq],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_DISCARD,
            description="DEADLETTER sequences",
            extra_json_schema={"extra": {"items": {"type": "integer", "minimum": 1, "maximum": MAX_INT64}}},
        ),
    ]
    reason: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_DISCARD_REASON,
            description="Why they are discarded, kept in each record: printable characters, no line breaks "
            "(white space at either end is dropped)",
            # In the document only: the handler checks it, and answers 400 `invalid_discard` saying why.
            extra_json_schema={"extra": {"pattern": printable_pattern(1, MAX_DISCARD_REASON, strip=True)}},
        ),
    ]


class DiscardOut(msgspec.Struct, forbid_unknown_fields=True):
    discarded: list[int]
    """Recorded on `deadletter.discarded.<consumer>`, then deleted from DEADLETTER."""
    missing: list[int]
    """No dead letter there (never stored, discarded already, aged out)."""


def _query(*, format: str | None = None, description: str, **bounds: Any) -> Any:
    """An optional string query parameter, documented as a string (not "string or null") with its bounds."""
    extra = {"one_of": None, "type": OpenAPIType.STRING, **({"format": format} if format else {})}
    return Parameter(default=None, description=description, schema_extra=extra, **bounds)


def _filters(
    consumer: str | None, subject: str | None, reason: str | None, since: dt.datetime | None, until: dt.datetime | None
) -> DeadLetterFilter:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ApiError(400, "invalid_filter", f"'{name}' must carry a UTC offset (e.g. 2026-12-01T10:00:00Z)")
    try:
        return DeadLetterFilter(consumer=consumer, subject=subject, reason=reason, since=since, until=until)
    except ValueError as exc:
        raise ApiError(400, "invalid_filter", str(exc)) from None


def _connection(state: State) -> Client:
    nc: Client | None = state.nc
    if nc is None or not nc.is_connected:
        raise ApiError(503, "unavailable", "not connected to NATS; retry")
    return nc


def _unavailable(exc: DeadLettersUnavailable) -> ApiError:
    return ApiError(503, "unavailable", str(exc))


def _replay_out(report: ReplayReport, dry_run: bool) -> ReplayOut:
    summary = ReplaySummaryOut(**report.counts())
    return ReplayOut(dry_run, report.results, summary, report.scanned, report.next_seq, report.stopped)


_LIST_PARAMETERS = frozenset({"consumer", "subject", "reason", "since", "until", "start_seq", "limit", "scan"})
_S400 = "A value out of its bounds, a filter that can never match, an unknown parameter"
_S503 = "NATS is unavailable, or there is no DEADLETTER stream; retry"
_LIST_DESCRIPTION = (
    "Oldest first, from `start_seq`: at most `limit` dead letters, reading at most `scan` DEADLETTER messages "
    "(the server skips those another consumer or subject left out); go on from `next_seq` while it is not null. "
    "`since` is inclusive, `until` exclusive."
)
_REPLAY_DESCRIPTION = (
    "Publishes each dead letter again to its original subject with the original message's headers, "
    "`Stockwire-Original-Msg-Id` and `Stockwire-Replay-Of: <seq>`, as `Nats-Msg-Id: replay:<seq>:<original id>`. "
    "Per dead letter: `replayed` (its sequence in the original stream), `duplicate` (replayed already, within "
    "the stream's duplicate window), `would_replay` (`dry_run`), `skipped` with why, or `failed` (the call "
    "stops there; running it again is safe). Give `seqs`, or `all: true` with the filters and paging of "
    "`GET /deadletters`."
)

_DISCARD_DESCRIPTION = (
    "Deletes each dead letter from DEADLETTER after recording it there, on `deadletter.discarded.<consumer>`: "
    "its headers (original subject, stream and sequence, why it was dead-lettered), the SHA-256 of its body, "
    "`reason`, who discarded it (`admin`) and when. A sequence holding no dead letter (discarded already, "
    "never stored) is `missing`. The records are kept as long as DEADLETTER keeps messages and are never "
    "listed as dead letters."
)


class DeadLettersController(Controller):
    path = "/deadletters"
    tags = ["deadletters"]

    @get(
        "/",
        summary="Dead letters, with filters",
        description=_LIST_DESCRIPTION,
        responses=error_responses(400, 401, 403, 503, s400=_S400, s503=_S503),
    )
    async def list_deadletters(
        self,
        request: Request[Any, Any, Any],
        state: State,
        consumer: str | None = _query(pattern=_CONSUMER_PATTERN, description="The consumer that gave up"),
        subject: str | None = _query(
            max_length=1024,
            pattern=_SUBJECT_PATTERN,
            description="The original subject: a NATS filter (`commerce.*.order.>`) or a prefix of whole tokens",
        ),
        reason: str | None = _query(
            min_length=1, max_length=MAX_REASON_FILTER, description="A substring of the reason, any case"
        ),
        since: dt.datetime | None = _query(format="date-time", description=f"Stored at or after: {_TIME}"),
        until: dt.datetime | None = _query(format="date-time", description=f"Stored before: {_TIME}"),
        start_seq: int = int64_parameter(default=1, ge=1, description="The DEADLETTER sequence to start at"),
        limit: int = Parameter(default=100, ge=1, le=MAX_LIMIT, description="At most this many dead letters"),
        scan: int = Parameter(
            default=_DEFAULT_SCAN, ge=1, le=MAX_SCAN_PER_REQUEST, description="Read at most this many"
        ),
    ) -> DeadLetterPage:
        # A misspelt filter would otherwise widen the list silently.
        unknown = sorted(set(request.query_params) - _LIST_PARAMETERS)
        if unknown:
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {unknown[0]!r}")
        filters = _filters(consumer, subject, reason, since, until)
        nc = _connection(state)
        try:
            page = await list_deadletters(jetstream(nc), filters, start_seq=start_seq, limit=limit, max_scan=scan)
        except DeadLettersUnavailable as exc:
            raise _unavailable(exc) from None
        return DeadLetterPage(page.records, page.scanned, page.next_seq, page.last_seq)

    @get(
        "/{seq:int}",
        summary="One dead letter: its headers and body",
        responses=error_responses(
            400, 401, 403, 404, 503, s404="No dead letter at that DEADLETTER sequence", s503=_S503
        ),
    )
    async def get_deadletter(
        self, state: State, seq: Annotated[int, int64_parameter(ge=1, description="The DEADLETTER sequence")]
    ) -> DeadLetterDetail:
        nc = _connection(state)
        try:
            message = await show_deadletter(jetstream(nc), seq)
        except DeadLetterNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except DeadLettersUnavailable as exc:
            raise _unavailable(exc) from None
        return DeadLetterDetail.of(message)

    @post(
        "/replay",
        summary="Replay dead letters to their original subject",
        description=_REPLAY_DESCRIPTION,
        status_code=200,
        responses=error_responses(
            400, 401, 403, 413, 503, s400=f"{_S400}; both or neither of `seqs` and `all`", s503=_S503
        ),
    )
    async def replay(self, state: State, data: ReplayIn) -> ReplayOut:
        filters = _filters(data.consumer, data.subject, data.reason, data.since, data.until)
        if (data.seqs is not None) == data.all:
            raise ApiError(400, "invalid_replay", "give 'seqs', or 'all': true (with filters), not both")
        selection = (data.consumer, data.subject, data.reason, data.since, data.until)
        if data.seqs is not None and any(v is not None for v in (*selection, data.start_seq, data.limit, data.scan)):
            raise ApiError(400, "invalid_replay", "filters and paging go with 'all': true, not with 'seqs'")
        nc = _connection(state)
        js = jetstream(nc)
        try:
            if data.seqs is not None:
                report = await replay_deadletters(js, data.seqs, max_payload=nc.max_payload, dry_run=data.dry_run)
            else:
                report = await replay_matching(
                    js,
                    filters,
                    max_payload=nc.max_payload,
                    start_seq=data.start_seq or 1,
                    limit=data.limit or 100,
                    max_scan=data.scan or _DEFAULT_SCAN,
                    dry_run=data.dry_run,
                )
        except DeadLettersUnavailable as exc:
            raise _unavailable(exc) from None
        return _replay_out(report, data.dry_run)

    @post(
        "/discard",
        summary="Discard dead letters, recording why",
        description=_DISCARD_DESCRIPTION,
        status_code=200,
        responses=error_responses(
            400, 401, 403, 413, 503, s400=f"{_S400}; a reason that is not printable characters", s503=_S503
        ),
    )
    async def discard(self, state: State, data: DiscardIn) -> DiscardOut:
        try:
            check_discard_reason(data.reason)
        except ValueError as exc:
            raise ApiError(400, "invalid_discard", str(exc)) from None
        nc = _connection(state)
        try:
            report = await discard_deadletters(jetstream(nc), data.seqs, reason=data.reason, by=_DISCARDED_BY)
        except ValueError as exc:
            raise ApiError(400, "invalid_discard", str(exc)) from None
        except DeadLettersUnavailable as exc:
            raise _unavailable(exc) from None
        return DiscardOut(report.discarded, report.missing)


def deadletter_router(admin_token: str | None) -> Router:
    """``/deadletters`` behind the admin token."""
    return Router(
        path="/", route_handlers=[DeadLettersController], guards=[admin_guard(admin_token)], security=ADMIN_SECURITY
    )
