"""bench/cpu.py: CPU-milliseconds per order from two readings and an order count."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from bench.cpu import SERVICES_AND_NATS, SUM, CpuMeter, hmac_check_ms, ms_per_order, signed_post_ms


def test_ms_per_order_divides_each_delta_by_the_orders_and_sums_the_services_and_nats() -> None:
    before = dict.fromkeys(SERVICES_AND_NATS, 1.0) | {"simulator": 5.0, "sinks": 2.0}
    after = {name: seconds + 0.5 for name, seconds in before.items()} | {"simulator": 7.0}
    result = ms_per_order(before, after, 250)
    assert result["ingress"] == pytest.approx(2.0)  # 500 ms over 250 orders
    assert result["simulator"] == pytest.approx(8.0)
    assert result["sinks"] == pytest.approx(2.0)
    assert result[SUM] == pytest.approx(10.0)  # five processes at 2 ms each; the simulator and sinks apart


def test_ms_per_order_without_orders_or_without_every_service() -> None:
    assert ms_per_order({"ingress": 1.0}, {"ingress": 2.0}, 0) == {}
    partial = ms_per_order({"ingress": 1.0}, {"ingress": 2.0, "inventory": 3.0}, 10)
    assert partial == {"ingress": pytest.approx(100.0)}
    # A process restarted between the readings (its counter went down) counts as none, never negative.
    assert ms_per_order({"inventory": 5.0}, {"inventory": 1.0}, 10) == {"inventory": 0.0}


def test_meter_reads_this_process_and_a_floor_is_positive() -> None:
    reading = CpuMeter({"tests": os.getpid()}, own={"own": os.getpid()}).read()
    assert reading["tests"] >= reading["own"] > 0
    assert 0 < hmac_check_ms(200) < 1


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str | None, int, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.seen.append((self.path, self.headers.get("webhook-signature"), len(body), self.client_address[1]))
        self.send_response(422)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_post_floor_signs_each_request_on_one_kept_alive_connection() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Sink.seen = []
    try:
        port = server.server_address[1]
        assert signed_post_ms(f"http://127.0.0.1:{port}/hook", "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", n=20) > 0
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Sink.seen) == 21  # one before the measurement, then n
    assert all(
        path == "/hook" and signature and signature.startswith("v1,") and size == 1000
        for path, signature, size, _ in _Sink.seen
    )
    assert len({client_port for *_, client_port in _Sink.seen}) == 1
    with pytest.raises(ValueError, match="plain http"):
        signed_post_ms("https://127.0.0.1:1/hook", "whsec_x")
