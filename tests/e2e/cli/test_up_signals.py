"""However ``stockwire up`` ends — Ctrl-C to its terminal's process group, a hang-up, a SIGKILL — its
nats-server and services end with it: the services stopped gracefully, nats-server after them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.natsserver import free_port
from tests.support import eventually_sync, proc_stat

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's"),
]

SERVICES = ("ingress", "inventory")
"""inventory is one that never finished draining once nats-server had gone first."""
STOP_DEADLINE_S = 9.0
"""Below the 10 s after which a service that does not stop on SIGTERM is killed."""


@dataclass(frozen=True)
class Child:
    pid: int
    start_time: str
    """/proc/<pid>/stat's start time: tells the child from a later process given the same pid."""
    command: str

    def gone(self) -> bool:
        """Exited: no such process, another one under its pid, or a zombie nobody has reaped yet."""
        stat = proc_stat(self.pid)
        return stat is None or stat[19] != self.start_time or stat[0] == "Z"


def _children(parent: int) -> list[Child]:
    found = []
    for entry in Path("/proc").iterdir():
        stat = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[1] == str(parent):
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(Child(int(entry.name), stat[19], command))
    return found


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    children: list[Child]
    data_dir: Path
    output: Path

    def log(self, name: str) -> str:
        return (self.data_dir / "logs" / f"{name}.log").read_text()

    def nats_log(self) -> str:
        return (self.data_dir / "nats" / "nats-server.log").read_text()

    def wait_all_gone(self, timeout: float) -> None:
        eventually_sync(
            lambda: self.process.poll() is not None and all(child.gone() for child in self.children),
            timeout=timeout,
            interval=0.05,
            what="stockwire up and every child it started gone",
        )


@contextlib.contextmanager
def running_up(tmp_path: Path) -> Iterator[RunningUp]:
    """``stockwire up`` with :data:`SERVICES` on free ports, in a session of its own (as a terminal's
    foreground job is: its own process group), until every child answers; whatever is left is killed after."""
    ports = {name: free_port() for name in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWIRE")}
    env |= {f"STOCKWIRE__{name.upper()}__PORT": str(port) for name, port in ports.items()}
    data_dir, output = tmp_path / "data", tmp_path / "up.log"
    command = [sys.executable, "-m", "stockwire", "up", "--services", ",".join(SERVICES)]
    command += ["--data-dir", str(data_dir), "--nats-port", str(free_port())]
    with output.open("wb") as out:
        up = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[Child] = []
    try:
        eventually_sync(
            lambda: b"Stockwire is up." in output.read_bytes() or up.poll() is not None, timeout=90, what="up ready"
        )
        assert up.poll() is None, output.read_text()
        children = _children(up.pid)
        assert len(children) == 1 + len(SERVICES), children
        yield RunningUp(up, children, data_dir, output)
    finally:
        with contextlib.suppress(ProcessLookupError):
            up.kill()
        up.wait()
        for child in children:
            if not child.gone():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)


def _assert_stopped_in_order(up: RunningUp) -> None:
    """Every service finished its shutdown with NATS still there; nats-server was stopped (SIGTERM)."""
    for name in SERVICES:
        log = up.log(name)
        assert "Finished server process" in log, f"{name} did not finish its shutdown:\n{log[-3000:]}"
        assert "drain at shutdown" not in log, f"{name} drained after nats-server had gone:\n{log[-3000:]}"
    assert 'Trapped "terminated" signal' in up.nats_log(), up.nats_log()[-2000:]


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGHUP, True), (signal.SIGHUP, False)],
    ids=["ctrl-c-to-the-group", "hangup-to-the-group", "hangup-to-up"],
)
def test_a_signal_to_up_or_its_group_stops_every_child_gracefully_and_nats_last(
    tmp_path: Path, signum: signal.Signals, whole_group: bool
) -> None:
    with running_up(tmp_path) as up:
        if whole_group:
            os.killpg(up.process.pid, signum)
        else:
            up.process.send_signal(signum)
        up.wait_all_gone(STOP_DEADLINE_S)
        output = up.output.read_text()
        assert up.process.returncode == 0, output
        assert "stockwire up: stopped" in output and "killed" not in output, output
        _assert_stopped_in_order(up)


def test_a_killed_up_leaves_no_child_running(tmp_path: Path) -> None:
    with running_up(tmp_path) as up:
        up.process.kill()
        # Without nats-server (stopped by the same death signal) a service's drain gives up after its
        # timeouts: gone well within this.
        up.wait_all_gone(30)
        assert 'Trapped "terminated" signal' in up.nats_log(), "nats-server was stopped, not killed"
