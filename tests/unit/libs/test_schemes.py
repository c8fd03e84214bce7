"""The scheme table: one row per platform, every header it reads bounded, a delivery it builds verifies."""

from __future__ import annotations

import json
import re
import typing

import pytest

from libs.config import SourceSettings
from libs.schemes import SCHEME_NAMES, SCHEMES, HeaderSpec, Located, WebhookScheme
from libs.signing import BodyHmac, SignatureError

SECRETS = {
    "commerce-engine": "ce-secret",
    "standard-webhooks": "whsec_c2VjcmV0LWZvci10ZXN0cw==",
    "shopify": "shpss_secret",
    "woocommerce": "wc-secret",
    "stripe": "whsec_stripe-secret",
}
OTHER = "whsec_b3RoZXI="  # another secret, valid for every scheme (base64 after whsec_, as Standard Webhooks needs)


def test_the_table_has_every_scheme_a_source_may_name() -> None:
    assert tuple(SCHEMES) == SCHEME_NAMES == typing.get_args(typing.get_type_hints(SourceSettings)["scheme"])
    assert set(SECRETS) == set(SCHEMES)
    assert all(scheme.follows for scheme in SCHEMES.values())


def test_no_header_is_read_by_two_schemes_or_left_unbounded() -> None:
    names = [spec.name for scheme in SCHEMES.values() for spec in scheme.headers]
    assert len(names) == len(set(names))
    assert all(
        name == name.lower() and 0 < spec.max_length <= 4096
        for scheme in SCHEMES.values()
        for spec in scheme.headers
        for name in [spec.name]
    )
    with pytest.raises(ValueError, match="without a bound"):
        WebhookScheme(
            name="shopify",
            follows="a test",
            signature=BodyHmac("x-sig", "base64"),
            event_id=Located(header="x-id"),
            event_type=Located(keys=("type",)),
            headers=(HeaderSpec("x-sig", 64, "the signature"),),
            envelope=lambda event_id, event_type, data, now: data,
        )


@pytest.mark.parametrize("name", SCHEME_NAMES)
def test_a_delivery_the_table_builds_verifies_and_carries_its_id_and_type(name: str) -> None:
    scheme = SCHEMES[name]
    topic = "orders/create" if scheme.type_separator == "/" else "order.created"
    body, headers = scheme.delivery(
        SECRETS[name], event_id="evt_42", event_type=topic, data={"id": 7, "line_items": []}, now=1_700_000_000
    )
    assert headers["content-type"] == "application/json"
    assert set(headers) - {"content-type"} <= {spec.name for spec in scheme.headers}
    scheme.signature.verify([OTHER, SECRETS[name]], headers, body, tolerance_s=300, now=1_700_000_000)
    with pytest.raises(SignatureError):
        scheme.signature.verify([OTHER], headers, body, tolerance_s=300, now=1_700_000_000)
    document = json.loads(body)
    assert scheme.event_id.read(headers, document) == "evt_42"
    assert scheme.event_type.read(headers, document) == topic
    assert scheme.levels(topic) == ("orders.create" if scheme.type_separator == "/" else "order.created")


def test_where_the_platforms_put_their_id_and_type() -> None:
    where = {name: (s.event_id.describe(), s.event_type.describe()) for name, s in SCHEMES.items()}
    assert where == {
        "commerce-engine": ("'id'", "'event_type'"),
        "standard-webhooks": ("header webhook-id", "'type' (or 'event_type')"),
        "shopify": ("header x-shopify-webhook-id", "header x-shopify-topic"),
        "woocommerce": ("header x-wc-webhook-delivery-id", "header x-wc-webhook-topic"),
        "stripe": ("'id'", "'type'"),
    }
    assert [name for name, s in SCHEMES.items() if not s.id_per_event] == ["woocommerce"]
    assert [name for name, s in SCHEMES.items() if s.ping is not None] == ["woocommerce"]


def test_only_woocommerce_s_unsigned_url_test_is_a_ping() -> None:
    woo = SCHEMES["woocommerce"]
    assert woo.is_ping({}, b"webhook_id=12")
    assert woo.is_ping({"content-type": "application/x-www-form-urlencoded"}, b"webhook_id=0")
    assert not woo.is_ping({"x-wc-webhook-signature": "c2ln"}, b"webhook_id=12"), "a signed request is verified"
    for body in [b"webhook_id=", b"webhook_id=12&x=1", b" webhook_id=12", b"webhook_id=1" + b"2" * 20, b"{}"]:
        assert not woo.is_ping({}, body), body
    assert not any(SCHEMES[name].is_ping({}, b"webhook_id=12") for name in SCHEME_NAMES if name != "woocommerce")
    assert woo.ping is not None and woo.ping.pattern == re.compile(rb"webhook_id=[0-9]{1,20}").pattern


def test_a_platform_whose_body_is_the_resource_refuses_data_that_is_not_an_object() -> None:
    with pytest.raises(TypeError, match="JSON object"):
        SCHEMES["shopify"].delivery("s", event_id="1", event_type="orders/create", data=[1], now=0)


@pytest.mark.parametrize(
    ("name", "blank"),
    [*((name, blank) for name in SCHEME_NAMES for blank in ("", "  ")), ("standard-webhooks", "whsec_")],
)
def test_a_blank_secret_verifies_nothing(name: str, blank: str) -> None:
    """Anyone can sign with an empty key: a delivery signed with one is refused even where the secret list
    holds that same blank secret (the configuration refuses it too; this is the last line)."""
    scheme = SCHEMES[name]
    topic = "orders/create" if scheme.type_separator == "/" else "order.created"
    try:
        body, headers = scheme.delivery(blank, event_id="evt_1", event_type=topic, data={"id": 1}, now=1_700_000_000)
    except Exception:  # a scheme whose secrets have a form of their own cannot even sign with it
        return
    with pytest.raises(SignatureError):
        scheme.signature.verify([blank], headers, body, tolerance_s=300, now=1_700_000_000)
