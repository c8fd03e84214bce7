"""Prometheus metrics shared by every service (names: ``<service>_<what>_<unit>``).

With several uvicorn workers, prometheus_client's multiprocess mode keeps every worker's values in
files of one directory (``PROMETHEUS_MULTIPROC_DIR``), which the scrape aggregates. Its rules, from
the prometheus_client documentation ("Multiprocess Mode"): the directory must be emptied before the
processes start, and a dead worker must be marked with ``mark_process_dead``, which drops the files
of its ``live*`` gauges (counters and histograms of a dead worker stay: what it counted happened).
Gauges of the services therefore use the ``live*`` modes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "mark_dead_workers",
    "render_metrics",
    "reset_multiprocess_dir",
]

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
    """The exposition text; aggregates all worker processes when running with several workers.

    In multiprocess mode, workers that have died since the last scrape are marked first, so that
    their gauges are not reported as current values.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(DEFAULT_REGISTRY)
    mark_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    for _ in range(2):
        try:
            return generate_latest(registry)
        except FileNotFoundError:
            # Another worker's scrape removed a dead worker's file between listing and reading it.
            continue
    return generate_latest(registry)


# prometheus_client names the files of live gauges gauge_live<mode>_<pid>.db.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process of this host's (or container's) pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        # "pid (comm) S ...": a zombie has exited and waits for its parent to collect it.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def mark_dead_workers(path: str | Path) -> list[int]:
    """Mark every process with live-gauge files in ``path`` that is no longer running as dead.

    Workers share the pid namespace of the server that started them (one container), so a pid that
    does not run is a worker that died, however it died (SIGKILL included). Returns the marked pids.
    """
    dead = []
    for entry in os.scandir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if match and not _alive(pid := int(match.group(1))) and pid not in dead:
            # Workers scrape concurrently: another may be removing the same files.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
            dead.append(pid)
    return dead


def reset_multiprocess_dir(data_dir: str | Path, service: str, port: int, *, create: bool = True) -> Path:
    """The metrics directory of one service instance, emptied: ``<data_dir>/metrics/<service>-<port>``.

    One stable path per service and port (the port tells instances that share a data directory
    apart), so that a restart reuses and empties it instead of leaving another directory behind; on
    a persistent volume nothing else would ever remove them. Directories an earlier version left
    (``<port>-<random>``) are removed too. The directory is returned empty, and created unless
    ``create`` is false (a single process, which keeps its metrics in memory).
    """
    root = Path(data_dir) / "metrics"
    path = root / f"{service}-{port}"
    for leftover in [path, *root.glob(f"{port}-*")]:
        if leftover.is_dir():
            shutil.rmtree(leftover)
    if create:
        path.mkdir(parents=True)
    return path
