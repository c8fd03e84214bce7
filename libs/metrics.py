"""Prometheus metrics shared by every service (names: ``<service>_<what>_<unit>``)."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "render_metrics"]

# Seconds; fine-grained below 100 ms where webhook latencies live, coarse up to a minute for retries.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def render_metrics() -> bytes:
    """The exposition text; aggregates all worker processes when running with several workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
