"""Commerce Engine webhook fixtures (``tests/fixtures/commerce_engine``) as the tests send them.

The README beside the fixtures tells the story of orders A, B and C; these helpers load a fixture (its
``data`` changed, under another event id if asked) and turn any webhook document into the COMMERCE
message ingress would publish for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.inventory.adapters.wire import Envelope

__all__ = [
    "BOOK",
    "BOX",
    "CAP",
    "FIXTURES",
    "JACKET",
    "MUG",
    "ORDER_A",
    "TEE",
    "WHITE_TEE",
    "as_published",
    "load",
    "receipt",
]

FIXTURES = Path(__file__).parent / "fixtures" / "commerce_engine"
ORDER_A = "ORD-2026-000101"
TEE, MUG, BOOK, BOX = "TEE-ORG-BLK-M", "MUG-CER-350-WHT", "EBOOK-CARE-GUIDE", "BNDL-GIFT-BOX-01"
JACKET, WHITE_TEE, CAP = "JKT-RAIN-NVY-L", "TEE-ORG-WHT-S", "CAP-CNV-OLV"


def load(number: int, *, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    """The webhook document of fixture ``number``: its ``data`` updated with ``data``, its id replaced
    by ``event_id`` when given (the same fact re-emitted under a new id)."""
    [path] = FIXTURES.glob(f"{number:02d}-*.json")
    document: dict[str, Any] = json.loads(path.read_text())
    document["data"].update(data)
    if event_id is not None:
        document["id"] = event_id
    return document


def receipt(event_id: str, sku: str, qty: int, created_at: str = "2026-11-26T08:00:00Z") -> dict[str, Any]:
    """A stock receipt in Stockwire's own dialect (Commerce Engine sends no stock events)."""
    data = {"sku": sku, "qty": qty}
    return {"id": event_id, "event_type": "inventory.received", "created_at": created_at, "data": data}


def as_published(document: dict[str, Any], *, source: str = "ce", seq: int = 0, body: bytes | None = None) -> Envelope:
    """``document`` as ingress publishes it on COMMERCE for ``source`` (``body``: other bytes under the
    same headers, e.g. a payload the producer got wrong)."""
    event_type, event_id = document["event_type"], document["id"]
    headers = {
        "Nats-Msg-Id": f"{source}:{event_id}",
        "Stockwire-Source": source,
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
    }
    raw = json.dumps(document).encode() if body is None else body
    return Envelope(f"commerce.{source}.{event_type}", raw, headers, seq)
