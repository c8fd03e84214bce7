"""Configuration: a TOML file, overridden by environment variables (12-factor).

Precedence, lowest first: dataclass defaults, ``STOCKWIRE_CONFIG`` (or ``./stockwire.toml``), then the
environment. Besides the well-known variables (``STOCKWIRE_NATS_URL``, ``STOCKWIRE_DATA_DIR``,
``STOCKWIRE_ADMIN_TOKEN``) any key can be set as ``STOCKWIRE__<SECTION>__<KEY>`` — for example
``STOCKWIRE__INGRESS__PORT=9000`` or ``STOCKWIRE__SOURCES__SHOP__SECRETS=old,new``. Section names
accept ``-`` or ``_`` (``outbox-relay`` = ``outbox_relay``).

Each service declares its own section as a dataclass and reads it with :func:`load_section`, so this
module knows only the settings every process shares.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

__all__ = [
    "DEFAULT_NATS_URL",
    "ConfigError",
    "NatsSettings",
    "SourceSettings",
    "StockwireSettings",
    "TopologySettings",
    "load_raw",
    "load_section",
    "load_service_config",
    "load_settings",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4250"
_ENV_PREFIX = "STOCKWIRE__"

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class NatsSettings:
    servers: list[str] = field(default_factory=lambda: [DEFAULT_NATS_URL])
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 0.25
    reconnect_wait_max_s: float = 5.0
    # JetStream's sync_interval for the nats-server `stockwire up` embeds: "always" (fsync before each
    # ack, so a 2xx survives an OS crash) or a duration such as "2m" (nats-server's own default).
    embedded_sync_interval: str = "always"
    # HTTP monitoring endpoint of an external server (e.g. http://nats:8222): `stockwire up` reads /varz
    # there and warns when JetStream does not fsync before acknowledging.
    monitor_url: str | None = None


@dataclass(frozen=True)
class SourceSettings:
    scheme: Literal["commerce-engine", "standard-webhooks"] = "commerce-engine"
    secrets: list[str] = field(default_factory=list)
    tolerance_s: int = 300

    def __repr__(self) -> str:  # secrets never reach a log line
        return f"SourceSettings(scheme={self.scheme!r}, secrets=<{len(self.secrets)} hidden>)"


@dataclass(frozen=True)
class TopologySettings:
    replicas: int = 1
    duplicate_window_s: float = 120.0
    commerce_max_age_days: float = 30.0
    inventory_max_age_days: float = 30.0
    deadletter_max_age_days: float = 90.0
    max_deliver: int = 8
    ack_wait_s: float = 30.0
    max_ack_pending: int = 4096
    lease_ttl_s: float = 10.0


@dataclass(frozen=True)
class StockwireSettings:
    data_dir: str = ".data"
    admin_token: str | None = None
    nats: NatsSettings = field(default_factory=NatsSettings)
    topology: TopologySettings = field(default_factory=TopologySettings)
    sources: dict[str, SourceSettings] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"StockwireSettings(data_dir={self.data_dir!r}, nats={self.nats.servers!r}, "
            f"sources={sorted(self.sources)!r}, admin_token={'set' if self.admin_token else 'unset'})"
        )


def _norm(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def _normalise(tree: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    # Only section names are normalised; source names under [sources] keep their spelling.
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = _norm(key) if depth == 0 else key
        out[name] = _normalise(value, depth + 1) if isinstance(value, Mapping) else value
    return out


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _env_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        path = [p for p in name[len(_ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        path[0] = _norm(path[0])
        path = [path[0], *(part.lower() for part in path[1:])]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(text)
    well_known = {
        "STOCKWIRE_DATA_DIR": ("data_dir",),
        "STOCKWIRE_ADMIN_TOKEN": ("admin_token",),
        "STOCKWIRE_NATS_URL": ("nats", "servers"),
    }
    for name, path in well_known.items():
        if env.get(name):
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = env[name]
    return tree


def load_raw(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The merged configuration tree: file first, then the environment on top."""
    env = os.environ if env is None else env
    chosen = path or env.get("STOCKWIRE_CONFIG")
    tree: dict[str, Any] = {}
    if chosen:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist (STOCKWIRE_CONFIG)")
        tree = _load_toml(file)
    elif Path("stockwire.toml").is_file():
        tree = _load_toml(Path("stockwire.toml"))
    admin = tree.pop("admin", None)
    if isinstance(admin, Mapping) and "token" in admin:
        tree.setdefault("admin_token", admin["token"])
    return _deep_merge(tree, _env_overrides(env))


def _load_toml(file: Path) -> dict[str, Any]:
    try:
        return _normalise(tomllib.loads(file.read_text("utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from exc


def _split_lists(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Environment values are strings: a comma-separated string becomes a list where one is expected."""
    if not dataclasses.is_dataclass(cls):
        return dict(data)
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        value = out.get(f.name)
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        if isinstance(value, str) and (origin is list or hint is list):
            out[f.name] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, Mapping) and dataclasses.is_dataclass(hint):
            out[f.name] = _split_lists(hint, value)
        elif isinstance(value, Mapping) and origin is dict:
            inner = typing.get_args(hint)[1]
            if dataclasses.is_dataclass(inner):
                out[f.name] = {k: _split_lists(inner, v) for k, v in value.items() if isinstance(v, Mapping)}
        elif isinstance(value, int | float) and _is_optional_str(hint):
            out[f.name] = str(value)
    return out


def _is_optional_str(hint: Any) -> bool:
    if hint is str:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return str in typing.get_args(hint)
    return False


def load_section(raw: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """Read one section (``[ingress]``, ``[outbox-relay]``…) of ``raw`` as the dataclass ``cls``."""
    section = raw.get(_norm(name), {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    try:
        return msgspec.convert(_split_lists(cls, section), cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"[{name}]: {exc}") from exc


def load_settings(raw: Mapping[str, Any] | None = None) -> StockwireSettings:
    """The settings every process shares; reads file and environment when ``raw`` is not given."""
    raw = load_raw() if raw is None else raw
    known = {f.name for f in dataclasses.fields(StockwireSettings)}
    shared = {k: v for k, v in raw.items() if k in known}
    try:
        settings = msgspec.convert(_split_lists(StockwireSettings, shared), StockwireSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"configuration: {exc}") from exc
    from libs.subjects import SOURCE_PATTERN

    for source in settings.sources:
        if not SOURCE_PATTERN.fullmatch(source):
            raise ConfigError(f"[sources.{source}]: a source name must match {SOURCE_PATTERN.pattern}")
    return settings


def load_service_config(section: str, cls: type[T]) -> tuple[StockwireSettings, T]:
    """What a service process reads at start: the shared settings and its own section, from file and env."""
    raw = load_raw()
    return load_settings(raw), load_section(raw, section, cls)
