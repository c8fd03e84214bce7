"""The local Stockwire stack: an embedded nats-server (unless one is given) and the four services."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import secrets
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from libs.bus import connect, jetstream
from libs.config import NatsSettings, TopologySettings
from libs.natsserver import DEFAULT_SYNC_INTERVAL, NatsServer, free_port, sync_warning
from libs.processes import ChildProcess
from libs.topology import apply_topology

__all__ = ["DEFAULT_PORTS", "SERVICES", "ServiceSpec", "Stack", "dev_source_secret"]

EMBEDDED_NATS_PORT = 4250
DEV_SOURCE = "shop"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str

    @property
    def section(self) -> str:
        return self.name.upper().replace("-", "_")

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("ingress", "services.ingress"),
    ServiceSpec("inventory", "services.inventory"),
    ServiceSpec("outbox-relay", "services.outbox_relay"),
    ServiceSpec("channel-notifier", "services.channel_notifier"),
)
DEFAULT_PORTS = {"ingress": 8080, "inventory": 8081, "channel-notifier": 8082, "outbox-relay": 8083}


def _persistent_secret(path: Path, make: object) -> str:
    if path.is_file():
        return path.read_text().strip()
    value = make() if callable(make) else str(make)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o600)
    return value


def dev_source_secret(data_dir: Path) -> str:
    """The secret of the local ``shop`` source that ``stockwire up`` configures when none is."""
    return _persistent_secret(data_dir / "secrets" / f"source-{DEV_SOURCE}", lambda: secrets.token_hex(24))


@dataclass
class Stack:
    data_dir: Path
    services: Sequence[str] = tuple(s.name for s in SERVICES)
    nats_url: str | None = None
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    env: Mapping[str, str] = field(default_factory=dict)
    configure_dev_source: bool = True
    sink: TextIO | None = None
    nats_port: int = EMBEDDED_NATS_PORT
    topology: TopologySettings = field(default_factory=TopologySettings)
    children: dict[str, ChildProcess] = field(default_factory=dict)
    nats: NatsServer | None = None
    admin_token: str = ""
    embedded_sync_interval: str = DEFAULT_SYNC_INTERVAL
    nats_monitor_url: str | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, ready_timeout_s: float = 60.0) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None:
            self.nats = NatsServer(
                store_dir=self.data_dir / "nats",
                port=self.nats_port,
                sync_interval=self.embedded_sync_interval,
                monitor_port=free_port(),
            ).start()
            self.nats_url = self.nats.url
        self.warn_unless_synced()
        asyncio.run(self._apply_topology())
        self.admin_token = self.env.get("STOCKWIRE_ADMIN_TOKEN") or _persistent_secret(
            self.data_dir / "secrets" / "admin-token", lambda: secrets.token_urlsafe(24)
        )
        for index, name in enumerate(self.services):
            self.start_service(name, index)
        self.wait_ready(ready_timeout_s)
        return self

    async def _apply_topology(self) -> None:
        assert self.nats_url is not None
        nc = await connect(NatsSettings(servers=self.nats_url.split(",")), "stockwire-up")
        try:
            await apply_topology(jetstream(nc), self.topology)
        finally:
            await nc.close()

    def service_env(self, name: str) -> dict[str, str]:
        spec = next(s for s in SERVICES if s.name == name)
        env = {
            "STOCKWIRE_NATS_URL": self.nats_url or "",
            "STOCKWIRE_DATA_DIR": str(self.data_dir.resolve()),
            "STOCKWIRE_ADMIN_TOKEN": self.admin_token,
            f"STOCKWIRE__{spec.section}__PORT": str(self.ports[name]),
            "STOCKWIRE__TOPOLOGY__DUPLICATE_WINDOW_S": str(self.topology.duplicate_window_s),
        }
        if self.configure_dev_source:
            env["STOCKWIRE__SOURCES__SHOP__SCHEME"] = "commerce-engine"
            env["STOCKWIRE__SOURCES__SHOP__SECRETS"] = dev_source_secret(self.data_dir)
        return {**env, **self.env}

    def start_service(self, name: str, index: int | None = None) -> ChildProcess:
        spec = next(s for s in SERVICES if s.name == name)
        position = index if index is not None else list(self.services).index(name)
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = ChildProcess(
            name,
            [sys.executable, "-m", spec.module],
            self.service_env(name),
            sink=self.sink,
            colour_index=position,
            log_path=str(logs / f"{name}.log"),
        ).start()
        self.children[name] = child
        return child

    def restart_service(self, name: str, ready_timeout_s: float = 30.0) -> None:
        self.start_service(name)
        self.wait_ready(ready_timeout_s, only=[name])

    def wait_ready(self, timeout_s: float, only: Sequence[str] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        for name in only or self.services:
            while True:
                child = self.children[name]
                if not child.alive():
                    raise RuntimeError(
                        f"{name} exited with status {child.returncode()} while starting:\n{child.recent_output()}"
                    )
                if _healthy(f"{self.url(name)}/healthz"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer /healthz within {timeout_s}s")
                time.sleep(0.05)

    def stop(self) -> None:
        for name in reversed(list(self.children)):
            self.children[name].stop()
        if self.nats is not None:
            self.nats.stop()

    def describe(self) -> dict[str, object]:
        return {
            "nats": self.nats_url,
            "data_dir": str(self.data_dir),
            "services": {name: self.url(name) for name in self.services},
        }

    def __str__(self) -> str:
        return json.dumps(self.describe(), indent=2)

    def warn_unless_synced(self) -> None:
        """Say at start when JetStream may acknowledge webhooks before they are on disk."""
        monitor = self.nats.monitor_url if self.nats is not None else self.nats_monitor_url
        warning = sync_warning(monitor)
        if warning:
            print(f"stockwire: warning: {warning}", file=sys.stderr, flush=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        # Not listening yet, or something else holds the port for a moment: not healthy, keep waiting.
        return False
