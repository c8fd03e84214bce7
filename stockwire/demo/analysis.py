"""Pure figures for the report: percentiles, webhook → channel latency, channel convergence, time series."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Arrival",
    "ChannelDivergence",
    "LatencySummary",
    "channel_divergences",
    "histogram",
    "latencies_to_channels",
    "percentile",
    "rates",
    "summarise",
]

Arrival = tuple[str, int, int, float]
"""(sku, version, available, wall-clock arrival) as a sink records it."""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in [0, 100]); NaN when empty.

    The one percentile of the demo, the simulator and the benchmarks. Nearest rank rather than
    ``statistics.quantiles``' interpolation on purpose: a reported p99 is always a latency that was
    observed, and on a small sample it errs high, which is the safe side for a latency target.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    missing: int = 0
    """Changes a channel never reflected (it should be 0 once everything converged)."""

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": _round(self.p50_ms),
            "p95_ms": _round(self.p95_ms),
            "p99_ms": _round(self.p99_ms),
            "max_ms": _round(self.max_ms),
            "missing": self.missing,
        }


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 2)


def summarise(seconds: Sequence[float], missing: int = 0) -> LatencySummary:
    ms = [s * 1000 for s in seconds]
    return LatencySummary(
        len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), max(ms, default=math.nan), missing
    )


class _Reach:
    """For one channel and SKU: when the channel first showed a version at least ``v``."""

    def __init__(self, arrivals: Iterable[tuple[int, float]]) -> None:
        self.max_versions: list[int] = []
        self.times: list[float] = []
        best = -1
        for version, at in sorted(arrivals, key=lambda a: a[1]):
            if version > best:
                best = version
                self.max_versions.append(version)
                self.times.append(at)

    def first_at(self, version: int) -> float | None:
        index = bisect.bisect_left(self.max_versions, version)
        return self.times[index] if index < len(self.times) else None


def latencies_to_channels(
    changes: Mapping[tuple[str, int], float],
    arrivals: Mapping[str, Sequence[Arrival]],
) -> tuple[dict[str, list[float]], list[float], int]:
    """Latency from each change's start to each channel, and to the last of all channels.

    ``changes`` maps (SKU, version) of every availability snapshot to when its cause started (the
    webhook's send time, or the ledger time). A channel reflects version ``v`` at the first arrival of
    any version ``>= v`` (the notifier coalesces pending updates to the newest). Returns per-channel
    latencies, all-channel latencies and how many changes some channel never reflected.
    """
    reach: dict[str, dict[str, _Reach]] = {}
    for channel, rows in arrivals.items():
        by_sku: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for sku, version, _available, at in rows:
            by_sku[sku].append((version, at))
        reach[channel] = {sku: _Reach(items) for sku, items in by_sku.items()}
    per_channel: dict[str, list[float]] = {channel: [] for channel in arrivals}
    all_channels: list[float] = []
    missing = 0
    for (sku, version), started in changes.items():
        slowest = 0.0
        complete = True
        for channel, skus in reach.items():
            seen = skus.get(sku)
            reached = seen.first_at(version) if seen else None
            if reached is None:
                complete = False
                continue
            latency = max(0.0, reached - started)
            per_channel[channel].append(latency)
            slowest = max(slowest, latency)
        if complete and reach:
            all_channels.append(slowest)
        else:
            missing += 1
    return per_channel, all_channels, missing


@dataclass(frozen=True, slots=True)
class ChannelDivergence:
    channel: str
    sku: str
    expected_available: int
    expected_version: int
    cached_available: int | None
    cached_version: int | None

    def __str__(self) -> str:
        return (
            f"{self.channel}/{self.sku}: shows {self.cached_available} (v{self.cached_version}), "
            f"expected {self.expected_available} (v{self.expected_version})"
        )


def channel_divergences(
    final: Mapping[str, tuple[int, int]],
    caches: Mapping[str, Mapping[str, tuple[int, int]]],
    buffers: Mapping[str, int],
) -> list[ChannelDivergence]:
    """Every (channel, SKU) whose cache differs from ``final`` (SKU → (available, version)) less the buffer."""
    out = []
    for channel, cache in caches.items():
        buffer = max(0, buffers.get(channel, 0))
        for sku, (available, version) in sorted(final.items()):
            want = max(0, available - buffer)
            have = cache.get(sku)
            if have != (want, version):
                shown, seen = have if have is not None else (None, None)
                out.append(ChannelDivergence(channel, sku, want, version, shown, seen))
    return out


def histogram(values_ms: Sequence[float], bins: int = 30) -> list[tuple[float, float, int]]:
    """Equal-width bins over [0, p99.9] plus one overflow bin: (low, high, count)."""
    if not values_ms:
        return []
    top = max(percentile(values_ms, 99.9), 1.0)
    width = top / bins
    counts = [0] * (bins + 1)
    for value in values_ms:
        counts[min(bins, int(value / width))] += 1
    edges = [(i * width, (i + 1) * width) for i in range(bins)] + [(top, max(values_ms))]
    return [(round(lo, 3), round(hi, 3), n) for (lo, hi), n in zip(edges, counts, strict=True) if n or lo < top]


def rates(times: Sequence[float], start: float, bucket_s: float = 1.0) -> list[tuple[float, int]]:
    """Events per bucket: (seconds since ``start``, count), every bucket up to the last event."""
    if not times:
        return []
    buckets: dict[int, int] = defaultdict(int)
    for at in times:
        buckets[int((at - start) // bucket_s)] += 1
    last = max(buckets)
    return [(i * bucket_s, buckets.get(i, 0)) for i in range(min(0, min(buckets)), last + 1)]
