"""The local Stockwire stack: an embedded nats-server (unless one is given), the four services and the console."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import secrets
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from libs.bus import connect, jetstream
from libs.config import (
    ConfigError,
    NatsSettings,
    StockwireSettings,
    TopologySettings,
    load_raw,
    load_section,
    load_settings,
)
from libs.natsserver import DEFAULT_SYNC_INTERVAL, NatsServer, can_listen, free_port, sync_warning
from libs.processes import ChildProcess, stop_together
from libs.schemes import SCHEME_NAMES, SchemeName
from libs.topology import apply_topology
from services.channel_notifier.settings import ChannelNotifierSettings
from services.console.settings import PEER_DEFAULTS, ConsoleSettings
from services.ingress.settings import IngressSettings
from services.inventory.settings import InventorySettings
from services.outbox_relay.settings import OutboxRelaySettings
from stockwire.dev_sources import DEV_CE_SOURCE, DEV_SOURCE, DEV_SOURCES

__all__ = [
    "DEFAULT_PORTS",
    "DEV_CE_SOURCE",
    "DEV_SOURCE",
    "DEV_SOURCES",
    "SERVICES",
    "ServiceSpec",
    "SourceSecret",
    "Stack",
    "configured_url",
    "dev_source_secret",
    "local_url",
    "section_classes",
    "source_secret",
]

EMBEDDED_NATS_PORT = 4250


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
    ServiceSpec("console", "services.console"),
)


def section_classes() -> dict[str, type[Any]]:
    """Each service's configuration section and the dataclass it is read into."""
    return {
        "ingress": IngressSettings,
        "inventory": InventorySettings,
        "outbox-relay": OutboxRelaySettings,
        "channel-notifier": ChannelNotifierSettings,
        "console": ConsoleSettings,
    }


# Each service's own default (its settings class), so a default is written in one place.
DEFAULT_PORTS: dict[str, int] = {name: cls().port for name, cls in section_classes().items()}


def _persistent_secret(path: Path, make: object) -> str:
    if path.is_file():
        return path.read_text().strip()
    value = make() if callable(make) else str(make)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o600)
    return value


def dev_source_secret(data_dir: Path, source: str = DEV_SOURCE) -> str:
    """The secret of a local dev source (:data:`DEV_SOURCES`) that ``stockwire up`` configures when none is."""
    if source not in DEV_SOURCES:
        raise ValueError(f"{source!r} is not a dev source ({', '.join(DEV_SOURCES)})")
    return _persistent_secret(_dev_source_file(data_dir, source), lambda: secrets.token_hex(24))


def _dev_source_file(data_dir: Path, source: str) -> Path:
    return data_dir / "secrets" / f"source-{source}"


@dataclass(frozen=True)
class SourceSecret:
    """What a client signs a source's webhooks with: the source's scheme and one of its secrets."""

    scheme: SchemeName
    secret: str = field(repr=False)


def source_secret(
    settings: StockwireSettings, source: str, data_dir: Path, *, schemes: Sequence[SchemeName] = SCHEME_NAMES
) -> SourceSecret:
    """The scheme and secret a client signs webhooks for ``source`` with: the configured ones (the newest
    secret of a rotation), else that of the dev source (``shop`` or ``store``, both signed as Commerce
    Engine signs) ``stockwire up`` wrote under ``data_dir`` — read, never made.

    Raises :class:`ConfigError` saying what to configure when there is none, or when the source's scheme
    is not one of ``schemes`` (what the caller can send)."""
    configured = settings.sources.get(source)
    if configured is not None:
        if configured.scheme not in schemes or not configured.secrets:
            raise ConfigError(f"source {source!r} is not a {' or '.join(schemes)} source with a secret")
        return SourceSecret(configured.scheme, configured.secrets[-1])
    if settings.sources:
        raise ConfigError(f"source {source!r} is not configured (configured: {', '.join(sorted(settings.sources))})")
    file = _dev_source_file(data_dir, source)
    if source not in DEV_SOURCES or not file.is_file():
        made = " and ".join(repr(name) for name in DEV_SOURCES)
        raise ConfigError(
            f"no secret for source {source!r}: configure [sources.{source}] secrets, or start `stockwire up` "
            f"(it makes the {made} dev sources; no secret in {file.parent})"
        )
    return SourceSecret("commerce-engine", file.read_text().strip())


