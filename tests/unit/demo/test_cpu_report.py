"""stockwire demo's summary: the CPU each order cost the services and NATS."""

from __future__ import annotations

from stockwire.demo.cpu import SERVICES_AND_NATS, ms_per_order
from stockwire.demo.run import _cpu_lines


def test_the_summary_names_the_sum_and_each_process() -> None:
    before = dict.fromkeys(SERVICES_AND_NATS, 0.0)
    after = dict.fromkeys(SERVICES_AND_NATS, 1.0) | {"nats-server": 3.0}
    (line,) = _cpu_lines(ms_per_order(before, after, 1000))
    assert "7.00 ms per order for the services and NATS" in line
    assert "ingress 1.00" in line and "nats-server 3.00" in line


def test_no_line_when_a_process_could_not_be_read() -> None:
    assert _cpu_lines({"ingress": 1.0}) == []
    assert _cpu_lines({}) == []
