from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from libs.config import NatsSettings, SourceSettings, StockwireSettings
from libs.natsserver import NatsServer
from libs.schemes import SCHEMES
from libs.signing import generate_standard_secret
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings
from tests.support import eventually

CE_SECRET = "ce-secret-current"
SW_SECRET = generate_standard_secret()
# Each platform's sources list an old secret before the current one: a rotation under way.
SHOPIFY_SECRET, SHOPIFY_OLD_SECRET = "shpss_current-client-secret", "shpss_old-client-secret"
WOO_SECRET, WOO_OLD_SECRET = "wc-webhook-secret-current", "wc-webhook-secret-old"
STRIPE_SECRET, STRIPE_OLD_SECRET = "whsec_stripeCurrent0123456789", "whsec_stripeOld0123456789"
SECRETS = (
    CE_SECRET,
    SW_SECRET,
    SHOPIFY_SECRET,
    SHOPIFY_OLD_SECRET,
    WOO_SECRET,
    WOO_OLD_SECRET,
    STRIPE_SECRET,
    STRIPE_OLD_SECRET,
)

ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient]]

# The scheme of each platform source, and what its id and topic headers hold unless a test says otherwise.
_PLATFORMS = {
    "shopify": (
        "shopify",
        {"x-shopify-topic": "orders/create", "x-shopify-webhook-id": "b54557e4-0000-4000-8000-000000000001"},
    ),
    "woo": (
        "woocommerce",
        {"x-wc-webhook-topic": "order.created", "x-wc-webhook-delivery-id": "36e520ebabc2fa725092ff4a47acedf2"},
    ),
}


def platform_headers(source: str, body: bytes, secret: str, overrides: Mapping[str, str | None]) -> dict[str, str]:
    """A Shopify or WooCommerce delivery's headers for ``body``: signed with ``secret`` (the scheme's own
    signer, which tests/unit/libs/test_signing.py holds to the documented algorithm), the id and topic of
    ``_PLATFORMS``; ``overrides`` by header name with ``_`` for ``-`` (None: the header left out)."""
    scheme, defaults = _PLATFORMS[source]
    headers = {
        "content-type": "application/json",
        **defaults,
        **SCHEMES[scheme].signature.sign(secret, body, msg_id="", timestamp=0),
    }
    for name, value in overrides.items():
        headers.pop(name.replace("_", "-"), None)
        if value is not None:
            headers[name.replace("_", "-")] = value
    return headers


def shared_settings(nats_url: str, data_dir: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
        sources={
            "ce": SourceSettings(scheme="commerce-engine", secrets=["ce-secret-old", CE_SECRET]),
            "sw": SourceSettings(scheme="standard-webhooks", secrets=[SW_SECRET]),
            "shopify": SourceSettings(scheme="shopify", secrets=[SHOPIFY_OLD_SECRET, SHOPIFY_SECRET]),
            "woo": SourceSettings(scheme="woocommerce", secrets=[WOO_OLD_SECRET, WOO_SECRET]),
            "stripe": SourceSettings(scheme="stripe", secrets=[STRIPE_OLD_SECRET, STRIPE_SECRET]),
        },
    )


@pytest.fixture
def ingress_factory(data_dir: Path) -> ClientFactory:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(
        nats_url: str, *, wait_connected: bool = True, **overrides: object
    ) -> AsyncIterator[AsyncTestClient]:
        settings = IngressSettings(**{"publish_timeout_s": 1.0, **overrides})  # type: ignore[arg-type]
        app = build_app(shared_settings(nats_url, data_dir), settings)
        async with AsyncTestClient(app=app) as client:
            if wait_connected:
                await eventually(lambda: _connected(app), what="ingress connected to NATS")
            yield client

    return make


async def _connected(app) -> bool:  # type: ignore[no-untyped-def]
    return bool(app.state.writer.bus_connected)


@pytest.fixture
async def ingress(js, nats_server: NatsServer, ingress_factory: ClientFactory) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    async with ingress_factory(nats_server.url) as client:
        yield client
