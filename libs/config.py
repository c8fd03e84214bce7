"""Configuration: a TOML file, overridden by environment variables (12-factor).

Precedence, lowest first: dataclass defaults, ``STOCKWIRE_CONFIG`` (or ``./stockwire.toml``), then the
environment. Besides the well-known variables (``STOCKWIRE_NATS_URL``, ``STOCKWIRE_DATA_DIR``,
``STOCKWIRE_ADMIN_TOKEN``) any key can be set as ``STOCKWIRE__<SECTION>__<KEY>`` — for example
``STOCKWIRE__INGRESS__PORT=9000`` or ``STOCKWIRE__SOURCES__SHOP__SECRETS=old,new``. Section names
accept ``-`` or ``_`` (``outbox-relay`` = ``outbox_relay``).

Each service declares its own section as a dataclass and reads it with :func:`load_section`, so this
module knows only the settings every process shares (and the names of the service sections).

Strict: a key or a section that no dataclass declares is refused with a :class:`ConfigError` that names
it, where it came from (the file or the ``STOCKWIRE__…`` variable) and the nearest valid key, because
a misspelt ``secrets`` or ``allow_hosts`` would otherwise leave a default in place silently. Only
``STOCKWIRE__``-prefixed variables map to keys; other ``STOCKWIRE_*`` variables are the well-known ones
above or one of :data:`OTHER_VARIABLES` (read elsewhere in the project). Any other ``STOCKWIRE_*``
variable that looks like a setting (a near miss of a known variable, or a section's name after one
underscore: ``STOCKWIRE_NATS_URLS``, ``STOCKWIRE_INGRESS_PORT``) is refused like an unknown key; the rest
are logged as a warning, not refused, because deployment tooling uses the prefix for variables of its own.

Every number is checked against the range it can work in: each ``int``/``float`` field of a settings
dataclass declares its :class:`Bounds` where it is declared (``port: Port = 8080``, or
``Annotated[int, Bounds(ge=0)]``), floats must be finite, and a value outside is refused naming the key,
the value and the allowed range. A new section is added to :data:`SERVICE_SECTIONS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import os
import re
import sys
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from libs.schemes import SchemeName

__all__ = [
    "DEFAULT_NATS_URL",
    "OTHER_VARIABLES",
    "SERVICE_SECTIONS",
    "WELL_KNOWN_VARIABLES",
    "Bounds",
    "ConfigError",
    "Count",
    "DatabaseUrl",
    "Form",
    "LoggingSettings",
    "NatsSettings",
    "NatsUrls",
    "NonNegative",
    "Port",
    "Positive",
    "Ratio",
    "RawConfig",
    "SourceSettings",
    "StockwireSettings",
    "TopologySettings",
    "TracingSettings",
    "check_known",
    "check_source_secrets",
    "config_error_line",
    "field_bounds",
    "field_form",
    "load_raw",
    "load_section",
    "load_service_config",
    "load_settings",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4250"
_ENV_PREFIX = "STOCKWIRE__"

SERVICE_SECTIONS = ("ingress", "inventory", "outbox-relay", "channel-notifier", "console")
"""The sections the services read with :func:`load_section`; any other top-level table is refused."""

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


def config_error_line(exc: ConfigError, process: str | None = None) -> str:
    """The one line every program prints for an unusable configuration: ``stockwire: configuration error:
    <message>``, or ``stockwire <process>: …`` from a service process (several share one terminal)."""
    return f"stockwire{f' {process}' if process else ''}: configuration error: {exc}"


@dataclass(frozen=True)
class Bounds:
    """The range a numeric setting works in, stated on its field: ``Annotated[int, Bounds(ge=1)]``.

    ``ge``/``le`` are inclusive, ``gt`` exclusive; None: unbounded on that side. A float must also be
    finite whatever its bounds (NaN and infinities are never a usable duration, size or ratio)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds (a NaN never does)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"{_number(self.ge)} to {_number(self.le)}"
        parts = [
            *([f"at least {_number(self.ge)}"] if self.ge is not None else []),
            *([f"greater than {_number(self.gt)}"] if self.gt is not None else []),
            *([f"at most {_number(self.le)}"] if self.le is not None else []),
        ]
        return " and ".join(parts) or "any finite number"


