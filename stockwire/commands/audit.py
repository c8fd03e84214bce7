"""``stockwire audit order <id>`` / ``audit sku <sku>``: the whole trail of an order or a SKU.

The raw webhooks as received (read back from COMMERCE by the stream sequence the inbox recorded),
the ledger rows they caused, and the inventory events emitted for them (from the outbox).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from typing import Any

from nats.js import JetStreamContext

from libs.bus import connect_within, jetstream
from libs.config import load_settings
from libs.contracts import availability_msg_id, inventory_event_msg_id
from libs.store import SchemaError
from libs.subjects import inventory_subject
from libs.topology import COMMERCE
from services.inventory.domain.model import LedgerEntry, order_key
from services.inventory.store.reads import AmbiguousOrder, InventoryReader, reservation_json
from stockwire.commands._options import database_url_argument
from stockwire.commands.ledger import open_store, resolve_database_url

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="print the trail of an order or a SKU: webhooks, ledger, events",
        description="Read-only: the raw webhooks (from COMMERCE), the ledger rows they caused and the inventory "
        "events emitted. Opens inventory's store read-only; a missing or empty store, or another schema "
        "version, is an error (exit 2).",
    )
    parser.add_argument("what", choices=["order", "sku"])
    parser.add_argument("id", help="the order number or the SKU")
    parser.add_argument(
        "--source", default=None, help="the source whose order it is (default: the one source that has it)"
    )
    parser.add_argument(
        "--database-url", default=None, type=database_url_argument, help="inventory's store (default: as configured)"
    )
    parser.add_argument("--limit", type=int, default=500, help="at most this many ledger rows (newest) for a SKU")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--nats-timeout", type=float, default=5.0, help="seconds to wait for NATS")
    parser.set_defaults(func=run)


async def _webhooks(js: JetStreamContext | None, inbox_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in inbox_rows:
        item: dict[str, Any] = {
            "stream_seq": row["stream_seq"],
            "msg_id": row["msg_id"],
            "event_type": row["event_type"],
            "outcome": row["outcome"],
            "detail": row["detail"],
        }
        if js is None:
            item["raw"] = None
            item["note"] = "NATS unavailable"
        else:
            try:
                raw = await js.get_msg(COMMERCE, row["stream_seq"])
                item["subject"] = raw.subject
                item["headers"] = dict(raw.headers or {})
                item["raw"] = (raw.data or b"").decode("utf-8", errors="replace")
            except Exception as exc:
                item["raw"] = None
                item["note"] = f"not in {COMMERCE} any more ({type(exc).__name__})"
        out.append(item)
    return out


def _entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "sku": entry.sku,
        "version": entry.version,
        "kind": entry.kind.value,
        "qty": entry.qty,
        "deltas": {
            "on_hand": entry.on_hand_delta,
            "reserved": entry.reserved_delta,
            "committed": entry.committed_delta,
        },
        "reservation": entry.reservation,
        "source": entry.source,
        "occurred_at": entry.occurred_at,
        "reason": entry.reason,
        "hash": entry.hash,
    }


def _emitted(
    entries: list[LedgerEntry], outbox: dict[str, dict[str, Any]], extra: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        for subject, msg_id in (
            (inventory_subject(entry.kind.value, entry.sku), inventory_event_msg_id(entry.sku, entry.version)),
            (inventory_subject("availability", entry.sku), availability_msg_id(entry.sku, entry.version)),
        ):
            row = outbox.get(msg_id)
            if row is None and subject.startswith("inventory.availability."):
                continue  # snapshots are written once per transaction, not for every row
            out.append({"subject": subject, "msg_id": msg_id, "status": _status(row)})
    out += [{"subject": r["subject"], "msg_id": r["msg_id"], "status": _status(r)} for r in extra]
    return out


def _status(row: dict[str, Any] | None) -> str:
    if row is None:
        return "published (outbox row cleaned up)"
    if row["published_at"] is None:
        return "pending in the outbox"
    return "published " + dt.datetime.fromtimestamp(row["published_at"], dt.UTC).isoformat(timespec="seconds")


async def _outbox_for(reader: InventoryReader, entries: list[LedgerEntry]) -> dict[str, dict[str, Any]]:
    ids = [inventory_event_msg_id(e.sku, e.version) for e in entries]
    ids += [availability_msg_id(e.sku, e.version) for e in entries]
    rows = []
    for start in range(0, len(ids), 500):
        rows += await reader.outbox_rows(ids[start : start + 500])
    return {r["msg_id"]: r for r in rows}


async def _order_trail(
    reader: InventoryReader, js: JetStreamContext | None, order_id: str, source: str | None
) -> dict[str, Any] | None:
    found = await reader.order_source(order_id, source)
    if found is None:
        return None
    reservation, events, parked = await reader.order(order_id, found)
    if reservation is None and not events:
        return None
    entries = await reader.ledger_for_reservation(order_key(order_id, found))
    inbox = await reader.inbox_rows(order_id=f"{found}:{order_id}")
    rejections = await reader.outbox_rows(like=f"rejected:{found}:{order_id.replace('%', '_')}:%")
    return {
        "order_id": order_id,
        "source": found,
        "reservation": reservation_json(reservation, time.time()) if reservation else {"state": "awaiting"},
        "webhooks": await _webhooks(js, inbox),
        "parked": parked,
        "ledger": [_entry(e) for e in entries],
        "emitted": _emitted(entries, await _outbox_for(reader, entries), rejections),
    }


async def _sku_trail(
    reader: InventoryReader, js: JetStreamContext | None, sku: str, limit: int
) -> dict[str, Any] | None:
    entries = [entry async for _id, entry in reader.stream_ledger(sku)][-limit:]
    if not entries:
        return None
    sources = sorted({e.source for e in entries})
    inbox = []
    for start in range(0, len(sources), 500):
        inbox += await reader.inbox_rows(msg_ids=sources[start : start + 500])
    rejections = [
        r for r in await reader.outbox_rows(like="rejected:%") if r["subject"] == inventory_subject("rejected", sku)
    ]
    return {
        "sku": sku,
        "webhooks": await _webhooks(js, sorted(inbox, key=lambda r: r["stream_seq"])),
        "ledger": [_entry(e) for e in entries],
        "emitted": _emitted(entries, await _outbox_for(reader, entries), rejections),
    }


def _print(trail: dict[str, Any]) -> None:
    if "order_id" in trail:
        r = trail["reservation"]
        lines = ", ".join(f"{line['sku']} x{line['qty']}" for line in r.get("lines", []))
        print(f"Order {trail['order_id']} ({trail['source']}): {r['state']}" + (f" ({lines})" if lines else ""))
        for name in ("backordered", "shipped", "returned"):
            if r.get(name):
                print(f"  {name}: " + ", ".join(f"{sku} x{qty}" for sku, qty in sorted(r[name].items())))
        for ref, shipment in r.get("shipments", {}).items():
            units = ", ".join(f"{sku} x{qty}" for sku, qty in sorted(shipment["deducted"].items()))
            marks = [m for m in ("back", "lost") if shipment.get(m)]
            extra = f" [{', '.join('back to origin' if m == 'back' else m for m in marks)}]" if marks else ""
            print(f"  shipment {ref}: {shipment['status']}" + (f", took {units}" if units else "") + extra)
        if r.get("returns"):
            print("  returns restocked: " + ", ".join(r["returns"]))
        for p in trail["parked"]:
            print(f"  parked: {p['msg_id']} (seq {p['stream_seq']}): {p['reason']}")
    else:
        print(f"SKU {trail['sku']}")
    print(f"\nWebhooks received ({COMMERCE}):")
    for w in trail["webhooks"]:
        note = f" [{w['note']}]" if w.get("note") else ""
        detail = f": {w['detail']}" if w["detail"] else ""
        print(f"  seq {w['stream_seq']}  {w['event_type']}  {w['msg_id']}  -> {w['outcome']}{detail}{note}")
        if w.get("raw") is not None:
            print(f"      {w['raw']}")
    print("\nLedger rows:")
    for e in trail["ledger"]:
        d = e["deltas"]
        reason = f"  ({e['reason']})" if e["reason"] else ""
        print(
            f"  {e['sku']} v{e['version']}  {e['kind']:<9} {e['qty']:>6}  on_hand {d['on_hand']:+d} reserved "
            f"{d['reserved']:+d} committed {d['committed']:+d}  from {e['source']}  at {e['occurred_at']}  "
            f"hash {e['hash'][:12]}{reason}"
        )
    print("\nInventory events emitted:")
    for m in trail["emitted"]:
        print(f"  {m['subject']}  {m['msg_id']}  {m['status']}")


async def _run(args: argparse.Namespace) -> int:
    try:
        engine = await open_store(resolve_database_url(args.database_url))
    except SchemaError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    nc = None
    try:
        nc = await connect_within(load_settings().nats, "stockwire-audit", args.nats_timeout)
        if nc is None:
            print("audit: NATS did not answer; showing the store only", file=sys.stderr)
        js = jetstream(nc) if nc is not None else None
        reader = InventoryReader(engine)
        if args.what == "order":
            try:
                trail = await _order_trail(reader, js, args.id, args.source)
            except AmbiguousOrder as exc:
                print(f"audit: {exc} (--source NAME)", file=sys.stderr)
                return 2
        else:
            trail = await _sku_trail(reader, js, args.id, args.limit)
        if trail is None:
            print(f"audit: no {args.what} {args.id!r} in the inventory store", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(trail, indent=2, default=str))
        else:
            _print(trail)
        return 0
    finally:
        if nc is not None:
            await nc.close()
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
