"""An outbox row as the relay sees it, and the NATS headers it is published with. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from libs.contracts import HEADER_MSG_ID

__all__ = ["OutboxRow", "UnpublishableRow", "publish_headers"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    subject: str
    msg_id: str
    headers: str  # JSON object, as the writer stored it
    payload: bytes


class UnpublishableRow(ValueError):
    """The row cannot be turned into a message. It is not skipped: the relay stops before it and says so."""

    def __init__(self, row: OutboxRow, reason: str) -> None:
        super().__init__(f"outbox row {row.id} (msg_id {row.msg_id!r}): {reason}")
        self.row = row


_decode_strict = msgspec.json.Decoder(dict[str, str])
_decode_loose = msgspec.json.Decoder(dict[str, object])


def publish_headers(row: OutboxRow) -> dict[str, str]:
    """The row's headers with ``Nats-Msg-Id`` always set to its ``msg_id`` (that is what JetStream dedups on)."""
    if not row.msg_id:
        raise UnpublishableRow(row, "empty msg_id")
    text = row.headers or "{}"
    try:
        headers = _decode_strict.decode(text)
    except msgspec.ValidationError:
        try:
            loose = _decode_loose.decode(text)
        except msgspec.DecodeError as exc:
            raise UnpublishableRow(row, f"headers are not a JSON object: {exc}") from None
        headers = {
            key: value if isinstance(value, str) else msgspec.json.encode(value).decode()
            for key, value in loose.items()
        }
    except msgspec.DecodeError as exc:
        raise UnpublishableRow(row, f"headers are not JSON: {exc}") from None
    headers[HEADER_MSG_ID] = row.msg_id
    return headers