def _number(value: float) -> str:
    # 2147483647, not 2.14748e+09: the bound is to be copied into a file.
    return str(int(value)) if float(value).is_integer() else repr(value)


Port = Annotated[int, Bounds(ge=1, le=65535)]
"""A TCP port to listen on or connect to."""
Count = Annotated[int, Bounds(ge=1)]
"""A size in bytes, a batch, a limit, a pool or a number of workers: zero would stop the work."""
Positive = Annotated[float, Bounds(gt=0)]
"""A timeout, a TTL or an interval slept on: zero would time out at once or spin."""
NonNegative = Annotated[float, Bounds(ge=0)]
"""A wait, a linger or a margin where zero means none."""
Ratio = Annotated[float, Bounds(ge=0, le=1)]
"""A share, 0.0 to 1.0."""


@dataclass(frozen=True)
class Form:
    """The form a text setting must have, stated on its field: ``Annotated[str, Form(check)]`` (on a
    ``list[str]`` field, every item). ``check`` raises ``ValueError`` saying what the text should be;
    the loader refuses the setting with that, its key and where it was set."""

    check: Callable[[str], object]


_DATABASE_SCHEMES = ("sqlite:///", "sqlite+aiosqlite:///", "postgres://", "postgresql://", "postgresql+asyncpg://")
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def check_database_url(text: str) -> str:
    """``text`` if it is empty (the service's own SQLite file) or a URL of a database the stores use:
    ``sqlite:///<path>`` or ``postgresql://…`` (``postgres://``, and the ``+aiosqlite``/``+asyncpg``
    spellings); raises ``ValueError`` otherwise."""
    if text and not text.startswith(_DATABASE_SCHEMES):
        raise ValueError("is not a database Stockwire can use: sqlite:///<path> or postgresql://<user>@<host>/<db>")
    return text


