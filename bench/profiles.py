"""Source profile mapping cost: webhook bodies mapped per second, one process, no I/O.

    python -m bench.profiles [--seconds 2] [--repeats 3]

Rows: the Commerce Engine ``order.created`` fixture (5 lines) through the ``commerce-engine`` profile
(raw bytes → canonical event, and already-decoded → canonical event); a ``shipment.updated``
fixture; the same order in the ``stockwire`` dialect through the ``stockwire`` profile; what inventory's
consumer does per message (``services/inventory/adapters/wire.read_event``: headers, the source's
profile, the event) for the Commerce Engine order; and the baseline measured in the same run: msgspec
decoding the same body alone. Each figure is the median of ``--repeats`` runs of ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from bench.support import machine, median, print_table
from libs.config import SourceSettings
from libs.profiles import SourceProfiles, load_profile
from services.inventory.adapters.wire import Envelope, read_event

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "commerce_engine"


def _rate(call: Callable[[], object], seconds: float) -> float:
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for _ in range(200):
            call()
        done += 200
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ce, sw = load_profile("commerce-engine"), load_profile("stockwire")
    order_body = (FIXTURES / "01-order.created.json").read_bytes()
    order_document = json.loads(order_body)
    shipment_body = (FIXTURES / "07-shipment.updated-shipped.json").read_bytes()
    lines = [
        {"sku": line["sku"], "qty": line["quantity"] + line["free_quantity"]}
        for line in order_document["data"]["order_items"]
    ]
    stockwire_body = json.dumps(
        {"id": "evt-1", "event_type": "order.created", "created_at": order_document["created_at"],
         "data": {"order_id": order_document["data"]["order_number"], "lines": lines}}
    ).encode()  # fmt: skip
    headers = {"Stockwire-Event-Type": "order.created", "Stockwire-Source": "store", "Nats-Msg-Id": "store:evt-1"}
    envelope = Envelope("commerce.store.order.created", order_body, headers)
    sources = SourceProfiles({"store": SourceSettings(profile="commerce-engine")})
    decoder = msgspec.json.Decoder()

    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("msgspec decode only (baseline)", len(order_body), lambda: decoder.decode(order_body)),
        ("commerce-engine order.created, bytes", len(order_body), lambda: ce.map_body(order_body)),
        ("commerce-engine order.created, decoded", len(order_body), lambda: ce.map(order_document)),
        ("commerce-engine shipment.updated, bytes", len(shipment_body), lambda: ce.map_body(shipment_body)),
        ("stockwire order.created, bytes", len(stockwire_body), lambda: sw.map_body(stockwire_body)),
        ("inventory's read_event, commerce-engine order", len(order_body), lambda: read_event(envelope, sources)),
    ]
    rows = []
    for label, size, call in cases:
        call()
        rate = median([_rate(call, args.seconds) for _ in range(args.repeats)])
        rows.append((label, size, rate, 1e6 / rate))
    print_table(
        f"profile mapping, one core ({machine()}), median of {args.repeats} runs of {args.seconds:g} s",
        ["case", "body bytes", "mappings/s", "µs each"],
        rows,
    )


if __name__ == "__main__":
    main()
