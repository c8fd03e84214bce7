"""Generated requests (schemathesis, from each service's own OpenAPI document) against the running
services: valid and invalid ones alike, none may be answered with a 5xx, and every answer must be one the
document describes (status code, content type, body schema); requests the document calls invalid, without
the bearer token, or with a method it does not list must be refused, and those it calls valid must be taken
(but for the refusals no document can state, see ``_unexpressible_refusal``). With the bounds below, about
two minutes for all four on two cores."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from libs.natsserver import NatsServer
from tests.support import eventually, service_ready, started_service

pytestmark = pytest.mark.e2e

TOKEN = "fuzz-admin-token"
EXAMPLES_PER_OPERATION = 150
"""Per operation, valid and invalid requests mixed (fewer missed the 2^64 delivery id of issue 13)."""
CONFIG = SchemathesisConfig.from_str(
    # 413 (body over the limit) and 431 (a header over its limit) are refusals too.
    "[checks.negative_data_rejection]\nexpected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 431]\n"
)
# schemathesis 4's response checks; positive_data_acceptance is added per request, see _unexpressible_refusal.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
]


_DNS_REASONS = frozenset({"unresolvable_host", "address_not_allowed"})


def _unexpressible_refusal(case: schemathesis.Case, status: int, body: bytes) -> bool:
    """The refusals of valid requests that an OpenAPI document cannot rule out, so positive_data_acceptance
    is not asked of them (each operation's document names the answer):

    - a channel's URL whose host does not resolve, or resolves (or is an address) outside the global
      ones: the document's pattern takes every well-formed https URL, for what a name resolves to is
      only known when it is registered (422 ``url_refused``, reason ``unresolvable_host`` or
      ``address_not_allowed``);
    - dead-letter filters whose ``since`` is not before their ``until``, and a reservation whose lines
      of one SKU sum past the most one line may ask: relations between two values, which JSON Schema
      cannot state (400 ``invalid_filter``, 422 ``invalid_reservation``);
    - a form-encoded webhook other than WooCommerce's URL test, the one form ingress takes: unsigned, to a
      source of that scheme. A document cannot tie a content type to a path parameter's value or to
      headers left out (415);
    - a channel replay ``since`` a time JetStream cannot start a consumer at (after 2262-04-11 or before
      1677-09-21): a ``date-time`` format takes every year (422 ``invalid_since``).
    """
    if status == 422 and case.operation.path == "/channels/{name}/replay":
        return json.loads(body).get("error") == "invalid_since"
    if status == 422 and case.method in {"POST", "PATCH"} and case.operation.path.startswith("/channels"):
        answer = json.loads(body)
        return answer.get("error") == "url_refused" and answer.get("reason") in _DNS_REASONS
    if status == 400 and case.operation.path in {"/deadletters", "/deadletters/replay"}:
        return json.loads(body) == {"error": "invalid_filter", "detail": "since must be before until"}
    if status == 422 and case.operation.path == "/reservations":
        detail = json.loads(body).get("detail", "")
        return detail.startswith("a SKU's summed quantity must not exceed")
    if status == 415 and case.operation.path == "/webhooks/{source}":
        return case.media_type == "application/x-www-form-urlencoded"
    return False


@pytest.fixture
def service(
    request: pytest.FixtureRequest, nats_server: NatsServer, js: JetStreamContext, tmp_path: Path
) -> Iterator[int]:
    """One service process, ready (the topology declared: the streams and consumers its readiness needs)."""
    package, section = request.param
    env = {
        "STOCKWIRE_ADMIN_TOKEN": TOKEN,
        # Ingress verifies before it reads: generated requests are answered 401 (or 404 for other names),
        # whatever the source's scheme; a WooCommerce source answers its platform's ping with 200.
        "STOCKWIRE__SOURCES__SHOP__SECRETS": "fuzz-secret",
        "STOCKWIRE__SOURCES__SVIX__SCHEME": "standard-webhooks",
        "STOCKWIRE__SOURCES__SVIX__SECRETS": "whsec_ZnV6ei1zZWNyZXQ=",
        "STOCKWIRE__SOURCES__SHOPIFY__SCHEME": "shopify",
        "STOCKWIRE__SOURCES__SHOPIFY__SECRETS": "shpss_fuzz-secret",
        "STOCKWIRE__SOURCES__WOO__SCHEME": "woocommerce",
        "STOCKWIRE__SOURCES__WOO__SECRETS": "fuzz-secret",
        "STOCKWIRE__SOURCES__STRIPE__SCHEME": "stripe",
        "STOCKWIRE__SOURCES__STRIPE__SECRETS": "whsec_fuzz-secret",
    }
    with started_service(package, section, nats_url=nats_server.url, tmp_path=tmp_path, env=env) as port:
        yield port


@pytest.mark.parametrize(
    "service",
    [
        ("inventory", "inventory"),
        ("channel_notifier", "channel-notifier"),
        ("ingress", "ingress"),
        ("outbox_relay", "outbox-relay"),
    ],
    indirect=True,
    ids=["inventory", "channel-notifier", "ingress", "outbox-relay"],
)
async def test_generated_requests_conform_to_the_document(service: int) -> None:
    await eventually(lambda: asyncio.to_thread(service_ready, service), timeout=30, what="service ready")
    base_url = f"http://127.0.0.1:{service}"
    await asyncio.to_thread(_fuzz, base_url)


def _fuzz(base_url: str) -> None:
    with urllib.request.urlopen(f"{base_url}/schema/openapi.json", timeout=10) as response:
        document = json.load(response)
    validate(document)  # a valid OpenAPI 3.1 document
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    schema = schemathesis.openapi.from_dict(document, config=CONFIG)
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operation"
    for operation in operations:
        strategy = st.one_of(operation.as_strategy(mode) for mode in GenerationMode)

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def call(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            # A case whose headers were made invalid on purpose (the bearer token left out, say) is sent as
            # it is: the token added back would turn it into a valid request.
            header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
            mutated = header is not None and header.mode is GenerationMode.NEGATIVE
            headers = {} if mutated else {"authorization": f"Bearer {TOKEN}"}
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            checks = list(CHECKS)
            if not _unexpressible_refusal(case, response.status_code, response.content):
                checks.append(positive_data_acceptance)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except (AssertionError, FailureGroup) as exc:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:200]}: "
                    f"{str(exc)[:600]}"
                )

        call()
    # An operation without parameters has one request to make; the others many.
    print(f"{base_url}: {calls} requests for {len(operations)} operations, {len(failures)} failures")
    assert calls >= len(operations), f"only {calls} requests for {len(operations)} operations"
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])
