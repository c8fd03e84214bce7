"""CPU time per order of each process of a Stockwire run, read from the OS (psutil).

A :class:`CpuMeter` reads the user + system CPU time of named processes (each with its live descendants)
before and after a sale; :func:`ms_per_order` turns the two readings and the sale's order count into
CPU-milliseconds per order (``stockwire demo`` prints them, ``bench.flash_sale`` per step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

from stockwire.stack import Stack

from .channels import SinkProcess

__all__ = ["SERVICES_AND_NATS", "SUM", "CpuMeter", "ms_per_order", "process_cpu_s", "stack_meter"]

SERVICES_AND_NATS = ("ingress", "inventory", "outbox-relay", "channel-notifier", "nats-server")
"""The processes whose sum is the figure an operator pays for."""
SUM = "services + nats"


def process_cpu_s(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU seconds of ``pid`` (and, with ``descendants``, of its live children and their
    reaped children); 0 for a process that is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *(root.children(recursive=True) if descendants else ())]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if descendants:
            total += times.children_user + times.children_system
    return total


@dataclass
class CpuMeter:
    """The processes of a run by name: ``pids`` counted with their descendants, ``own`` without (this
    process, whose descendants are the other processes)."""

    pids: Mapping[str, int]
    own: Mapping[str, int] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        reading = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        reading.update({name: process_cpu_s(pid, descendants=False) for name, pid in self.own.items()})
        return reading


def ms_per_order(before: Mapping[str, float], after: Mapping[str, float], orders: int) -> dict[str, float]:
    """CPU-milliseconds per order of each process between two readings (seconds), and :data:`SUM`, the
    four services and nats-server together (when all were read). Empty when no order was sent."""
    if orders <= 0:
        return {}
    result = {name: max(0.0, after[name] - before[name]) * 1000 / orders for name in after if name in before}
    if all(name in result for name in SERVICES_AND_NATS):
        result[SUM] = sum(result[name] for name in SERVICES_AND_NATS)
    return result


def stack_meter(stack: Stack, sinks: SinkProcess) -> CpuMeter:
    """Every process of a Stockwire run: the services, nats-server, the sinks, and this one (the simulator
    and load generator, its children not counted)."""
    pids = {name: child.pid for name, child in stack.children.items() if child.pid is not None}
    if stack.nats is not None and stack.nats.process is not None:
        pids["nats-server"] = stack.nats.process.pid
    if sinks.child.pid is not None:
        pids["sinks"] = sinks.child.pid
    return CpuMeter(pids, own={"simulator": os.getpid()})
