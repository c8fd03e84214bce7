"""One webhook, one trace: the four services run as processes with ``[tracing] exporter = "file"`` and the
spans they write share the trace id the webhook came in with, down to the channel's webhook."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.contracts import HEADER_TRACEPARENT
from libs.signing import generate_standard_secret
from stockwire.demo.sinks import Answer, ChannelSink, SinkServer
from stockwire.stack import DEV_SOURCE, dev_source_secret
from tests.commerce_engine import receipt
from tests.e2e.flash_sale.conftest import running_stack
from tests.support import ce_headers, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SERVICES = ("ingress", "inventory", "outbox-relay", "channel-notifier")


class RecordingSink(ChannelSink):
    """A channel that keeps the headers of every webhook it receives."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.seen_headers: list[dict[str, str]] = []

    async def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, Answer, bytes | None]:
        self.seen_headers.append(headers)
        return await super().receive(body, headers)


@pytest.fixture
async def sink() -> AsyncIterator[SinkServer]:
    server = await SinkServer(RecordingSink("storefront", [generate_standard_secret()])).start()
    try:
        yield server
    finally:
        await server.stop()


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def log_lines(directory: Path) -> list[dict[str, Any]]:
    """The JSON lines of every service's log under ``directory``."""
    return [
        json.loads(line)
        for log in directory.rglob("*.log")
        for line in log.read_text("utf-8", "replace").splitlines()
        if line.startswith("{")
    ]


async def test_one_webhook_is_one_trace_across_the_four_services(tmp_path: Path, sink: SinkServer) -> None:
    trace_file = tmp_path / "traces.jsonl"
    env = {
        "STOCKWIRE__TRACING__EXPORTER": "file",
        "STOCKWIRE__TRACING__PATH": str(trace_file),
        "STOCKWIRE__LOGGING__FORMAT": "json",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's batch processor: export within 0.1 s
    }
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    async with running_stack(tmp_path / "stack", env=env) as stack, httpx.AsyncClient(timeout=10) as http:
        channel = {"name": "storefront", "kind": "webhook", "url": sink.url, "secret": sink.sink.secrets[0]}
        admin = {"authorization": f"Bearer {stack.admin_token}"}
        response = await http.post(f"{stack.url('channel-notifier')}/channels", json=channel, headers=admin)
        assert response.status_code == 201, response.text

        body = json.dumps(receipt("traced-1", "SKU-TRACED", 5)).encode()
        headers = {**ce_headers(dev_source_secret(stack.data_dir, DEV_SOURCE), body)}
        headers[HEADER_TRACEPARENT] = f"00-{trace_id}-{caller_span}-01"
        response = await http.post(f"{stack.url('ingress')}/webhooks/{DEV_SOURCE}", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"

        # A refused webhook: ingress's log line about it carries the caller's trace id.
        refused_trace = secrets.token_hex(16)
        forged = {**headers, HEADER_TRACEPARENT: f"00-{refused_trace}-{caller_span}-01", "x-webhook-signature": "00"}
        response = await http.post(f"{stack.url('ingress')}/webhooks/{DEV_SOURCE}", content=body, headers=forged)
        assert response.status_code == 401, response.text

        # An event inventory cannot apply (a quantity past any bound): its dead-lettering line names its trace.
        poison_trace = secrets.token_hex(16)
        poison = json.dumps(receipt("poison-1", "SKU-POISON", 10**30)).encode()
        poisoned = {
            **ce_headers(dev_source_secret(stack.data_dir, DEV_SOURCE), poison),
            HEADER_TRACEPARENT: f"00-{poison_trace}-{caller_span}-01",
        }
        response = await http.post(f"{stack.url('ingress')}/webhooks/{DEV_SOURCE}", content=poison, headers=poisoned)
        assert response.status_code == 200, response.text

        def dead_lettered() -> list[dict[str, Any]]:
            lines = log_lines(tmp_path / "stack")
            return [line for line in lines if "poison-1" in line["message"] and "cannot be applied" in line["message"]]

        async def logged() -> list[dict[str, Any]] | None:
            return dead_lettered() or None

        poison_lines = await eventually(logged, timeout=20, what="inventory's line about the dead-lettered event")
        assert all(line["logger"].startswith("stockwire.inventory") for line in poison_lines), poison_lines
        assert all(line.get("trace_id") == poison_trace for line in poison_lines), poison_lines

        recording = sink.sink
        assert isinstance(recording, RecordingSink)

        async def delivered() -> bool:
            return recording.version("SKU-TRACED") is not None

        await eventually(delivered, timeout=30, what="the channel received the update")

        def of_the_trace() -> dict[str, list[dict[str, Any]]]:
            by_service: dict[str, list[dict[str, Any]]] = {}
            for span in spans(trace_file):
                if span["context"]["trace_id"] == f"0x{trace_id}":
                    by_service.setdefault(span["resource"]["attributes"]["service.name"], []).append(span)
            return by_service

        async def all_four() -> dict[str, list[dict[str, Any]]] | None:
            found = of_the_trace()
            return found if all(f"stockwire-{s}" in found for s in SERVICES) else None

        found = await eventually(all_four, timeout=20, what=f"spans of trace {trace_id} from all four services")

    names = {service: sorted(span["name"] for span in found[f"stockwire-{service}"]) for service in SERVICES}
    assert names["ingress"] == ["ingress publish", "ingress verify", "ingress webhook"]
    assert names["inventory"] == ["inventory apply"]
    assert set(names["outbox-relay"]) == {"outbox-relay publish"}
    assert set(names["channel-notifier"]) == {"channel-notifier deliver"}

    # The webhook span is the child of the caller's span; every other span's parent is in the trace.
    every = [span for service_spans in found.values() for span in service_spans]
    ids = {span["context"]["span_id"] for span in every}
    webhook = next(span for span in found["stockwire-ingress"] if span["name"] == "ingress webhook")
    assert webhook["parent_id"] == f"0x{caller_span}"
    assert all(span["parent_id"] in ids for span in every if span is not webhook)

    # The ledger effect, with no customer data.
    (apply,) = found["stockwire-inventory"]
    attributes = apply["attributes"]
    assert attributes["stockwire.outcome"] == "applied"
    assert attributes["stockwire.event_type"] == "inventory.received"
    assert list(attributes["stockwire.kinds"]) == ["received"]
    assert list(attributes["stockwire.skus"]) == ["SKU-TRACED"]

    # The channel's webhook carries the delivery attempt's context on.
    (deliver,) = (s for s in found["stockwire-channel-notifier"] if s["attributes"]["stockwire.sku"] == "SKU-TRACED")
    sent = [h[HEADER_TRACEPARENT] for h in recording.seen_headers if HEADER_TRACEPARENT in h]
    assert f"00-{trace_id}-{deliver['context']['span_id'][2:]}-01" in sent

    # JSON log lines (``[logging] format = "json"``).
    lines = log_lines(tmp_path / "stack")
    assert lines and all("message" in line for line in lines)
    refusals = [line for line in lines if "refused" in line["message"]]
    assert any(entry.get("trace_id") == refused_trace for entry in refusals), refusals
