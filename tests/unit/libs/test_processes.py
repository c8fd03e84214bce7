"""Child processes and the ports handed to the servers they run."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libs.natsserver import free_port
from libs.processes import ChildProcess, stop_together
from tests.support import ROOT, eventually_sync, proc_stat


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


# Says "ready" once its SIGTERM handler is in place; on SIGTERM writes "terminated" to argv[1] and exits.
_GRACEFUL = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    open(sys.argv[1], 'w').write('terminated')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(1)\n"
)
_STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
)


def _ready(child: ChildProcess) -> ChildProcess:
    eventually_sync(lambda: "ready" in child.recent_output() or not child.alive(), what=f"{child.name} ready")
    assert child.alive(), child.recent_output()
    return child


def test_children_stop_together_on_one_deadline_and_only_the_stubborn_are_killed(tmp_path: Path) -> None:
    marks = [tmp_path / f"graceful-{i}" for i in range(2)]
    graceful = [
        ChildProcess(f"graceful-{i}", [sys.executable, "-c", _GRACEFUL, str(mark)], sink=io.StringIO())
        for i, mark in enumerate(marks)
    ]
    stubborn = [ChildProcess(f"stubborn-{i}", [sys.executable, "-c", _STUBBORN], sink=io.StringIO()) for i in range(3)]
    children = [_ready(child.start()) for child in [*stubborn, *graceful]]
    started = time.monotonic()
    killed = stop_together(children, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert sorted(killed) == [child.name for child in stubborn]
    assert elapsed < 2.5, f"three stubborn children took {elapsed:.1f}s: the deadline was not shared"
    assert all(child.returncode() == -signal.SIGKILL for child in stubborn)
    assert [child.returncode() for child in graceful] == [0, 0]
    assert all(mark.read_text() == "terminated" for mark in marks)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_is_terminated_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    mark, pid_file = tmp_path / "terminated", tmp_path / "child.pid"
    supervise = (
        "import pathlib, subprocess, sys, time\n"
        "from libs.processes import spawn\n"
        f"child = spawn([sys.executable, '-c', {_GRACEFUL!r}, {str(mark)!r}], stdout=subprocess.PIPE)\n"
        "child.stdout.readline()\n"  # its SIGTERM handler is in place
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", supervise], cwd=ROOT)
    child_pid = 0
    try:
        child_pid = int(eventually_sync(lambda: pid_file.is_file() and pid_file.read_text(), what="child ready"))
        supervisor.kill()
        supervisor.wait()
        eventually_sync(lambda: not _running(child_pid), timeout=10, what="the orphaned child gone")
        assert mark.read_text() == "terminated", "the child was stopped by SIGTERM, not killed"
    finally:
        supervisor.kill()
        supervisor.wait()
        if _running(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has ended)."""
    stat = proc_stat(pid) if pid > 0 else None
    return stat is not None and stat[0] != "Z"
