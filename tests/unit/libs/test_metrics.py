"""Multiprocess metrics: one directory per service instance, emptied at start; dead workers marked."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import Gauge

from libs.metrics import mark_dead_workers, render_metrics, reset_multiprocess_dir
from libs.natsserver import free_port
from libs.server import service_name
from tests.support import eventually_sync

ROOT = Path(__file__).resolve().parents[3]

# A worker of a multiprocess server, in miniature: it writes its values to the directory and waits.
WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Gauge
    Gauge("test_circuit_open", "a live gauge", multiprocess_mode="livemax").set(1)
    Gauge("test_worker_up", "one per worker", multiprocess_mode="liveall").set(1)
    Counter("test_handled_total", "a counter").inc(3)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[str]]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    yield child
    child.kill()
    child.wait(timeout=10)


def test_a_killed_workers_gauges_disappear_and_its_counts_stay(worker: subprocess.Popen[str]) -> None:
    alive = render_metrics().decode()
    assert "test_circuit_open 1.0" in alive
    assert f'test_worker_up{{pid="{worker.pid}"}} 1.0' in alive
    worker.kill()
    # Exited, not yet collected by its parent (a zombie, as a worker is until the supervisor reaps it).
    os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
    dead = render_metrics().decode()
    assert "test_circuit_open" not in dead and "test_worker_up{" not in dead
    assert "test_handled_total 3.0" in dead, "what a dead worker counted still counts"
    worker.wait(timeout=10)
    assert mark_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"]) == [], "marked once"


def test_a_running_worker_is_never_marked(worker: subprocess.Popen[str]) -> None:
    assert mark_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"]) == []
    assert f'test_worker_up{{pid="{worker.pid}"}} 1.0' in render_metrics().decode()


def test_each_instance_has_one_stable_directory_emptied_at_start(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    first = reset_multiprocess_dir(tmp_path, "ingress", 8080)
    assert first == metrics / "ingress-8080" and first.is_dir()
    (first / "counter_123.db").write_bytes(b"left by the last run")
    (first / "nested").mkdir()
    # What earlier versions left: a new random directory per start.
    (metrics / "8080-k2j4h1x").mkdir()
    (metrics / "8080-k2j4h1x" / "gauge_livemax_99.db").write_bytes(b"stale")
    # Other instances sharing the data directory are not touched.
    for other in ("inventory-8081", "ingress-9090", "9090-abcdef"):
        (metrics / other).mkdir()
        (metrics / other / "counter_1.db").write_bytes(b"theirs")
    again = reset_multiprocess_dir(tmp_path, "ingress", 8080)
    assert again == first and again.is_dir() and not any(again.iterdir())
    remaining = sorted(p.name for p in metrics.iterdir())
    assert remaining == ["9090-abcdef", "ingress-8080", "ingress-9090", "inventory-8081"]
    assert all((metrics / other / "counter_1.db").exists() for other in ("inventory-8081", "ingress-9090"))
    # A single process keeps its metrics in memory: the directory is emptied and not created.
    (again / "counter_5.db").write_bytes(b"x")
    single = reset_multiprocess_dir(tmp_path, "ingress", 8080, create=False)
    assert not single.exists()


def test_service_names_of_factories() -> None:
    assert service_name("services.channel_notifier.app:create_app") == "channel_notifier"
    assert service_name("services.ingress.app:create_app") == "ingress"
    assert service_name("tests.unit.libs.metrics_app:create_app") == "metrics_app"


@pytest.mark.parametrize("service", ["ingress", "inventory", "channel_notifier", "outbox_relay"])
def test_service_gauges_are_dropped_with_their_worker(service: str) -> None:
    """Every gauge a service reports uses a live mode, the only ones `mark_process_dead` drops."""
    module = importlib.import_module(f"services.{service}.metrics")
    gauges = [g for g in vars(module).values() if isinstance(g, Gauge)]
    assert gauges or service == "ingress"
    for gauge in gauges:
        assert gauge._multiprocess_mode.startswith("live"), f"{gauge._name}: {gauge._multiprocess_mode}"


_UP = re.compile(r'^metrics_test_worker_up\{pid="(\d+)"\} 1\.0$', re.MULTILINE)


def test_a_server_with_workers_starts_clean_and_marks_a_killed_worker(tmp_path: Path) -> None:
    """libs.server.serve with two uvicorn workers: what a previous run left in the instance's metrics
    directory is gone, and a worker killed with SIGKILL (uvicorn starts another) leaves no gauge."""
    port = free_port()
    leftover = tmp_path / "metrics" / f"metrics_app-{port}"
    leftover.mkdir(parents=True)
    previous = "from prometheus_client import Counter; Counter('metrics_test_previous_run', 'x').inc()"
    subprocess.run([sys.executable, "-c", previous], check=True, timeout=60,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(leftover)})
    assert list(leftover.iterdir())
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    run = (f"from libs.server import serve; serve('tests.unit.libs.metrics_app:create_app', host='127.0.0.1', "
           f"port={port}, workers=2, data_dir={str(tmp_path)!r})")
    server = subprocess.Popen([sys.executable, "-c", run], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def two_workers(without: int = 0) -> set[int] | None:
            """The pids reporting a live gauge, once there are two (none of them ``without``)."""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                return None
            assert "metrics_test_previous_run" not in text, "the start must empty the metrics directory"
            pids = {int(pid) for pid in _UP.findall(text)}
            return pids if len(pids) == 2 and without not in pids else None

        first = eventually_sync(two_workers, timeout=60, what="two workers")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        after = eventually_sync(
            lambda: two_workers(without=victim), timeout=60,
            what="the killed worker's gauge gone and its replacement reporting",
        )
        assert after - first, "uvicorn started a replacement worker"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
