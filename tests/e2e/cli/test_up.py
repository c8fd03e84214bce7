"""``stockwire up`` as a user runs it: embedded NATS, a service, a signed webhook, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from libs.natsserver import free_port
from tests.support import eventually_sync

pytestmark = pytest.mark.e2e


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_starts_nats_and_ingress_accepts_a_sent_webhook_and_stops_cleanly(tmp_path: Path) -> None:
    nats_port, ingress_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    env = {**os.environ, "STOCKWIRE__INGRESS__PORT": str(ingress_port)}
    env.pop("STOCKWIRE_NATS_URL", None)
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stockwire",
            "up",
            "--services",
            "ingress",
            "--data-dir",
            str(data_dir),
            "--nats-port",
            str(nats_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        eventually_sync(lambda: _answers(f"http://127.0.0.1:{ingress_port}/healthz"), timeout=60, what="ingress up")
        assert _port_open(nats_port), "the embedded nats-server listens on the chosen port"
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "stockwire",
                "send",
                "--data-dir",
                str(data_dir),
                "--url",
                f"http://127.0.0.1:{ingress_port}",
                "--id",
                "evt-up-1",
                "inventory.received",
                '{"sku": "A", "qty": 3}',
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert '"status":"accepted"' in sent.stdout
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=30)
        assert up.returncode == 0, output
        assert "Stockwire is up." in output and f"127.0.0.1:{ingress_port}" in output
        assert "stockwire up: stopped" in output
        assert not _port_open(ingress_port) and not _port_open(nats_port), "nothing is left running"
        assert (data_dir / "nats" / "jetstream").is_dir(), "the NATS store lives under the data dir"
    finally:
        if up.poll() is None:
            # SIGTERM first: `up` stops its children; a SIGKILL would leave them running.
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
