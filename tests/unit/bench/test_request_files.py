"""The requests files of bench.ingress (bench/loadgen.py's format) and what ingress makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ingress import SECRET, write_requests, write_shopify_requests
from bench.loadgen import _requests, parse_line, request_line
from libs.config import SourceSettings
from services.ingress.webhook import accept_webhook


def test_a_line_carries_headers_and_the_original_lines_still_read() -> None:
    line = request_line({"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": "ab+/=="}, '{"a":"b c"}')
    assert parse_line(line.encode()) == (
        [(b"X-Shopify-Topic", b"orders/create"), (b"X-Shopify-Hmac-Sha256", b"ab+/==")],
        b'{"a":"b c"}',
    )
    assert parse_line(b'0af3\t{"id":"e"}\n') == ([(b"X-Webhook-Signature", b"0af3")], b'{"id":"e"}')
    with pytest.raises(ValueError):
        request_line({"X-Bad": "a\tb"}, "{}")


def _delivered(path: Path, source_name: str, source: SourceSettings) -> list[tuple[str, str, int]]:
    out = []
    for raw in _requests(str(path), "127.0.0.1:1", f"/webhooks/{source_name}"):
        head, body = raw.split(b"\r\n\r\n", 1)
        headers = {
            name.decode().lower(): value.decode()
            for name, value in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        }
        assert int(headers["content-length"]) == len(body)
        event = accept_webhook(source_name, source, headers, body, max_body_bytes=1 << 20)
        out.append((event.subject, event.event_type, len(body)))
    return out


def test_both_sources_requests_are_accepted_by_ingress_and_the_same_size(tmp_path: Path) -> None:
    write_requests(tmp_path / "ce.txt", 30)
    write_shopify_requests(tmp_path / "shopify.txt", 30)
    ce = _delivered(tmp_path / "ce.txt", "bench", SourceSettings(scheme="commerce-engine", secrets=[SECRET]))
    shopify = _delivered(tmp_path / "shopify.txt", "shopify", SourceSettings(scheme="shopify", secrets=[SECRET]))
    assert {(subject, event_type) for subject, event_type, _ in ce} == {
        ("commerce.bench.order.created", "order.created")
    }
    assert {(subject, event_type) for subject, event_type, _ in shopify} == {
        ("commerce.shopify.orders.create", "orders/create")
    }
    assert [size for *_, size in shopify] == [size for *_, size in ce]
    assert 900 <= ce[0][2] <= 1100
