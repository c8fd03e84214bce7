"""bench/cpu.py: CPU-milliseconds per order from two readings and an order count."""

from __future__ import annotations

import os

import pytest

from bench.cpu import SERVICES_AND_NATS, SUM, CpuMeter, hmac_check_ms, ms_per_order


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
