"""The hash chain: each ledger row's hash covers its content and the previous row of the same SKU.

Editing, deleting or inserting a row anywhere breaks the chain from that row on, and the SKU's last
hash (kept on the projection) catches a row cut off at the end.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["entry_hash"]


def entry_hash(
    prev_hash: str,
    *,
    sku: str,
    version: int,
    kind: str,
    qty: int,
    on_hand_delta: int,
    reserved_delta: int,
    committed_delta: int,
    reservation: str | None,
    source: str,
    occurred_at: str,
    reason: str,
) -> str:
    # A JSON array, so that no choice of field values can make two different rows serialise alike.
    canonical = json.dumps(
        [
            prev_hash,
            sku,
            version,
            kind,
            qty,
            on_hand_delta,
            reserved_delta,
            committed_delta,
            reservation,
            source,
            occurred_at,
            reason,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
