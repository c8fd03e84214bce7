"""Inbound events: the webhook bodies of COMMERCE, read into small typed records.

The bus carries the raw webhook body (design §3): Commerce Engine's ``{"id", "event_type", "created_at",
"data"}`` or Standard Webhooks' ``{"type", "timestamp", "data"}``. Type and id come from the headers
ingress sets; the body gives the ``data`` and the producer's timestamp. :func:`parse_event` either
returns a :class:`CommerceEvent` or raises :class:`MalformedEvent` saying what is wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "HANDLED_EVENT_TYPES",
    "MAX_LINES",
    "MAX_QTY",
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

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_EVENT_TYPE = "Stockwire-Event-Type"
HEADER_EVENT_ID = "Stockwire-Event-Id"
HEADER_SOURCE = "Stockwire-Source"


class MalformedEvent(ValueError):
    """The event can never be applied as it is (not JSON, a field missing or of the wrong type)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message of COMMERCE as the consumer received it (or as a test builds it)."""

    subject: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    stream_seq: int = 0

    @property
    def msg_id(self) -> str:
        """The inbox key: ``Nats-Msg-Id`` (``<source>:<id>``), else built from the other headers."""
        msg_id = self.headers.get(HEADER_MSG_ID)
        if msg_id:
            return msg_id
        source, event_id = self.headers.get(HEADER_SOURCE), self.headers.get(HEADER_EVENT_ID)
        if source and event_id:
            return f"{source}:{event_id}"
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
    """ISO 8601 (``Z`` allowed) or epoch seconds → epoch seconds; None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None


def validate_id(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(f"'{name}' must be a string")
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise MalformedEvent(f"'{name}' must be 1 to {MAX_ID_LENGTH} printable characters")
    return text


def validate_sku(value: object, name: str = "sku") -> str:
    if not isinstance(value, str):
        raise MalformedEvent(f"'{name}' must be a string")
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise MalformedEvent(f"'{name}' must be 1 to {MAX_ID_LENGTH} printable characters")
    return value


def _int(value: object, name: str, *, minimum: int, maximum: int = MAX_QTY) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"'{name}' must be an integer")
    if not minimum <= value <= maximum:
        raise MalformedEvent(f"'{name}' must be between {minimum} and {maximum}, got {value}")
    return value


def _lines(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise MalformedEvent("'lines' must be a non-empty list")
    if len(lines) > MAX_LINES:
        raise MalformedEvent(f"'lines' holds {len(lines)} lines, over the limit of {MAX_LINES}")
    if not all(isinstance(line, dict) for line in lines):
        raise MalformedEvent("every line must be an object {sku, qty}")
    return lines


def _order_lines(data: Mapping[str, Any]) -> tuple[Line, ...]:
    return tuple(
        Line(validate_sku(line.get("sku"), f"lines[{i}].sku"), _int(line.get("qty"), f"lines[{i}].qty", minimum=1))
        for i, line in enumerate(_lines(data))
    )


def _return_lines(data: Mapping[str, Any]) -> tuple[ReturnLine, ...]:
    # Restocking is opt-in: a returned item is only sellable again when the return says so.
    default = data.get("restock", False)
    if not isinstance(default, bool):
        raise MalformedEvent("'restock' must be true or false")
    out = []
    for i, line in enumerate(_lines(data)):
        restock = line.get("restock", default)
        if not isinstance(restock, bool):
            raise MalformedEvent(f"'lines[{i}].restock' must be true or false")
        sku = validate_sku(line.get("sku"), f"lines[{i}].sku")
        out.append(ReturnLine(sku, _int(line.get("qty"), f"lines[{i}].qty", minimum=1), restock))
    return tuple(out)


def _adjusted(data: Mapping[str, Any], source_ts: float) -> Adjusted:
    sku = validate_sku(data.get("sku"))
    if "delta" in data and "on_hand" in data:
        raise MalformedEvent("an adjustment carries either 'delta' or 'on_hand', not both")
    if "delta" in data:
        return Adjusted(sku, delta=_int(data["delta"], "delta", minimum=-MAX_QTY))
    if "on_hand" in data:
        counted_at = parse_timestamp(data.get("counted_at"))
        if data.get("counted_at") is not None and counted_at is None:
            raise MalformedEvent("'counted_at' must be an ISO 8601 time or epoch seconds")
        return Adjusted(sku, on_hand=_int(data["on_hand"], "on_hand", minimum=0), counted_at=counted_at or source_ts)
    raise MalformedEvent("an adjustment needs 'delta' or 'on_hand'")


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
    """Read one COMMERCE message; raises :class:`MalformedEvent` when it can never be applied."""
    event_type = envelope.event_type
    msg_id = envelope.msg_id
    if event_type not in HANDLED_EVENT_TYPES:
        return CommerceEvent(msg_id, event_type, Unhandled(), envelope.stream_seq, 0.0, envelope)
    try:
        document = _decoder.decode(envelope.body)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedEvent("body must be a JSON object")
    data = document.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("'data' must be an object")
    source_ts = parse_timestamp(document.get("created_at", document.get("timestamp"))) or 0.0
    payload = _payload(event_type, data, source_ts)
    return CommerceEvent(msg_id, event_type, payload, envelope.stream_seq, source_ts, envelope)


def summed_lines(lines: tuple[Line, ...] | list[Line]) -> dict[str, int]:
    """Quantities per SKU, lines naming the same SKU added up, in SKU order."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.sku] = out.get(line.sku, 0) + line.qty
    return dict(sorted(out.items()))
