"""Child processes and the ports handed to the servers they run."""

from __future__ import annotations

import io
import socket
import sys
from pathlib import Path

from libs.natsserver import free_port
from libs.processes import ChildProcess


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError:
        return 32768


def test_free_ports_are_distinct_bindable_and_outside_the_range_outgoing_connections_use() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    assert all(port < _ephemeral_start() for port in ports)
    for port in ports[:10]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_an_exited_child_tells_its_last_lines() -> None:
    script = "import sys\nfor i in range(30): print('line', i)\nsys.exit(3)"
    child = ChildProcess("failing", [sys.executable, "-c", script], sink=io.StringIO()).start()
    assert child.process is not None
    assert child.process.wait(timeout=10) == 3
    lines = child.recent_output().splitlines()
    assert lines[-1] == "line 29" and len(lines) == 20, lines