def check_nats_url(text: str) -> str:
    """``text`` if it is a NATS server URL nats-py can dial: ``nats://``, ``tls://``, ``ws://`` or
    ``wss://``, a host and a port in 1..65535 if given (``host:port`` alone is read as ``nats://``, as
    nats-py reads it); raises ``ValueError`` otherwise."""
    parts = urllib.parse.urlsplit(text if "://" in text else f"nats://{text}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in _NATS_SCHEMES or not parts.hostname or port == 0 or port == -1:
        raise ValueError("is not a NATS server URL: nats://<host>:<port> (or tls://, ws://, wss://)")
    return text


DatabaseUrl = Annotated[str, Form(check_database_url)]
"""A store's database: empty (SQLite under the data dir), ``sqlite:///…`` or ``postgresql://…``."""
NatsUrls = Annotated[list[str], Form(check_nats_url)]
"""NATS servers to dial, each ``nats://host:port`` (or ``tls://``, ``ws://``, ``wss://``)."""


def field_bounds(hint: Any) -> Bounds | None:
    """The :class:`Bounds` an ``Annotated`` type hint carries (``typing.get_type_hints(cls,
    include_extras=True)``), or None."""
    return next((m for m in typing.get_args(hint)[1:] if isinstance(m, Bounds)), None) if _annotated(hint) else None


def field_form(hint: Any) -> Form | None:
    """The :class:`Form` an ``Annotated`` type hint carries, or None."""
    return next((m for m in typing.get_args(hint)[1:] if isinstance(m, Form)), None) if _annotated(hint) else None


def _annotated(hint: Any) -> bool:
    return typing.get_origin(hint) is Annotated


@dataclass(frozen=True)
class NatsSettings:
    """``[nats]``: where the servers are and how to authenticate (creds file, nkey seed, user/password, TLS)."""

    servers: NatsUrls = field(default_factory=lambda: [DEFAULT_NATS_URL])
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: Positive = 2.0
    reconnect_wait_s: Positive = 0.25
    reconnect_wait_max_s: Positive = 5.0
    # JetStream's sync_interval for the nats-server `stockwire up` embeds: "always" (fsync before each
    # ack, so a 2xx survives an OS crash) or a duration such as "2m" (nats-server's own default).
    embedded_sync_interval: str = "always"
    # HTTP monitoring endpoint of an external server (e.g. http://nats:8222): `stockwire up` reads /varz
    # there and warns when JetStream does not fsync before acknowledging.
    monitor_url: str | None = None


@dataclass(frozen=True)
class SourceSettings:
    """``[sources.<name>]``: one producer's signature scheme (a row of :data:`libs.schemes.SCHEMES`), its
    secrets (several during a rotation) and, for the schemes that sign a timestamp (Standard Webhooks,
    Stripe), the accepted clock skew in seconds."""

    scheme: SchemeName = "commerce-engine"
    secrets: list[str] = field(default_factory=list)
    tolerance_s: Count = 300
    profile: str | None = None
    """The source profile its payloads are read with (``libs/profiles/data``); None: the scheme's default
    (``commerce-engine`` for the commerce-engine scheme, ``stockwire`` for the others)."""
    orders_source: str | None = None
    """Whose orders this source's events name (a payment provider's webhooks name a storefront's
    orders); None: its own. Orders are keyed per source: the same number from two sources is two orders."""
    mapping: dict[str, Any] = field(default_factory=dict)
    """An override of the profile (its ``envelope``, ``common``, ``events`` and ``kinds`` tables; see
    docs/profiles.md), merged over the shipped file when the profile is loaded."""
    order_metadata_key: str | None = None
    """For a payment provider's source (the ``stripe`` profile): the metadata key that holds the order
    id; None: the profile's default (``order_id``)."""

    def __repr__(self) -> str:  # secrets never reach a log line
        return f"SourceSettings(scheme={self.scheme!r}, profile={self.profile!r}, secrets=<{len(self.secrets)} hidden>)"


@dataclass(frozen=True)
class TopologySettings:
    """``[topology]``: replicas, retention (days), the duplicate window (seconds) and the durable consumers'
    delivery limits that :func:`libs.topology.topology_specs` declares."""

    replicas: Annotated[int, Bounds(ge=1, le=5)] = 1
    """JetStream keeps at most five replicas of a stream or bucket."""
    duplicate_window_s: Positive = 120.0
    commerce_max_age_days: Positive = 30.0
    inventory_max_age_days: Positive = 30.0
    deadletter_max_age_days: Positive = 90.0
    max_deliver: Count = 8
    ack_wait_s: Positive = 4.0
    max_ack_pending: Count = 4096
    lease_ttl_s: Positive = 10.0


@dataclass(frozen=True)
class TracingSettings:
    """``[tracing]``: OpenTelemetry traces (docs/architecture.md, "Traces"). Off by default: no span is
    made and no header is read or written. ``otlp`` needs the ``otlp`` extra (``pip install stockwire[otlp]``)."""

    exporter: Literal["none", "otlp", "file", "console"] = "none"
    endpoint: str = ""
    """OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``); empty: the ``OTEL_EXPORTER_OTLP_*``
    environment variables, else the SDK's default."""
    path: str = ""
    """The ``file`` exporter's file, one JSON span a line (appended); empty: ``<data_dir>/traces.jsonl``."""
    sample_ratio: Ratio = 1.0
    """Share of new traces kept (0.0-1.0); a trace begun upstream follows its caller's sampling flag."""
    service_prefix: str = "stockwire-"
    """Each process's ``service.name`` is this prefix followed by the service (``stockwire-ingress``)."""


@dataclass(frozen=True)
class LoggingSettings:
    """``[logging]``: the log line format of every service process. ``json``: one JSON object a line
    (``ts``, ``level``, ``logger``, ``message``, and ``trace_id``/``span_id`` while a span is current)."""

    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class StockwireSettings:
    """What every process shares: the data directory, the admin token, NATS, the topology and the sources."""

    data_dir: str = ".data"
    admin_token: str | None = None
    nats: NatsSettings = field(default_factory=NatsSettings)
    topology: TopologySettings = field(default_factory=TopologySettings)
    sources: dict[str, SourceSettings] = field(default_factory=dict)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

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


WELL_KNOWN_VARIABLES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "STOCKWIRE_DATA_DIR": ("data_dir",),
        "STOCKWIRE_ADMIN_TOKEN": ("admin_token",),
        "STOCKWIRE_NATS_URL": ("nats", "servers"),
    }
)
"""The single-underscore variables that set a key (the ``STOCKWIRE__…`` form sets any key)."""

