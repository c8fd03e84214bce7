"""Child processes for a supervisor (``stockwire up``, the demo, the benchmarks, the tests): started in a
session of their own and, on Linux, tied to the supervisor's life; stopped together on one deadline.

A terminal sends Ctrl-C (SIGINT) and hang-up (SIGHUP) to its whole foreground process group. A child in
that group would get them as well, and a nats-server would exit (SIGINT) or reload (SIGHUP) under the
services still draining through it. In their own session only the supervisor hears the terminal, and it
stops the services first and nats-server last. Should the supervisor die without stopping them (SIGKILL,
a crash), the kernel sends each child its parent-death signal so none is left orphaned.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

__all__ = ["STOP_SIGNALS", "ChildProcess", "handle_stop_signals", "spawn", "stop_processes", "stop_together"]

_COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m")
_RESET = "\033[0m"

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a supervisor gracefully: Ctrl-C, ``kill``, its terminal closing."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_Redirect = int | IO[bytes] | None


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` with its argument types, or None off Linux (or without a libc that has it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _death_signal_hook(death_signal: signal.Signals) -> Callable[[], None] | None:
    """What the child runs between fork and exec to get ``death_signal`` when its supervisor dies.

    None off Linux, and when called outside the main thread: the kernel sends the signal when the
    *thread* that forked the child ends, so a child started from a worker thread (``asyncio.to_thread``)
    would be stopped with that thread, not with the process.
    """
    prctl = _prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    supervisor = os.getpid()

    def arm() -> None:
        # Runs in the forked child: no imports, no locks, no output. An error here fails Popen.
        if prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != supervisor:
            # The supervisor died between fork and prctl: the signal it would have sent is owed now.
            os.kill(os.getpid(), death_signal)

    return arm


def handle_stop_signals(handler: Callable[[int, FrameType | None], object]) -> None:
    """Install ``handler`` for every one of :data:`STOP_SIGNALS`, so a supervisor stops its children the
    same way whichever arrives (by default SIGHUP would end it without stopping them). Call it from the
    main thread (``ValueError`` otherwise)."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, handler)


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: _Redirect = subprocess.DEVNULL,
    stderr: _Redirect = subprocess.DEVNULL,
    death_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``args`` as a supervised child: stdin from /dev/null, in a new session (its process group id
    is its pid, so :func:`stop_processes` can signal the group) and, on Linux when called from the main
    thread, with ``death_signal`` sent by the kernel when this process dies.

    ``env`` is the child's whole environment (None: this process's); ``stdout``/``stderr`` take what
    :class:`subprocess.Popen` takes. Raises ``OSError`` when the program cannot be run.
    """
    return subprocess.Popen(
        list(args),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        # preexec_fn runs Python in the forked child; this one only calls prctl and getppid (no locks).
        preexec_fn=_death_signal_hook(death_signal),
    )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child's whole group (a service's server workers too); a child that is gone needs nothing.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> list[int]:
    """Stop children started by :func:`spawn` together: SIGTERM to every one's process group at once,
    a wait of at most ``timeout_s`` seconds shared by all, then SIGKILL to those still running.

    Returns the pids of the processes that had to be killed (empty: all stopped on SIGTERM), so a
    stop of N children takes at most ``timeout_s``, not N times it.
    """
    running = [process for process in processes if process.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    killed: list[int] = []
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
            killed.append(process.pid)
    return killed


def stop_together(children: Iterable[ChildProcess], timeout_s: float = 10.0) -> list[str]:
    """:func:`stop_processes` for named children; returns the names of those that had to be killed."""
    started = {child.process.pid: child for child in children if child.process is not None}
    killed = stop_processes([child.process for child in started.values() if child.process is not None], timeout_s)
    return [started[pid].name for pid in killed]


@dataclass
class ChildProcess:
    """One named child; its stdout and stderr lines are copied to ``sink`` as ``name | line``."""

    name: str
    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    sink: TextIO | None = None
    colour_index: int = 0
    log_path: str | None = None
    process: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = None
    _recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))

    def start(self) -> ChildProcess:
        """Start the process (its output prefixed line by line); raises ``OSError`` if it cannot be run."""
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.process = spawn(self.args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()
        return self

    def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        sink = self.sink if self.sink is not None else sys.stdout
        colour = _COLOURS[self.colour_index % len(_COLOURS)] if sink.isatty() else ""
        prefix = f"{colour}{self.name:>16} |{_RESET if colour else ''} "
        log_file = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed below
        try:
            for raw in iter(self.process.stdout.readline, b""):
                self._recent.append(raw.decode(errors="replace").rstrip())
                if log_file is not None:
                    log_file.write(raw)
                    log_file.flush()
                with contextlib.suppress(ValueError, OSError):
                    sink.write(prefix + raw.decode(errors="replace"))
                    sink.flush()
        finally:
            if log_file is not None:
                log_file.close()

    def recent_output(self) -> str:
        """The last lines the child wrote (for an error that says why it stopped)."""
        if self._pump is not None and self.process is not None and self.process.poll() is not None:
            self._pump.join(timeout=1.0)  # an exited child's last lines are still being copied
        return "\n".join(self._recent)

    @property
    def pid(self) -> int | None:
        """The process id once started, else None."""
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        """Started and not yet exited."""
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal), else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s`` seconds; True when it stopped without the SIGKILL.
        Several children stop faster together: :func:`stop_together`."""
        return not stop_together([self], timeout_s)

    def kill(self) -> None:
        """SIGKILL the process group: no clean-up, as a crash would leave it."""
        if self.process is None:
            return
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait()
