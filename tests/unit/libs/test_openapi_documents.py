"""Each service's OpenAPI document says what the service does: who may call, every answer, every bound.
(The running services are held to their documents by tests/e2e/api.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from openapi_spec_validator import validate

from libs.config import SourceSettings, StockwireSettings
from libs.http import printable_pattern
from services.channel_notifier.app import build_app as notifier_app
from services.channel_notifier.settings import ChannelNotifierSettings
from services.ingress.app import build_app as ingress_app
from services.ingress.settings import IngressSettings
from services.inventory.app import build_app as inventory_app
from services.inventory.settings import InventorySettings
from services.outbox_relay.app import build_app as relay_app
from services.outbox_relay.settings import OutboxRelaySettings

TOKEN = "doc-token"


def _shared(tmp_path: Path) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(tmp_path),
        admin_token=TOKEN,
        sources={
            "shop": SourceSettings(secrets=["s"]),
            "svix": SourceSettings(scheme="standard-webhooks", secrets=["whsec_c2VjcmV0"]),
        },
    )


def _apps(tmp_path: Path) -> dict[str, Litestar]:
    shared = _shared(tmp_path)
    return {
        "ingress": ingress_app(shared, IngressSettings()),
        "inventory": inventory_app(shared, InventorySettings()),
        "channel-notifier": notifier_app(shared, ChannelNotifierSettings()),
        "outbox-relay": relay_app(shared, OutboxRelaySettings()),
    }


def _document(app: Litestar) -> dict[str, Any]:
    return app.openapi_schema.to_schema()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def _body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    """The request body schema of ``POST path``, with every ``$ref`` resolvable (the document as a registry)."""
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


@pytest.mark.parametrize("service", ["ingress", "inventory", "channel-notifier", "outbox-relay"])
def test_every_document_is_valid_openapi_and_every_error_is_error_detail(tmp_path: Path, service: str) -> None:
    document = _document(_apps(tmp_path)[service])
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = _operations(document)
    assert operations
    for method, path, op in operations:
        for status, response in op["responses"].items():
            if int(status) >= 400 and path != "/readyz":  # its 503 is the readiness report, not an error
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        for parameter in op.get("parameters", []):
            assert parameter["schema"].get("format") != "uri", (method, path, parameter["name"])
            # A float bound past 2^53 is not the integer meant (2^63 - 1 written as 2^63).
            maximum = parameter["schema"].get("maximum")
            assert not (isinstance(maximum, float) and maximum > 2**53), (method, path, parameter["name"])


@pytest.mark.parametrize("service", ["inventory", "channel-notifier"])
def test_guarded_operations_declare_the_bearer_token_and_its_refusals(tmp_path: Path, service: str) -> None:
    app = _apps(tmp_path)[service]
    document = _document(app)
    guarded = 0
    # No lifespan (no store, no NATS): the guard answers before any handler would need them.
    client = TestClient(app)
    if True:
        for method, path, op in _operations(document):
            concrete = path.replace("{delivery_id}", "1").replace("{seq}", "1").replace("{", "").replace("}", "")
            refused = client.request(method.upper(), concrete).status_code == 401
            declared = op.get("security") == [{"bearer": []}]
            assert refused == declared, (method, path)
            if declared:
                guarded += 1
                assert {"401", "403"} <= set(op["responses"]), (method, path)
    assert guarded >= 2


def test_a_reservation_the_service_refuses_is_invalid_per_the_document(tmp_path: Path) -> None:
    document = _document(_apps(tmp_path)["inventory"])
    schema = _body_schema(document, "/reservations")
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}]})
    for refused in [
        {"lines": [], "reservation_id": ""},
        {"lines": [], "reservation_id": "r1"},
        {"lines": [{"sku": "A", "qty": 1}], "reservation_id": ""},
        {"lines": [{"sku": "", "qty": 1}], "reservation_id": "r1"},
        {"lines": [{"sku": "A", "qty": 0}], "reservation_id": "r1"},
        {"lines": [{"sku": "A", "qty": 10**9 + 1}], "reservation_id": "r1"},
        {"lines": [{"sku": "A", "qty": 1}] * 101, "reservation_id": "r1"},
        {"lines": [{"sku": "A", "qty": 1}], "reservation_id": "r" * 201},
        {"lines": [{"sku": "A", "qty": 1}], "reservation_id": "r1", "ttl_s": 0},
    ]:
        assert not validator.is_valid(refused), refused
    responses = document["paths"]["/reservations"]["post"]["responses"]
    assert {"200", "201", "400", "401", "403", "409", "413", "422"} <= set(responses)


def test_the_webhook_operation_documents_its_answers_body_and_signature_headers(tmp_path: Path) -> None:
    document = _document(_apps(tmp_path)["ingress"])
    op = document["paths"]["/webhooks/{source}"]["post"]
    assert set(op["responses"]) == {"200", "202", "400", "401", "404", "409", "413", "415", "422", "431", "503"}
    headers = {p["name"]: p for p in op["parameters"] if p["in"] == "header"}
    assert set(headers) == {
        "x-webhook-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-shopify-hmac-sha256",
        "x-shopify-topic",
        "x-shopify-webhook-id",
        "x-wc-webhook-signature",
        "x-wc-webhook-topic",
        "x-wc-webhook-delivery-id",
        "stripe-signature",
    }
    assert all(p["schema"]["maxLength"] > 0 and p["description"] for p in headers.values())
    assert "orders/create" in headers["x-shopify-topic"]["description"]
    source = next(p for p in op["parameters"] if p["in"] == "path")
    assert source["schema"]["enum"] == ["shop", "svix"]
    assert op["requestBody"]["required"] is True
    # JSON for every event; WooCommerce's URL test (`webhook_id=<id>`) is form-encoded.
    assert set(op["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    assert "ping" in op["responses"]["200"]["description"]


def test_options_names_every_method_of_the_path(tmp_path: Path) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    apps = _apps(tmp_path)
    # No lifespan: OPTIONS is answered before any handler runs.
    notifier, inventory = TestClient(apps["channel-notifier"]), TestClient(apps["inventory"])
    assert notifier.options("/channels/x", headers=auth).headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    assert inventory.options("/reservations/r1", headers=auth).headers["allow"] == "DELETE, GET, OPTIONS"


def _json_body(document: dict[str, Any], method: str, path: str) -> jsonschema.Draft202012Validator:
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator(
        {**schema, "components": document["components"]}, format_checker=jsonschema.FormatChecker()
    )


def test_bodies_that_refuse_unknown_fields_say_so(tmp_path: Path) -> None:
    document = _document(_apps(tmp_path)["channel-notifier"])
    assert document["components"]["schemas"]["ReplayIn"]["additionalProperties"] is False
    channel_in = document["paths"]["/channels"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for variant in channel_in["oneOf"]:
        assert variant["additionalProperties"] is False
        assert variant["properties"]["name"]["pattern"]
        assert variant["properties"]["filters"]["oneOf"][0]["additionalProperties"] is False
    assert [v["properties"]["kind"]["enum"] for v in channel_in["oneOf"]] == [["webhook"], ["jetstream"]]
    assert not _json_body(document, "patch", "/channels/{name}").is_valid({"colour": "red"})


def test_a_channel_the_service_refuses_is_invalid_per_the_document(tmp_path: Path) -> None:
    document = _document(_apps(tmp_path)["channel-notifier"])
    validator = _json_body(document, "post", "/channels")
    secret = "whsec_" + "A" * 32
    for taken in [
        {"name": "a", "url": "https://shop.example/hook"},
        {"name": "a", "url": "http://localhost:8080/x", "secret": secret, "buffer": 3},
        {"name": "a", "kind": "webhook", "url": "https://93.184.215.14", "secrets": [secret], "secret": ""},
        {"name": "a", "kind": "jetstream", "filters": {"kinds": ["reserved", "availability"], "skus": ["A*"]}},
        {"name": "a", "kind": "jetstream", "url": None, "secret": "", "buffer": 0},
    ]:
        assert validator.is_valid(taken), taken
    for refused in [
        {"name": "a"},  # a webhook channel needs a url
        {"name": "a", "url": "http://shop.example/hook"},  # https unless the host is allowed
        {"name": "a", "url": "https://user:pw@shop.example/"},
        {"name": "a", "url": "https://2130706433/"},  # an address spelt as a number
        {"name": "a", "url": "https://shop.example/a b"},
        {"name": "a", "url": "https://shop.example", "secret": "not-a-secret"},
        {"name": "a", "url": "https://shop.example", "secrets": ["whsec_" + "A" * 28]},  # 21 bytes
        {"name": "a", "url": "https://shop.example", "filters": {"kinds": ["reserved"]}},
        {"name": "a", "url": "https://shop.example", "filters": {"kinds": []}},
        {"name": "a", "url": "https://shop.example", "filters": {"skus": [""]}},
        {"name": "a", "kind": "jetstream", "url": "http://localhost:1/x"},
        {"name": "a", "kind": "jetstream", "buffer": 3},
        {"name": "a", "kind": "jetstream", "secrets": [secret]},
        {"name": "a", "kind": "jetstream", "filters": {"kinds": ["nonsense"]}},
        {"name": "a", "kind": "carrier-pigeon"},
    ]:
        assert not validator.is_valid(refused), refused
    patch = _json_body(document, "patch", "/channels/{name}")
    assert patch.is_valid({"secrets": [], "generate_secret": True})
    assert not patch.is_valid({"secrets": []})
    assert {"409", "422"} <= set(document["paths"]["/channels/{name}"]["patch"]["responses"])


def test_ids_and_reasons_are_printable_characters_per_the_document(tmp_path: Path) -> None:
    document = _document(_apps(tmp_path)["inventory"])
    reservation = _json_body(document, "post", "/reservations")
    for identifier, printable in [("r-1 é/ü", True), ("r\x00", False), ("r\u2028", False), ("\u200b", False)]:
        body = {"reservation_id": identifier, "lines": [{"sku": identifier, "qty": 1}]}
        assert reservation.is_valid(body) is printable, identifier
    path = next(p for p in document["paths"]["/orders/{order_id}"]["get"]["parameters"] if p["in"] == "path")
    assert path["schema"]["pattern"] == printable_pattern(1, 200)
    discard = _json_body(document, "post", "/deadletters/discard")
    assert discard.is_valid({"seqs": [1], "reason": " duplicate order\n"})
    assert not discard.is_valid({"seqs": [1], "reason": "two\nlines"})
    assert not discard.is_valid({"seqs": [1], "reason": "  "})
    replay = _json_body(document, "post", "/deadletters/replay")
    assert replay.is_valid({"seqs": [1, 2]})
    assert replay.is_valid({"all": True, "subject": "commerce.*.order.>", "since": "2026-12-01T10:00:00Z"})
    assert not replay.is_valid({"seqs": [1], "all": True})
    assert not replay.is_valid({"seqs": [1], "subject": "commerce.>"})
    assert not replay.is_valid({"all": False})
    assert not replay.is_valid({"all": True, "consumer": "a\x1db"})  # white space to Python


_OPEN_BODIES = {"DeadLetterDetail"}
"""A dead letter in full: a dataclass of libs.deadletters (its schema leaves extra properties open)."""


@pytest.mark.parametrize("service", ["ingress", "inventory", "channel-notifier", "outbox-relay"])
def test_every_success_body_is_a_declared_closed_type(tmp_path: Path, service: str) -> None:
    document = _document(_apps(tmp_path)[service])
    schemas = document["components"]["schemas"]
    for method, path, op in _operations(document):
        for status, response in op["responses"].items():
            content = response.get("content", {}).get("application/json")
            if not status.startswith("2") or content is None:
                continue
            schema = content["schema"]
            refs = [schema] if "$ref" in schema else schema.get("oneOf", [])
            assert refs and all("$ref" in ref for ref in refs), (method, path, status, schema)
            for ref in refs:
                declared = schemas[ref["$ref"].rsplit("/", 1)[1]]
                assert declared["properties"] and declared["required"], (method, path, status, ref)
                if declared["title"] not in _OPEN_BODIES:
                    assert declared.get("additionalProperties") is False, (method, path, status, ref)
