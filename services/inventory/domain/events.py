"""Inbound events: the webhook bodies of COMMERCE, read into small typed records.

The bus carries the raw webhook body (design §3): Commerce Engine's ``{"id", "event_type", "created_at",
"data"}`` or Standard Webhooks' ``{"type", "timestamp", "data"}``. Type and id come from the headers
ingress sets; the body gives the ``data`` and the producer's timestamp. :func:`parse_event` either
returns a :class:`CommerceEvent` or raises :class:`MalformedEvent` ``malformed: <field>: <why>``.

This is the parse boundary: whatever goes wrong while reading an event (a wrong type, a number out of
range, a time no calendar holds, nesting too deep, an error nobody foresaw) becomes that one
:class:`MalformedEvent`, so the event is dead-lettered at once and its neighbours in the batch are not
held up. A value is refused here when it could never apply later: quantities outside ``0..MAX_QTY``,
times outside ``MIN_EPOCH..MAX_EPOCH`` (what a ledger row's ISO time can show).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from libs.contracts import HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_SOURCE, commerce_msg_id

__all__ = [
    "HANDLED_EVENT_TYPES",
    "MAX_EPOCH",
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_LINES",
    "MAX_MSG_ID_LENGTH",
    "MAX_QTY",
    "MAX_SUBJECT_LENGTH",
    "MIN_EPOCH",
    "Adjusted",
    "CommerceEvent",
    "Envelope",
    "Line",
    "MalformedEvent",
    "OrderCancelled",
    "OrderCreated",
    "OrderEvent",
    "Payload",
    "PaymentFailed",
    "PaymentSucceeded",
    "Received",
    "ReturnLine",
    "ReturnReceived",
    "Shipped",
    "Unhandled",
    "parse_event",
    "parse_timestamp",
    "summed_lines",
    "validate_id",
    "validate_sku",
]

MAX_QTY = 1_000_000_000
MAX_LINES = 500
MAX_ID_LENGTH = 200
MAX_TIME_LENGTH = 64
"""An ISO 8601 time with every option spelt out is about 35 characters."""
MIN_EPOCH = 0.0
MAX_EPOCH = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
"""Epoch seconds a ledger row can show as an ISO time (``datetime`` stops at year 9999)."""
_ID_INT_LIMIT = 10**MAX_ID_LENGTH
# What the inbox keeps of a message (its column sizes): ingress stays well inside them, but COMMERCE
# takes whatever a publisher with credentials sends.
MAX_MSG_ID_LENGTH = 600
MAX_EVENT_TYPE_LENGTH = 128
MAX_SUBJECT_LENGTH = 512



class MalformedEvent(ValueError):
    """The event can never be applied as it is (not JSON, a field missing, of the wrong type or out of range).

    ``field`` names what is wrong (``qty``, ``lines[2].sku``, ``created_at``; ``body`` or ``data`` for the
    document as a whole) and ``reason`` says why. ``str()`` is ``'<field>' <reason>``, or, raised by
    :func:`parse_event` (``decided``), the dead-letter reason ``malformed: <field>: <reason>``.
    """

    def __init__(self, reason: str, field: str = "", *, decided: bool = False) -> None:
        plain = f"'{field}' {reason}" if field else reason
        super().__init__(f"malformed: {field or 'body'}: {reason}" if decided else plain)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message of COMMERCE as the consumer received it (or as a test builds it)."""

    subject: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    stream_seq: int = 0

    @property
    def msg_id(self) -> str:
        """The inbox key: ``Nats-Msg-Id`` (``<source>:<id>``), else built from the other headers.

        A key longer than the inbox keeps (or holding NUL, which PostgreSQL text refuses) is replaced
        by its digest, ``sha256:<hex>``: the same message still maps to the same key, so a redelivery
        stays a duplicate.
        """
        key = self._key()
        if len(key) <= MAX_MSG_ID_LENGTH and "\x00" not in key:
            return key
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    def _key(self) -> str:
        msg_id = self.headers.get(HEADER_MSG_ID)
        if msg_id:
            return msg_id
        source, event_id = self.headers.get(HEADER_SOURCE), self.headers.get(HEADER_EVENT_ID)
        if source and event_id:
            return commerce_msg_id(source, event_id)
        return f"{self.subject}#{self.stream_seq}"

    @property
    def event_type(self) -> str:
        declared = self.headers.get(HEADER_EVENT_TYPE)
        if declared:
            return declared
        # commerce.<source>.<event_type...>
        parts = self.subject.split(".", 2)
        return parts[2] if len(parts) == 3 else ""


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class ReturnLine:
    sku: str
    qty: int
    restock: bool


@dataclass(frozen=True, slots=True)
class Received:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class Adjusted:
    """Either a ``delta`` or an absolute count ``on_hand`` taken at ``counted_at`` (epoch seconds)."""

    sku: str
    delta: int | None = None
    on_hand: int | None = None
    counted_at: float | None = None