def local_url(host: str, port: int) -> str:
    """``http://host:port`` to reach a service listening on ``host``; a wildcard address means loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def configured_url(service: str, raw: Mapping[str, object] | None = None) -> str:
    """Where ``service`` listens as configured (file and environment), for the CLI's clients."""
    section = load_section(load_raw() if raw is None else raw, service, section_classes()[service])
    return local_url(section.host, section.port)


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
    """Empty: the configured one (what the services would read), else one generated under the data dir."""
    admin_token_file: Path | None = None
    """Where the admin token was generated or read from; None when it is configured."""
    nats_settings: NatsSettings | None = None
    """Credentials and TLS for an external ``nats_url`` (the embedded server needs none)."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Configured listen addresses; the stack talks to a service there (a wildcard: loopback)."""
    embedded_sync_interval: str = DEFAULT_SYNC_INTERVAL
    nats_monitor_url: str | None = None
    launcher: Sequence[str] = ()
    """Put before each service's command (e.g. ``nsenter -t PID -m --``: the services in another mount namespace)."""

    def url(self, service: str) -> str:
        return local_url(self.hosts.get(service, "127.0.0.1"), self.ports[service])

    def start(self, ready_timeout_s: float = 60.0) -> Stack:
        """Start nats-server (unless external), apply the topology and start the services; returns once
        every service answers ``/healthz``. Raises ``RuntimeError`` before starting anything when a port
        the stack would listen on is taken (another process's service could answer its health checks),
        and when something does not come up in ``ready_timeout_s``."""
        self._check_ports_free()
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
        try:
            asyncio.run(asyncio.wait_for(self._apply_topology(), ready_timeout_s))
        except TimeoutError:
            raise RuntimeError(f"NATS at {self.nats_url} did not answer within {ready_timeout_s:g}s") from None
        if not self.admin_token:
            self.admin_token = self._configured_admin_token() or ""
        if not self.admin_token:
            # Generated only when none is configured (documented in stockwire.example.toml).
            self.admin_token_file = self.data_dir / "secrets" / "admin-token"
            self.admin_token = _persistent_secret(self.admin_token_file, lambda: secrets.token_urlsafe(24))
        for index, name in enumerate(self.services):
            self.start_service(name, index)
        self.wait_ready(ready_timeout_s)
        return self

    def _check_ports_free(self) -> None:
        wanted = [(name, self.hosts.get(name, "127.0.0.1"), self.ports[name]) for name in self.services]
        if self.nats_url is None and self.nats_port:
            wanted.append(("nats-server", "127.0.0.1", self.nats_port))
        taken = [f"{host}:{port} ({name})" for name, host, port in wanted if not can_listen(host, port)]
        if taken:
            raise RuntimeError(
                f"another process listens on {', '.join(taken)}: stop it, or give this stack other ports "
                "([<service>] port, STOCKWIRE__<SERVICE>__PORT; --nats-port)"
            )

    def _configured_admin_token(self) -> str | None:
        """The token the services would read from the file and environment they inherit."""
        return load_settings(load_raw(env={**os.environ, **self.env})).admin_token

    async def _apply_topology(self) -> None:
        assert self.nats_url is not None
        servers = self.nats_url.split(",")
        settings = NatsSettings(servers=servers)
        if self.nats is None and self.nats_settings is not None:
            settings = replace(self.nats_settings, servers=servers)
        nc = await connect(settings, "stockwire-up")
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
        if name == "console":
            # The console reads the others through their HTTP APIs: where this stack runs each of them.
            for peer, (key, _port) in PEER_DEFAULTS.items():
                if peer in self.ports:
                    env[f"STOCKWIRE__CONSOLE__{key.upper()}"] = self.url(peer)
        if self.configure_dev_source:
            for source, profile in DEV_SOURCES.items():
                prefix = f"STOCKWIRE__SOURCES__{source.upper()}__"
                env[prefix + "SCHEME"] = "commerce-engine"
                env[prefix + "PROFILE"] = profile
                env[prefix + "SECRETS"] = dev_source_secret(self.data_dir, source)
        return {**env, **self.env}

    def start_service(self, name: str, index: int | None = None) -> ChildProcess:
        spec = next(s for s in SERVICES if s.name == name)
        position = index if index is not None else list(self.services).index(name)
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = ChildProcess(
            name,
            [*self.launcher, sys.executable, "-m", spec.module],
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

    def stop(self, timeout_s: float = 10.0) -> list[str]:
        """Stop the services together (SIGTERM to all, one ``timeout_s`` deadline, SIGKILL to those left),
        then the embedded nats-server: the services drain through it first. Returns the names of the
        services that had to be killed."""
        killed = stop_together(list(self.children.values()), timeout_s)
        if self.nats is not None:
            self.nats.stop(timeout_s)
        return killed

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
