"""JetStream durability: the embedded nats-server fsyncs before every ack unless told otherwise, and
`stockwire up` says so at start when the server it uses may acknowledge before the disk has the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from libs.natsserver import NatsServer, check_sync_interval, free_port, jetstream_syncs, sync_warning
from stockwire.stack import Stack


@pytest.mark.parametrize(("interval", "syncs"), [("always", True), ("2m", False), ("500ms", False)])
def test_the_embedded_server_runs_with_the_configured_sync_interval(tmp_path: Path, interval: str, syncs: bool) -> None:
    with NatsServer(store_dir=tmp_path / "nats", sync_interval=interval, monitor_port=free_port()) as server:
        assert server.monitor_url is not None
        assert jetstream_syncs(server.monitor_url) is syncs
        assert (sync_warning(server.monitor_url) is None) is syncs


def test_the_default_is_sync_always(tmp_path: Path) -> None:
    with NatsServer(store_dir=tmp_path / "nats", monitor_port=free_port()) as server:
        assert server.monitor_url is not None and jetstream_syncs(server.monitor_url) is True


@pytest.mark.parametrize("value", ["", "never", "2", "always }", "-1s", "1e9s", "2m\nhttp: 1"])
def test_a_sync_interval_that_is_not_always_or_a_duration_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="sync interval"):
        check_sync_interval(value)


def test_what_cannot_be_seen_is_said_rather_than_assumed() -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert jetstream_syncs(unreachable) is None
    assert "cannot read" in (sync_warning(unreachable) or "")
    assert "monitor_url" in (sync_warning(None) or "")


@pytest.mark.parametrize(("interval", "warned"), [("2m", True), ("always", False)])
def test_stockwire_up_warns_at_start_when_nats_does_not_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interval: str, warned: bool
) -> None:
    stack = Stack(data_dir=tmp_path / "data", services=(), nats_port=free_port(), embedded_sync_interval=interval)
    try:
        stack.start(ready_timeout_s=30)
    finally:
        stack.stop()
    err = capsys.readouterr().err
    assert ("does not fsync before acknowledging" in err) is warned, err


def test_topology_apply_warns_when_nats_does_not_sync(tmp_path: Path) -> None:
    with NatsServer(store_dir=tmp_path / "nats", sync_interval="2m", monitor_port=free_port()) as server:
        env = {
            **os.environ,
            "STOCKWIRE_NATS_URL": server.url,
            "STOCKWIRE_DATA_DIR": str(tmp_path / "data"),
            "STOCKWIRE__NATS__MONITOR_URL": server.monitor_url or "",
        }
        done = subprocess.run(
            [sys.executable, "-m", "stockwire", "topology", "apply"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert "does not fsync before acknowledging" in done.stderr