OTHER_VARIABLES = frozenset(
    {
        "STOCKWIRE_CONFIG",
        "STOCKWIRE_LOG_LEVEL",
        "STOCKWIRE_SERVER_PROCESS",
        # The test suite's and its tools' own.
        "STOCKWIRE_TEST_POSTGRES",
        "STOCKWIRE_CHAOS",
        "STOCKWIRE_CHAOS_RESULTS",
        "STOCKWIRE_PROPERTY_EXAMPLES",
        "STOCKWIRE_CHROMIUM",
        "STOCKWIRE_CHROMEDRIVER",
        "STOCKWIRE_HELM",
        "STOCKWIRE_PROMTOOL",
        "STOCKWIRE_OLD_NATS_SERVER",
    }
)
"""``STOCKWIRE_*`` variables the project reads other than through this module's keys; a new one is added here."""

_CHART_OUTBOX_URL = re.compile(r"STOCKWIRE_OUTBOX_[A-Z0-9_]+_URL")
# The Helm chart's STOCKWIRE_OUTBOX_<NAME>_URL, substituted by the kubelet into the outboxes' database_url.

_warned: set[str] = set()


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The tree the environment sets, and for each path it sets the variable that set it."""
    tree: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
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
        origins[tuple(path)] = name
    for name, key_path in WELL_KNOWN_VARIABLES.items():
        if env.get(name):
            node = tree
            for part in key_path[:-1]:
                node = node.setdefault(part, {})
            node[key_path[-1]] = env[name]
            origins[key_path] = name
    return tree, origins


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    """The ``STOCKWIRE_*`` variables (one underscore) that are neither well-known nor another part's own."""
    return sorted(
        name
        for name in env
        if name.startswith("STOCKWIRE_")
        and not name.startswith(_ENV_PREFIX)
        and name not in WELL_KNOWN_VARIABLES
        and name not in OTHER_VARIABLES
        and not _CHART_OUTBOX_URL.fullmatch(name)
    )


def _variable_problems(names: list[str]) -> list[str]:
    """A refusal for each variable in ``names`` that looks like a setting; a warning (once a process) for
    the others, which may belong to deployment tooling."""
    sections = sorted({*_shared_sections(), *(_norm(s) for s in SERVICE_SECTIONS)}, key=len, reverse=True)
    problems: list[str] = []
    for name in names:
        close = difflib.get_close_matches(name, [*WELL_KNOWN_VARIABLES, *OTHER_VARIABLES], n=1, cutoff=0.8)
        rest = name[len("STOCKWIRE_") :].lower().strip("_")
        section = next((s for s in sections if rest.startswith(f"{s}_")), None)
        if close:
            problems.append(f"unknown variable {name}; did you mean {close[0]}?")
        elif section is not None:
            key = rest[len(section) :].strip("_")
            problems.append(f"unknown variable {name}; did you mean {_ENV_PREFIX}{section.upper()}__{key.upper()}?")
        elif name not in _warned:
            _warned.add(name)
            logging.getLogger(__name__).warning(
                "unknown variable %s: no setting reads it (settings are %s<SECTION>__<KEY>)", name, _ENV_PREFIX
            )
    return problems


