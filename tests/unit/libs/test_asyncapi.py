"""The AsyncAPI document of the bus: valid AsyncAPI 3.0, and true to the declarations it is built from."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from libs import contracts
from libs.asyncapi import asyncapi_document
from libs.config import TopologySettings
from libs.subjects import commerce_subject, deadletter_discarded_subject, deadletter_subject, inventory_subject
from libs.topology import topology_specs

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / ".tools/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SPEC.is_file():
        pytest.fail(f"{SPEC} is missing: `make tools` installs the AsyncAPI schemas")
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Through JSON, as a reader of the printed document gets it.
    return json.loads(json.dumps(asyncapi_document(TopologySettings(replicas=3), version="1.2.3")))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_asyncapi_3(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> None:
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0" and document["info"]["version"] == "1.2.3"


def test_the_validator_refuses_a_broken_document(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    broken = copy.deepcopy(document)
    broken["operations"]["ingressPublishesWebhooks"]["action"] = "publish"  # AsyncAPI 2's word
    assert list(validator.iter_errors(broken))


def test_durations_are_written_out(document: dict[str, Any]) -> None:
    descriptions = [channel["description"] for channel in document["channels"].values()]
    assert not [d for d in descriptions if re.search(r"\de[+-]\d", d)], "a duration with an exponent"
    assert any("entries expire after 2,592,000 s" in d for d in descriptions)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) > 10
    for ref in refs:
        assert _resolve(document, ref) is not None


def test_every_declared_stream_consumer_and_bucket_is_described(document: dict[str, Any]) -> None:
    streams, buckets, consumers = topology_specs(TopologySettings(replicas=3))
    text = json.dumps(document)
    for stream in streams:
        assert f"Stream `{stream.name}`" in text and "3 replica(s)" in text
    for bucket in buckets:
        assert f"kv-{bucket.bucket}" in document["channels"]
    summaries = [op["summary"] for op in document["operations"].values() if op["action"] == "receive"]
    for consumer in consumers:
        assert any(f"`{consumer.stream}/{consumer.durable}`" in s for s in summaries), consumer.durable


def test_headers_are_the_ones_the_services_write(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    webhook = messages["Webhook"]["headers"]["properties"]
    assert {contracts.HEADER_MSG_ID, contracts.HEADER_SOURCE, contracts.HEADER_EVENT_TYPE} <= webhook.keys()
    dead = messages["DeadLetter"]["headers"]["properties"]
    assert set(contracts.DEADLETTER_HEADERS) <= dead.keys()
    assert {contracts.HEADER_ORIGINAL_MSG_ID, contracts.HEADER_REPLAY_OF} <= dead.keys()
    replay = {contracts.HEADER_REPLAY_OF, contracts.HEADER_ORIGINAL_MSG_ID}
    for name in ("Webhook", "InventoryEvent", "AvailabilityChanged"):
        headers = messages[name]["headers"]
        assert replay <= headers["properties"].keys() and not replay & set(headers["required"]), name
        assert "replay:<deadletter seq>:<original id>" in headers["properties"][contracts.HEADER_MSG_ID]["description"]


def test_payload_schemas_are_generated_from_the_message_types(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for struct in (contracts.InventoryEvent, contracts.AvailabilityChanged):
        assert set(schemas[struct.__name__]["properties"]) == set(struct.__struct_fields__)
    event = contracts.InventoryEvent(kind="reserved", sku="A", qty=1, version=1, occurred_at="t")
    jsonschema.validate(json.loads(contracts.encode(event)), {**schemas["InventoryEvent"], "components": {}})


@pytest.mark.parametrize(
    ("channel", "subject"),
    [
        ("commerce", commerce_subject("shop", "order.created")),
        ("inventoryEvents", inventory_subject("reserved", "TEE RED/M")),
        ("availability", inventory_subject("availability", "TEE.RED")),
        ("deadletter", deadletter_subject("inventory", commerce_subject("shop", "order.created"))),
        ("deadletterDiscarded", deadletter_discarded_subject("inventory")),
    ],
)
def test_channel_addresses_match_the_subjects_the_builders_make(
    document: dict[str, Any], channel: str, subject: str
) -> None:
    address = document["channels"][channel]["address"]
    params = document["channels"][channel]["parameters"]
    assert set(re.findall(r"\{(\w+)\}", address)) == set(params)
    # A parameter is one token, except the event type and the dead letter's original subject (dotted).
    pattern = re.escape(address).replace(r"\{original_subject\}", r".+").replace(r"\{event_type\}", r".+")
    pattern = re.sub(r"\\\{\w+\\\}", r"[^.]+", pattern)
    assert re.fullmatch(pattern, subject), (address, subject)


def test_the_cli_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stockwire", "topology", "asyncapi"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    printed = json.loads(out.stdout)
    assert printed["asyncapi"] == "3.0.0" and "commerce" in printed["channels"]
