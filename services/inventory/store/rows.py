"""Rows of the store read back into domain records."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from ..domain.model import Backorder, Reservation, ReservationState, SkuState

__all__ = ["backorder_from_row", "reservation_from_row", "sku_from_row"]


def sku_from_row(row: sa.Row[Any]) -> SkuState:
    return SkuState(
        row.sku, row.on_hand, row.reserved, row.committed, row.version, row.last_hash, row.counted_at, row.backordered
    )


def reservation_from_row(row: sa.Row[Any]) -> Reservation:
    reservation = Reservation(
        row.key,
        ReservationState(row.state),
        json.loads(row.lines),
        row.created_at,
        row.updated_at,
        row.expires_at,
        json.loads(row.returned),
    )
    reservation.load_detail(json.loads(row.detail))
    return reservation


def backorder_from_row(row: sa.Row[Any]) -> Backorder:
    return Backorder(row.sku, row.order_key, row.qty, row.since, row.seq)
