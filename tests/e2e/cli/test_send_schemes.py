"""``stockwire send --source <name>`` signs as the source's platform does, for every scheme: a running
ingress (its own process, a real nats-server) accepts each delivery and files it under its subject."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.topology import COMMERCE
from stockwire.cli import main
from stockwire.commands import send
from tests.support import eventually, service_ready, started_service

pytestmark = pytest.mark.e2e

SOURCES = {
    "STOCKWIRE__SOURCES__CE__SECRETS": "ce-secret",
    "STOCKWIRE__SOURCES__SW__SCHEME": "standard-webhooks",
    "STOCKWIRE__SOURCES__SW__SECRETS": "whsec_c2VuZC1zZWNyZXQ=",
    "STOCKWIRE__SOURCES__SHOPIFY__SCHEME": "shopify",
    "STOCKWIRE__SOURCES__SHOPIFY__SECRETS": "shpss_old,shpss_new",
    "STOCKWIRE__SOURCES__WOO__SCHEME": "woocommerce",
    "STOCKWIRE__SOURCES__WOO__SECRETS": "wc-secret",
    "STOCKWIRE__SOURCES__STRIPE__SCHEME": "stripe",
    "STOCKWIRE__SOURCES__STRIPE__SECRETS": "whsec_stripe-secret",
}


@pytest.fixture
def ingress_port(nats_server: NatsServer, js: JetStreamContext, tmp_path: Path) -> Iterator[int]:
    with started_service("ingress", "ingress", nats_url=nats_server.url, tmp_path=tmp_path, env=SOURCES) as port:
        yield port


@pytest.mark.parametrize(
    ("source", "event_type", "data", "subject", "event_id"),
    [
        ("ce", "order.created", {"order_id": "o-1", "lines": []}, "commerce.ce.order.created", "evt_send_1"),
        ("sw", "order.created", {"order_id": "o-1", "lines": []}, "commerce.sw.order.created", "evt_send_1"),
        ("shopify", "orders/create", {"id": 1, "line_items": []}, "commerce.shopify.orders.create", "evt_send_1"),
        ("woo", "order.created", {"id": 4750, "line_items": []}, "commerce.woo.order.created", None),
        (
            "stripe",
            "payment_intent.succeeded",
            {"id": "pi_1"},
            "commerce.stripe.payment_intent.succeeded",
            "evt_send_1",
        ),
    ],
)
async def test_send_signs_in_the_source_s_scheme(
    ingress_port: int,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    event_type: str,
    data: dict[str, object],
    subject: str,
    event_id: str | None,
) -> None:
    await eventually(lambda: asyncio.to_thread(service_ready, ingress_port), timeout=30, what="ingress ready")
    for name, value in {**SOURCES, "STOCKWIRE__INGRESS__PORT": str(ingress_port)}.items():
        monkeypatch.setenv(name, value)
    argv = ["send", event_type, json.dumps(data), "--source", source, "--id", "evt_send_1"]
    assert await asyncio.to_thread(main, argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("200 ") and '"accepted"' in printed, printed
    stored = await js.get_msg(COMMERCE, 1)
    assert stored.subject == subject
    assert stored.headers["Stockwire-Event-Type"] == event_type
    if event_id is not None:
        assert stored.headers["Nats-Msg-Id"] == f"{source}:{event_id}"
    else:  # WooCommerce: the delivery id and the body's digest
        assert stored.headers["Nats-Msg-Id"].startswith(f"{source}:evt_send_1.")


def test_send_says_what_a_platform_whose_body_is_the_resource_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SOURCES.items():
        monkeypatch.setenv(name, value)
    assert main(["send", "orders/create", "[1, 2]", "--source", "shopify", "--url", "http://127.0.0.1:9"]) == 2
    assert "a shopify body is a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["ce", "sw", "shopify", "stripe"])
async def test_an_id_sent_again_later_is_the_same_event(
    ingress_port: int,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    source: str,
) -> None:
    """The README's dedup example: the second send of an id, seconds later, re-sends the first body
    (Commerce Engine's created_at, Standard Webhooks' timestamp, Stripe's created stay those of the first
    send) under a fresh signature, and ingress answers duplicate, not conflict."""
    await eventually(lambda: asyncio.to_thread(service_ready, ingress_port), timeout=30, what="ingress ready")
    for name, value in {**SOURCES, "STOCKWIRE__INGRESS__PORT": str(ingress_port)}.items():
        monkeypatch.setenv(name, value)
    # Signatures older than a scheme's tolerance are refused: the clock starts from the real one.
    clock = [time.time()]
    monkeypatch.setattr(send, "_clock", lambda: clock[0])
    event_type = "orders/create" if source == "shopify" else "order.created"
    argv = ["send", event_type, '{"id": 7, "order_id": "o-7", "lines": []}', "--source", source]
    argv += ["--id", f"evt_again_{source}", "--data-dir", str(tmp_path / "cli")]
    assert await asyncio.to_thread(main, argv) == 0
    assert '"accepted"' in capsys.readouterr().out
    clock[0] += 7
    assert await asyncio.to_thread(main, argv) == 0
    assert '"duplicate"' in capsys.readouterr().out
    # Other data under the same id is another body: a conflict, as from a platform.
    changed = [*argv[:2], '{"id": 8, "order_id": "o-8", "lines": []}', *argv[3:]]
    assert await asyncio.to_thread(main, changed) == 1
    assert "409" in capsys.readouterr().out