class RawConfig(dict[str, Any]):
    """The merged configuration tree, remembering where values came from (for error messages)."""

    file: str | None = None
    """The TOML file read, if any."""
    env_origins: Mapping[tuple[str, ...], str] = {}
    """Path in the tree (``("ingress", "port")``) -> the environment variable that set it."""
    unknown_variables: list[str] = []
    """``STOCKWIRE_*`` variables that no setting reads (checked by :func:`check_known`)."""


def _fold_admin(tree: dict[str, Any]) -> dict[str, Any]:
    # ``[admin] token`` is the documented spelling of ``admin_token``; the table stays for the key check.
    admin = tree.get("admin")
    if isinstance(admin, Mapping) and "token" in admin:
        tree.setdefault("admin_token", admin["token"])
    return tree


def load_raw(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> RawConfig:
    """The merged configuration tree: file first, then the environment on top.

    Raises :class:`ConfigError` when the chosen file is missing or is not TOML. Keys and unknown
    ``STOCKWIRE_*`` variables are not checked here (see :func:`check_known`)."""
    env = os.environ if env is None else env
    chosen = path or env.get("STOCKWIRE_CONFIG")
    tree: dict[str, Any] = {}
    file: Path | None = None
    if chosen:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist (STOCKWIRE_CONFIG)")
    elif Path("stockwire.toml").is_file():
        file = Path("stockwire.toml")
    if file is not None:
        tree = _load_toml(file)
    env_tree, origins = _env_overrides(env)
    raw = RawConfig(_deep_merge(_fold_admin(tree), _fold_admin(env_tree)))
    raw.file = str(file) if file is not None else None
    raw.env_origins = origins
    raw.unknown_variables = _unknown_variables(env)
    return raw


def _load_toml(file: Path) -> dict[str, Any]:
    try:
        return _normalise(tomllib.loads(file.read_text("utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from exc


def _split_lists(cls: Any, data: Mapping[str, Any]) -> dict[str, Any]:
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


@dataclass(frozen=True)
class _AdminSection:
    token: str | None = None


def _shared_sections() -> dict[str, type]:
    hints = typing.get_type_hints(StockwireSettings)
    return {"admin": _AdminSection, **{f.name: hints[f.name] for f in dataclasses.fields(StockwireSettings)}}


def _unknown(hint: Any, value: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Paths in ``value`` that ``hint`` does not declare, each with the keys that are valid there."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            return []  # a wrong type is the converter's to report
        hints = typing.get_type_hints(hint)
        known = [f.name for f in dataclasses.fields(hint)]
        found: list[tuple[tuple[str, ...], list[str]]] = []
        for key, item in value.items():
            if key in hints and key in known:
                found += _unknown(hints[key], item, (*path, key))
            else:
                found.append(((*path, str(key)), known))
        return found
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        return [u for key, item in value.items() for u in _unknown(args[1], item, (*path, str(key)))]
    if origin is list and isinstance(value, list) and args:
        return [u for i, item in enumerate(value) for u in _unknown(args[0], item, (*path, f"[{i}]"))]
    if origin in (typing.Union, types.UnionType):
        return next((u for arg in args if (u := _unknown(arg, value, path))), [])
    return []


def _shown_section(name: str) -> str:
    return next((s for s in SERVICE_SECTIONS if _norm(s) == name), name)


def _origin(raw: Mapping[str, Any], path: tuple[str, ...]) -> tuple[tuple[str, ...] | None, str | None]:
    """The path of the variable that set ``path`` (itself, a parent given as JSON, or a child), and a
    description of where the value came from (that variable, else the file)."""
    origins: Mapping[tuple[str, ...], str] = getattr(raw, "env_origins", {})
    set_by = [p for p in origins if p == path[: len(p)]] or [p for p in origins if p[: len(path)] == path]
    file = getattr(raw, "file", None)
    if set_by:
        return set_by[0], origins[set_by[0]]
    return None, f"in {file}" if file else None


def _key_name(path: tuple[str, ...]) -> str:
    """``("channel_notifier", "channels", "[0]", "buffer")`` -> ``[channel-notifier.channels[0]] buffer``."""
    *parents, key = path
    if not parents:
        return key
    return f"[{'.'.join([_shown_section(parents[0]), *parents[1:]]).replace('.[', '[')}] {key}"


def _describe(raw: Mapping[str, Any], path: tuple[str, ...], valid: list[str]) -> str:
    """``unknown key [ingress] max_body_byte (STOCKWIRE__INGRESS__MAX_BODY_BYTE); did you mean …?``"""
    set_by, where = _origin(raw, path)
    *parents, key = path
    value: Any = raw
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    if parents:
        what = f"unknown key {_key_name(path)}"
    elif isinstance(value, Mapping):
        what = f"unknown section [{key}]"
    else:
        what = f"unknown key {key}"
    text = what + (f" ({where})" if where else "")
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        hint = f"[{_shown_section(close[0])}]" if not parents and isinstance(value, Mapping) else close[0]
        if set_by and len(set_by) >= len(path):
            fixed = (*set_by[: len(parents)], close[0], *set_by[len(path) :])
            hint += f" ({_ENV_PREFIX}{'__'.join(part.upper() for part in fixed)})"
        text += f"; did you mean {hint}?"
    return text


_MSGSPEC_PATH = re.compile(r"\.([^.\[]+)|(\[\d+\])")


def _convert(raw: Mapping[str, Any], path: tuple[str, ...], data: Any, cls: type[T]) -> T:
    """``data`` (the part of ``raw`` at ``path``) as ``cls``, its numbers within their :class:`Bounds`.

    Raises :class:`ConfigError` naming the key, e.g. ``[sources.shop] scheme: Invalid enum value 'bogus'
    (STOCKWIRE__SOURCES__SHOP__SCHEME)``."""
    try:
        value = msgspec.convert(_split_lists(cls, data) if isinstance(data, Mapping) else data, cls, strict=False)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$")
        inner = tuple(m.group(1) or m.group(2) for m in _MSGSPEC_PATH.finditer(at.rstrip("`")))
        raise _refused(raw, (*path, *inner), message) from None
    problems = _out_of_bounds(raw, path, value)
    if problems:
        raise ConfigError("; ".join(problems))
    return value


def _refused(raw: Mapping[str, Any], where: tuple[str, ...], message: str) -> ConfigError:
    """The error about the key at ``where``: ``<key>: <message> (<where its value was set>)``."""
    origin = _origin(raw, where)[1]
    name = _key_name(where) if where else "configuration"
    return ConfigError(f"{name}: {message}" + (f" ({origin})" if origin else ""))


def _out_of_bounds(raw: Mapping[str, Any], path: tuple[str, ...], value: Any) -> list[str]:
    """One line for each number in the dataclass ``value`` (nested ones, list items and dict values
    included) that is not finite or lies outside the :class:`Bounds` of its field."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return []
    hints = typing.get_type_hints(type(value), include_extras=True)
    problems: list[str] = []
    for f in dataclasses.fields(value):
        item, where = getattr(value, f.name), (*path, f.name)
        form = field_form(hints[f.name])
        if form is not None:
            texts = enumerate(item) if isinstance(item, list) else [(None, item)]
            for i, text in texts:
                at = where if i is None else (*where, f"[{i}]")
                problems += _misformed(raw, at, form, text)
            continue
        if isinstance(item, list):
            problems += [p for i, x in enumerate(item) for p in _out_of_bounds(raw, (*where, f"[{i}]"), x)]
        elif isinstance(item, dict):
            problems += [p for k, x in item.items() for p in _out_of_bounds(raw, (*where, str(k)), x)]
        elif isinstance(item, int | float) and not isinstance(item, bool):
            bounds = field_bounds(hints[f.name]) or Bounds()
            if not bounds.admits(item):
                origin = _origin(raw, where)[1]
                allowed = f"finite, {bounds}" if isinstance(item, float) else str(bounds)
                problems.append(
                    f"{_key_name(where)} = {item!r}"
                    + (f" ({origin})" if origin else "")
                    + f" is out of range; allowed: {allowed}"
                )
        else:
            problems += _out_of_bounds(raw, where, item)
    return problems


def _misformed(raw: Mapping[str, Any], where: tuple[str, ...], form: Form, text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    try:
        form.check(text)
    except ValueError as exc:
        origin = _origin(raw, where)[1]
        return [f"{_key_name(where)} = {_without_password(text)!r}" + (f" ({origin})" if origin else "") + f" {exc}"]
    return []


def _without_password(text: str) -> str:
    # A URL's password is a secret: never echoed into an error or a log.
    try:
        parts = urllib.parse.urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if not password:
        return text
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def check_known(raw: Mapping[str, Any], sections: Mapping[str, type] | None = None) -> None:
    """Refuse what no settings dataclass declares: top-level names other than the shared settings,
    ``[admin]`` and :data:`SERVICE_SECTIONS`; unknown keys in the shared sections (``[nats]``,
    ``[topology]``, ``[sources.<name>]``, ``[tracing]``, ``[logging]``, ``[admin]``); and unknown keys,
    nested tables and list items included, in each section of ``sections`` (name -> the dataclass that reads it).

    ``STOCKWIRE_*`` variables of ``raw`` (:func:`load_raw`) that no setting reads are refused when they
    look like a setting (``STOCKWIRE_NATS_URLS``), else logged as a warning.

    Raises :class:`ConfigError` with one line naming every unknown key, its origin (the file or the
    ``STOCKWIRE__…`` variable) and the nearest valid key (``difflib.get_close_matches``)."""
    shared = _shared_sections()
    top_level = [*shared, *(_norm(s) for s in SERVICE_SECTIONS)]
    problems = _variable_problems(list(getattr(raw, "unknown_variables", [])))
    for key, value in raw.items():
        if key not in top_level:
            problems.append(_describe(raw, (key,), top_level))
        elif key in shared:
            problems += [_describe(raw, p, valid) for p, valid in _unknown(shared[key], value, (key,))]
    for name, cls in (sections or {}).items():
        key = _norm(name)
        problems += [_describe(raw, p, valid) for p, valid in _unknown(cls, raw.get(key, {}), (key,))]
    if problems:
        raise ConfigError("; ".join(problems))


def load_section(raw: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """Read one section (``[ingress]``, ``[outbox-relay]``…) of ``raw`` as the dataclass ``cls``.

    Raises :class:`ConfigError` for a wrong type, an unknown key in the section or a number outside its
    field's :class:`Bounds`."""
    section = raw.get(_norm(name), {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    problems = [_describe(raw, p, valid) for p, valid in _unknown(cls, section, (_norm(name),))]
    if problems:
        raise ConfigError("; ".join(problems))
    return _convert(raw, (_norm(name),), section, cls)


def load_settings(raw: Mapping[str, Any] | None = None) -> StockwireSettings:
    """The settings every process shares; reads file and environment when ``raw`` is not given.

    Raises :class:`ConfigError` for a wrong type, an unknown section, an unknown shared key, a number
    outside its field's :class:`Bounds` or a source that cannot verify (no secret, a bad profile…)."""
    raw = load_raw() if raw is None else raw
    check_known(raw)
    hints = typing.get_type_hints(StockwireSettings)
    # Section by section, each source on its own: an error then names the section and the source.
    sections: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(StockwireSettings):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.name == "sources" and isinstance(value, Mapping):
            sections[f.name] = {
                source: _convert(raw, ("sources", source), given, SourceSettings) for source, given in value.items()
            }
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(value, Mapping):
            sections[f.name] = _convert(raw, (f.name,), value, hints[f.name])
        else:
            scalars[f.name] = value
    settings = dataclasses.replace(_convert(raw, (), scalars, StockwireSettings), **sections)
    from libs.profiles import ProfileError, implied_scheme, source_profile
    from libs.subjects import SOURCE_PATTERN

    raw_sources = raw.get("sources", {})
    for source, source_settings in list(settings.sources.items()):
        if not SOURCE_PATTERN.fullmatch(source):
            raise ConfigError(f"[sources.{source}]: a source name must match {SOURCE_PATTERN.pattern}")
        given = raw_sources.get(source, {}) if isinstance(raw_sources, Mapping) else {}
        if source_settings.profile is not None and "scheme" not in given:
            # A profile implies its scheme: `profile = "shopify"` alone is a Shopify source.
            try:
                scheme = implied_scheme(source_settings.profile)
            except ProfileError as exc:
                raise ConfigError(f"[sources.{source}] profile: {exc}") from None
            if scheme is not None and scheme != source_settings.scheme:
                source_settings = dataclasses.replace(source_settings, scheme=scheme)  # type: ignore[arg-type]
                settings.sources[source] = source_settings
        try:
            source_profile(source, source_settings)
        except ProfileError as exc:
            raise ConfigError(str(exc)) from None
        blank = [n for n, secret in enumerate(source_settings.secrets, 1) if not secret.strip()]
        if blank:
            # Anyone can sign with an empty key: such a secret would let every forged webhook in.
            numbers = ", ".join(map(str, blank))
            raise _refused(raw, ("sources", source, "secrets"), f"secret {numbers} is empty or blank")
        if source_settings.scheme == "standard-webhooks":
            from libs.signing import is_standard_secret

            bad = [n for n, secret in enumerate(source_settings.secrets, 1) if not is_standard_secret(secret)]
            if bad:
                # The secret itself is never shown: its position is enough to find it.
                raise ConfigError(
                    f"[sources.{source}] secrets: secret {', '.join(map(str, bad))} is not a Standard Webhooks "
                    "secret (whsec_ followed by base64)"
                )
        if source_settings.orders_source is not None and source_settings.orders_source not in settings.sources:
            configured = ", ".join(sorted(settings.sources))
            raise ConfigError(
                f"[sources.{source}] orders_source: {source_settings.orders_source!r} is not a configured source "
                f"(configured: {configured})"
            )
    return settings


def check_source_secrets(settings: StockwireSettings, raw: Mapping[str, Any]) -> None:
    """Refuse (``ConfigError``, naming the source and where its secrets were set) a source without a
    secret, for the process that verifies webhooks: every scheme checks a signature, so with no secret
    each webhook would be refused 401. The other services read ``[sources]`` for their profiles only and
    are given no secrets (the Helm chart mounts them into ingress alone). ``raw``: :func:`load_raw`'s tree."""
    for source, source_settings in settings.sources.items():
        if not source_settings.secrets:
            needs = f"empty; a {source_settings.scheme} source needs at least one secret"
            raise _refused(raw, ("sources", source, "secrets"), needs)


def load_service_config(section: str, cls: type[T]) -> tuple[StockwireSettings, T]:
    """What a service process reads at start: the shared settings and its own section, from file and env;
    with a settings class whose ``verifies_signatures`` is true (ingress), :func:`check_source_secrets`.

    A configuration that cannot be used ends the process here: one line on stderr naming every
    problem, exit status 2, no traceback."""
    try:
        raw = load_raw()
        check_known(raw, {section: cls})
        shared, settings = load_settings(raw), load_section(raw, section, cls)
        if getattr(cls, "verifies_signatures", False):
            check_source_secrets(shared, raw)
        return shared, settings
    except ConfigError as exc:
        print(config_error_line(exc, section), file=sys.stderr, flush=True)
        raise SystemExit(2) from None
