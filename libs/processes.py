"""Child processes with prefixed, line-buffered logs: how ``stockwire up`` and the e2e tests run services."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["ChildProcess"]

_COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m")
_RESET = "\033[0m"


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
        self.process = subprocess.Popen(
            list(self.args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if not self.alive():
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process group: no clean-up, as a crash would leave it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
