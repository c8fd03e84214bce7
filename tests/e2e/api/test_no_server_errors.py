"""Generated requests (schemathesis, from each service's own OpenAPI document) against the running
services: valid and invalid ones alike, none may be answered with a 5xx."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from libs.natsserver import NatsServer
from tests.support import eventually, service_process

pytestmark = pytest.mark.e2e

TOKEN = "fuzz-admin-token"
EXAMPLES_PER_OPERATION = 150
"""Per operation, valid and invalid requests mixed (fewer missed the 2^64 delivery id of issue 13): ~40 s in all."""


@pytest.fixture
def service(request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path) -> Iterator[int]:
    package, section = request.param
    port, child = service_process(
        package,
        section,
        nats_url=nats_server.url,
        data_dir=tmp_path / "data",
        log=tmp_path / f"{package}.log",
        settings={},
        env={"STOCKWIRE_ADMIN_TOKEN": TOKEN},
    )
    child.start()
    try:
        yield port
    finally:
        child.kill()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize(
    "service",
    [("inventory", "inventory"), ("channel_notifier", "channel-notifier")],
    indirect=True,
    ids=["inventory", "channel-notifier"],
)
async def test_generated_requests_never_get_a_server_error(service: int) -> None:
    await eventually(lambda: asyncio.to_thread(_healthy, service), timeout=30, what="service healthy")
    base_url = f"http://127.0.0.1:{service}"
    await asyncio.to_thread(_fuzz, base_url)


def _fuzz(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    server_errors: list[str] = []
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
            response = case.call(base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )

        call()
    assert calls >= len(operations) * 5, f"only {calls} requests for {len(operations)} operations"
    assert not server_errors, "\n".join(server_errors)