@dataclass(frozen=True, slots=True)
class OrderCreated:
    order_id: str
    lines: tuple[Line, ...]
    reservation_id: str | None = None
    """A checkout reservation (``POST /reservations``) the order takes over, if it still holds."""


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    order_id: str


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    order_id: str


@dataclass(frozen=True, slots=True)
class Shipped:
    order_id: str


@dataclass(frozen=True, slots=True)
class ReturnReceived:
    order_id: str
    lines: tuple[ReturnLine, ...]


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A type inventory does not act on: it stays in COMMERCE for the audit, and is acknowledged."""


OrderEvent = OrderCreated | PaymentSucceeded | PaymentFailed | OrderCancelled | Shipped | ReturnReceived
Payload = Received | Adjusted | OrderEvent | Unhandled


@dataclass(frozen=True, slots=True)
class CommerceEvent:
    msg_id: str
    event_type: str
    payload: Payload
    stream_seq: int = 0
    source_ts: float = 0.0
    """The producer's timestamp (epoch seconds; 0 when absent): it orders one order's parked events."""
    envelope: Envelope | None = None

    @property
    def order_id(self) -> str | None:
        return getattr(self.payload, "order_id", None)

    @property
    def skus(self) -> frozenset[str]:
        """The SKUs the event names itself (an order's later events name none: the order knows them)."""
        payload = self.payload
        if isinstance(payload, Received | Adjusted):
            return frozenset((payload.sku,))
        if isinstance(payload, OrderCreated | ReturnReceived):
            return frozenset(line.sku for line in payload.lines)
        return frozenset()


_decoder = msgspec.json.Decoder()


def parse_timestamp(value: object) -> float | None:
    """ISO 8601 (``Z`` allowed) or epoch seconds → epoch seconds in ``MIN_EPOCH..MAX_EPOCH``.

    None when absent, unreadable or out of that range; never raises (a 400-digit integer, ``1e20``,
    ``"nan"`` and year-0 offsets included).
    """
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            # Compared as an integer first: float() of a huge one raises OverflowError.
            epoch = float(value) if MIN_EPOCH <= value <= MAX_EPOCH else math.nan
        elif isinstance(value, float):
            epoch = value
        elif isinstance(value, str) and 0 < len(value) <= MAX_TIME_LENGTH:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            epoch = parsed.timestamp()
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return epoch if math.isfinite(epoch) and MIN_EPOCH <= epoch <= MAX_EPOCH else None


@contextmanager
def _reading(name: str) -> Iterator[None]:
    """Whatever fails while reading field ``name`` makes the event malformed, naming that field."""
    try:
        yield
    except MalformedEvent as exc:
        if not exc.field:
            exc.field = name
        raise
    except Exception as exc:
        raise MalformedEvent(f"cannot be read ({_failure(exc)})", name) from None


def _failure(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    # The message may echo the input: clipped, and printable only (PostgreSQL text refuses NUL).
    text = "".join(c if c.isprintable() else "?" for c in text[:80])
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _time(value: object, name: str) -> float | None:
    """A time that is present must be readable and in range; None (absent) stays None."""
    with _reading(name):
        if value is None:
            return None
        epoch = parse_timestamp(value)
        if epoch is None:
            raise MalformedEvent("must be an ISO 8601 time or epoch seconds between 1970-01-01 and 9999-12-31", name)
        return epoch


def validate_id(value: object, name: str) -> str:
    with _reading(name):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MalformedEvent("must be a string", name)
        if isinstance(value, int) and not -_ID_INT_LIMIT < value < _ID_INT_LIMIT:
            raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
        text = str(value)
        if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
            raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
        return text


def validate_sku(value: object, name: str = "sku") -> str:
    with _reading(name):
        if not isinstance(value, str):
            raise MalformedEvent("must be a string", name)
        if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
            raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
        return value


def _int(value: object, name: str, *, minimum: int, maximum: int = MAX_QTY) -> int:
    with _reading(name):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedEvent(f"must be an integer between {minimum} and {maximum}", name)
        if not minimum <= value <= maximum:
            # The value is not echoed: it may have thousands of digits.
            raise MalformedEvent(f"must be between {minimum} and {maximum}", name)
        return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedEvent("must be true or false", name)
    return value


def _lines(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise MalformedEvent("must be a non-empty list", "lines")
    if len(lines) > MAX_LINES:
        raise MalformedEvent(f"holds {len(lines)} lines, over the limit of {MAX_LINES}", "lines")
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise MalformedEvent("every line must be an object {sku, qty}", f"lines[{i}]")
    return lines


def _order_lines(data: Mapping[str, Any]) -> tuple[Line, ...]:
    return tuple(
        Line(validate_sku(line.get("sku"), f"lines[{i}].sku"), _int(line.get("qty"), f"lines[{i}].qty", minimum=1))
        for i, line in enumerate(_lines(data))
    )


def _return_lines(data: Mapping[str, Any]) -> tuple[ReturnLine, ...]:
    # Restocking is opt-in: a returned item is only sellable again when the return says so.
    default = _flag(data.get("restock", False), "restock")
    out = []
    for i, line in enumerate(_lines(data)):
        restock = _flag(line.get("restock", default), f"lines[{i}].restock")
        sku = validate_sku(line.get("sku"), f"lines[{i}].sku")
        out.append(ReturnLine(sku, _int(line.get("qty"), f"lines[{i}].qty", minimum=1), restock))
    return tuple(out)


def _adjusted(data: Mapping[str, Any], source_ts: float) -> Adjusted:
    sku = validate_sku(data.get("sku"))
    if "delta" in data and "on_hand" in data:
        raise MalformedEvent("an adjustment carries either 'delta' or 'on_hand', not both", "data")
    if "delta" in data:
        return Adjusted(sku, delta=_int(data["delta"], "delta", minimum=-MAX_QTY))
    if "on_hand" in data:
        counted_at = _time(data.get("counted_at"), "counted_at")
        return Adjusted(sku, on_hand=_int(data["on_hand"], "on_hand", minimum=0), counted_at=counted_at or source_ts)
    raise MalformedEvent("an adjustment needs 'delta' or 'on_hand'", "data")


def _order_id(data: Mapping[str, Any]) -> str:
    return validate_id(data.get("order_id"), "order_id")


def _payload(event_type: str, data: Mapping[str, Any], source_ts: float) -> Payload:
    if event_type == "inventory.received":
        return Received(validate_sku(data.get("sku")), _int(data.get("qty"), "qty", minimum=1))
    if event_type == "inventory.adjusted":
        return _adjusted(data, source_ts)
    if event_type == "order.created":
        reservation = data.get("reservation_id")
        return OrderCreated(
            _order_id(data),
            _order_lines(data),
            None if reservation is None else validate_id(reservation, "reservation_id"),
        )
    if event_type in ("payment.successful", "payment.captured"):
        return PaymentSucceeded(_order_id(data))
    if event_type == "payment.failed":
        return PaymentFailed(_order_id(data))
    if event_type == "order.cancelled":
        return OrderCancelled(_order_id(data))
    if event_type in ("shipment.shipped", "order.fulfilled"):
        return Shipped(_order_id(data))
    if event_type == "return.received":
        return ReturnReceived(_order_id(data), _return_lines(data))
    return Unhandled()


HANDLED_EVENT_TYPES = frozenset(
    {
        "inventory.received",
        "inventory.adjusted",
        "order.created",
        "payment.successful",
        "payment.captured",
        "payment.failed",
        "order.cancelled",
        "shipment.shipped",
        "order.fulfilled",
        "return.received",
    }
)


def parse_event(envelope: Envelope) -> CommerceEvent:
    """Read one COMMERCE message.

    Raises :class:`MalformedEvent` (``str()``: ``malformed: <field>: <why>``) when it can never be
    applied, and nothing else, whatever the body holds.
    """
    try:
        return _parse(envelope)
    except MalformedEvent as exc:
        raise MalformedEvent(exc.reason, exc.field or "body", decided=True) from None
    except Exception as exc:
        # A failure no check above foresaw is still this event's alone.
        raise MalformedEvent(f"cannot be read ({_failure(exc)})", "body", decided=True) from None


def _parse(envelope: Envelope) -> CommerceEvent:
    event_type = envelope.event_type
    msg_id = envelope.msg_id
    if event_type not in HANDLED_EVENT_TYPES:
        return CommerceEvent(msg_id, event_type, Unhandled(), envelope.stream_seq, 0.0, envelope)
    if len(envelope.subject) > MAX_SUBJECT_LENGTH:
        # A parked event is kept with its subject; one that could not be kept can never wait its turn.
        raise MalformedEvent(f"longer than {MAX_SUBJECT_LENGTH} characters", "subject")
    try:
        document = _decoder.decode(envelope.body)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"not valid JSON ({_failure(exc)})", "body") from None
    except RecursionError:
        raise MalformedEvent("not valid JSON (nested too deeply)", "body") from None
    if not isinstance(document, dict):
        raise MalformedEvent("must be a JSON object", "body")
    data = document.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("must be an object", "data")
    # Commerce Engine stamps ``created_at``; a Standard Webhooks body carries ``timestamp``.
    stamp = "created_at" if "created_at" in document else "timestamp"
    source_ts = _time(document.get(stamp), stamp) or 0.0
    payload = _payload(event_type, data, source_ts)
    return CommerceEvent(msg_id, event_type, payload, envelope.stream_seq, source_ts, envelope)


def summed_lines(lines: tuple[Line, ...] | list[Line]) -> dict[str, int]:
    """Quantities per SKU, lines naming the same SKU added up, in SKU order."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.sku] = out.get(line.sku, 0) + line.qty
    return dict(sorted(out.items()))
