"""``stockwire sim``: a Commerce Engine simulator sending a flash sale to a running stack."""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop

from libs.config import load_raw, load_settings
from stockwire.commands._options import add_dialect, http_url_argument
from stockwire.sim.config import CatalogueConfig, ProducerConfig, SimConfig
from stockwire.sim.session import SimTarget, run_sim
from stockwire.stack import DEV_CE_SOURCE, DEV_SOURCE, configured_url, source_secret

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="send a simulated flash sale (signed webhooks) to a running stack and check the ledger",
        description="Receipts, then orders over a hot catalogue, payments, cancellations, abandoned carts, "
        "shipments and returns, sent as Commerce Engine would (retries, duplicates, reordering, a burst; in its "
        "own webhooks with --dialect commerce-engine). Reads inventory's decisions back and compares every "
        "SKU with the ground truth.",
    )
    parser.add_argument("--ingress-url", default=None, type=http_url_argument, help="default: [ingress] host and port")
    parser.add_argument(
        "--inventory-url", default=None, type=http_url_argument, help="default: [inventory] host and port"
    )
    add_dialect(parser)
    parser.add_argument(
        "--source",
        default=DEV_SOURCE,
        help=f"source for stock events, and everything in Stockwire's dialect ({DEV_SOURCE})",
    )
    parser.add_argument(
        "--order-source",
        default=DEV_CE_SOURCE,
        help=f"source for Commerce Engine's orders, payments, shipments and returns ({DEV_CE_SOURCE})",
    )
    parser.add_argument(
        "--sku-prefix",
        default=None,
        help="put before every SKU (default: the run id in Commerce Engine's dialect, so that one run's "
        "backorders never wait on another's SKUs; none in Stockwire's)",
    )
    parser.add_argument("--data-dir", default=None, help="where the dev source secret is (default: config)")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--skus", type=int, default=CatalogueConfig().skus)
    parser.add_argument("--hot-skus", type=int, default=CatalogueConfig().hot_skus)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-id", default=None, help="prefix of event and order ids (default: random)")
    parser.add_argument("--rate", type=float, default=ProducerConfig().rate, help="webhooks/s; 0 = unpaced")
    parser.add_argument("--concurrency", type=int, default=ProducerConfig().concurrency)
    parser.add_argument("--duplicates", type=float, default=ProducerConfig().duplicate_rate)
    parser.add_argument("--reorder", type=float, default=ProducerConfig().reorder_rate)
    parser.add_argument("--forged", type=float, default=0.0, help="share of deliveries followed by a forged copy")
    parser.add_argument("--burst-factor", type=float, default=ProducerConfig().burst_factor)
    parser.add_argument("--wait-expiry", action="store_true", help="wait until abandoned carts expired")
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument("--report", default=None, help="write a JSON result here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raw = load_raw()
    settings = load_settings(raw)
    data_dir = Path(args.data_dir or settings.data_dir)
    run_id = args.run_id or f"sim{secrets.token_hex(3)}"
    prefix = (
        args.sku_prefix if args.sku_prefix is not None else (f"{run_id}-" if args.dialect == "commerce-engine" else "")
    )
    config = SimConfig(
        seed=args.seed,
        orders=args.orders,
        run_id=run_id,
        dialect=args.dialect,
        source=args.source,
        order_source=args.order_source,
        sku_prefix=prefix,
        catalogue=replace(CatalogueConfig(), skus=args.skus, hot_skus=min(args.hot_skus, args.skus)),
        producer=replace(
            ProducerConfig(),
            rate=args.rate,
            concurrency=args.concurrency,
            duplicate_rate=args.duplicates,
            reorder_rate=args.reorder,
            forged_rate=args.forged,
            burst_factor=args.burst_factor,
        ),
    )
    target = SimTarget(
        ingress_url=args.ingress_url or configured_url("ingress", raw),
        inventory_url=args.inventory_url or configured_url("inventory", raw),
        nats=settings.nats,
        # The simulated storefront signs as Commerce Engine signs, whichever source it sends to.
        secrets={
            source: source_secret(settings, source, data_dir, schemes=("commerce-engine",)).secret
            for source in config.sources
        },
        settle_timeout_s=args.settle_timeout,
        wait_for_expiry=args.wait_expiry,
    )
    return uvloop.run(run_sim(config, target, sys.stdout, Path(args.report) if args.report else None))
