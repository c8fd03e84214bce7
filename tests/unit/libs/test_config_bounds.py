"""Every number of every settings section is checked against the range its field declares, through the
real loader (a TOML file and an environment), and an unusable value is refused naming its key."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.config import (
    OTHER_VARIABLES,
    WELL_KNOWN_VARIABLES,
    Bounds,
    ConfigError,
    StockwireSettings,
    check_known,
    check_source_secrets,
    field_bounds,
    load_raw,
    load_section,
    load_service_config,
    load_settings,
)
from services.ingress.settings import IngressSettings
from services.inventory.settings import InventorySettings
from stockwire.cli import main as cli_main
from stockwire.stack import section_classes

ROOT = Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True)
class NumericField:
    """One int/float setting: where it sits in the file and the bounds its field declares."""

    path: tuple[str, ...]
    """``("ingress", "port")``, ``("sources", "*", "tolerance_s")``: a dict key is ``*``, a list item ``[]``."""
    kind: type
    bounds: Bounds | None

    @property
    def id(self) -> str:
        return ".".join(self.path)


def _numeric_fields(cls: type, path: tuple[str, ...]) -> Iterator[NumericField]:
    """Every int/float field of the settings dataclass ``cls``, nested dataclasses, list items and dict
    values included (a dict key or a list item is ``*``/``[]`` in the path)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        origin, args = typing.get_origin(bare), typing.get_args(bare)
        if origin in (typing.Union, types.UnionType):
            bare = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(bare), typing.get_args(bare)
        where = (*path, f.name)
        if bare in (int, float):
            yield NumericField(where, bare, field_bounds(hint))
        elif dataclasses.is_dataclass(bare) and isinstance(bare, type):
            yield from _numeric_fields(bare, where)
        elif origin in (list, dict) and args and dataclasses.is_dataclass(item := args[-1]) and isinstance(item, type):
            yield from _numeric_fields(item, (*where, "[]" if origin is list else "*"))


def _all_numeric_fields() -> list[NumericField]:
    fields = list(_numeric_fields(StockwireSettings, ()))
    for name, cls in section_classes().items():
        fields += _numeric_fields(cls, (name,))
    return fields


NUMERIC_FIELDS = _all_numeric_fields()


def test_the_walk_finds_the_fields_of_every_section() -> None:
    ids = {f.id for f in NUMERIC_FIELDS}
    for expected in (
        "ingress.port",
        "ingress.max_body_bytes",
        "inventory.reservation_ttl_s",
        "outbox-relay.batch_size",
        "channel-notifier.channels.[].buffer",
        "console.session_ttl_s",
        "topology.replicas",
        "nats.connect_timeout_s",
        "sources.*.tolerance_s",
        "tracing.sample_ratio",
    ):
        assert expected in ids


@pytest.mark.parametrize("numeric", NUMERIC_FIELDS, ids=lambda f: f.id)
def test_every_numeric_setting_declares_a_lower_bound(numeric: NumericField) -> None:
    # A new int/float field states its range where it is declared (Port, Count, Positive, NonNegative,
    # Ratio or Annotated[..., Bounds(...)]); without one, nothing stops 0 or -1 reaching the service.
    assert numeric.bounds is not None, f"{numeric.id} has no Bounds"
    assert numeric.bounds.ge is not None or numeric.bounds.gt is not None, f"{numeric.id} has no lower bound"


def _literal(value: float, kind: type) -> str:
    if kind is float or isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    return str(int(value))


def _toml(numeric: NumericField, value: float) -> str:
    """A configuration that sets ``numeric`` to ``value`` and is otherwise valid."""
    path, literal = numeric.path, _literal(value, numeric.kind)
    if path[0] == "sources":
        return f'[sources.shop]\nsecrets = ["s"]\n{path[-1]} = {literal}\n'
    if "[]" in path:
        section, key = ".".join(path[: path.index("[]")]), path[-1]
        return f'[[{section}]]\nname = "a"\n{key} = {literal}\n'
    if len(path) == 1:
        return f"{path[0]} = {literal}\n"
    return f"[{'.'.join(path[:-1])}]\n{path[-1]} = {literal}\n"


def _shown_key(numeric: NumericField) -> str:
    """How the refusal names the key: ``[ingress] port``, ``[sources.shop] tolerance_s``."""
    parents = [{"*": "shop", "[]": "[0]"}.get(p, p) for p in numeric.path[:-1]]
    return f"[{'.'.join(parents).replace('.[', '[')}] {numeric.path[-1]}"


def _load(config: Path, env: dict[str, str] | None = None) -> None:
    """What a service and the CLI do: every section of the file and the environment, strictly."""
    raw = load_raw(config, env=env or {})
    check_known(raw, section_classes())
    load_settings(raw)
    for name, cls in section_classes().items():
        load_section(raw, name, cls)


def _bad_values(numeric: NumericField) -> list[float]:
    bounds = numeric.bounds or Bounds()
    bad: list[float] = []
    if bounds.ge is not None:
        bad += [bounds.ge - 1, -1_000_000]
    if bounds.gt is not None:
        bad += [bounds.gt, bounds.gt - 1]
    if bounds.le is not None:
        bad += [bounds.le + 1]
    if numeric.kind is float:
        bad += [math.nan, math.inf, -math.inf]
    return sorted(set(bad), key=repr)


CASES = [(numeric, value) for numeric in NUMERIC_FIELDS for value in _bad_values(numeric)]


@pytest.mark.parametrize(("numeric", "value"), CASES, ids=[f"{n.id}={v!r}" for n, v in CASES])
def test_a_value_out_of_range_is_refused_naming_the_key_the_value_and_the_range(
    tmp_path: Path, numeric: NumericField, value: float
) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text(_toml(numeric, value))
    with pytest.raises(ConfigError) as caught:
        _load(config)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{_shown_key(numeric)} = "), message
    shown = _literal(value, numeric.kind)
    assert f" = {shown} (in {config}) is out of range; allowed: " in message, message


@pytest.mark.parametrize("numeric", NUMERIC_FIELDS, ids=lambda f: f.id)
def test_the_bounds_themselves_are_accepted(tmp_path: Path, numeric: NumericField) -> None:
    bounds = numeric.bounds or Bounds()
    edges = [b for b in (bounds.ge, bounds.le) if b is not None]
    if bounds.gt is not None:
        edges.append(bounds.gt + (1 if numeric.kind is int else 0.001))
    for value in edges:
        config = tmp_path / "stockwire.toml"
        config.write_text(_toml(numeric, value))
        _load(config)


@pytest.mark.parametrize(
    ("variable", "text", "shown"),
    [
        ("STOCKWIRE__INGRESS__PORT", "70000", "[ingress] port = 70000"),
        ("STOCKWIRE__INGRESS__PORT", "-1", "[ingress] port = -1"),
        ("STOCKWIRE__INGRESS__MAX_BODY_BYTES", "-5", "[ingress] max_body_bytes = -5"),
        ("STOCKWIRE__INGRESS__PUBLISH_TIMEOUT_S", "nan", "[ingress] publish_timeout_s = nan"),
        ("STOCKWIRE__INGRESS__WORKERS", "0", "[ingress] workers = 0"),
        ("STOCKWIRE__TOPOLOGY__REPLICAS", "0", "[topology] replicas = 0"),
        ("STOCKWIRE__TOPOLOGY__MAX_DELIVER", "0", "[topology] max_deliver = 0"),
        ("STOCKWIRE__INVENTORY__RESERVATION_TTL_S", "-1", "[inventory] reservation_ttl_s = -1.0"),
        ("STOCKWIRE__CHANNEL_NOTIFIER__CONCURRENCY", "0", "[channel-notifier] concurrency = 0"),
        ("STOCKWIRE__OUTBOX_RELAY__STALL_S", "inf", "[outbox-relay] stall_s = inf"),
        ("STOCKWIRE__SOURCES__SHOP__TOLERANCE_S", "0", "[sources.shop] tolerance_s = 0"),
    ],
)
def test_a_value_out_of_range_from_the_environment_names_the_variable(
    tmp_path: Path, variable: str, text: str, shown: str
) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[sources.shop]\nsecrets = ["s"]\n')
    with pytest.raises(ConfigError) as caught:
        _load(config, {variable: text})
    assert str(caught.value).startswith(f"{shown} ({variable}) is out of range; allowed: ")


def test_defaults_and_the_example_configuration_load(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    _load(empty)
    _load(ROOT / "stockwire.example.toml")


@pytest.mark.parametrize("secrets", ["secrets = []", ""])
def test_a_source_without_a_secret_is_refused_by_ingress_alone(
    tmp_path: Path, secrets: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ingress verifies signatures: a source with no secret stops it at start, naming the source. The other
    services read [sources] for their profiles and are given no secrets (the Helm chart mounts them into
    ingress alone): the same file starts them."""
    config = tmp_path / "stockwire.toml"
    config.write_text(f'[sources.x]\nscheme = "shopify"\n{secrets}\n')
    _load(config)
    monkeypatch.setenv("STOCKWIRE_CONFIG", str(config))
    for name in [n for n in os.environ if n.startswith("STOCKWIRE__")]:
        monkeypatch.delenv(name)
    shared, _ = load_service_config("inventory", InventorySettings)
    assert shared.sources["x"].secrets == []
    refused = r"^\[sources\.x\] secrets: empty; a shopify source needs at least one secret"
    with pytest.raises(ConfigError, match=refused):
        check_source_secrets(shared, load_raw(config, env={}))
    with pytest.raises(SystemExit) as stopped:
        load_service_config("ingress", IngressSettings)
    assert stopped.value.code == 2
    assert re.search(r"configuration error: \[sources\.x\] secrets: empty", capsys.readouterr().err)


def test_a_wrong_value_in_a_source_names_the_source() -> None:
    env = {"STOCKWIRE__SOURCES__SHOP__SCHEME": "bogus", "STOCKWIRE__SOURCES__SHOP__SECRETS": "s"}
    with pytest.raises(ConfigError) as caught:
        load_settings(load_raw(env=env))
    assert str(caught.value) == "[sources.shop] scheme: Invalid enum value 'bogus' (STOCKWIRE__SOURCES__SHOP__SCHEME)"


def test_a_wrong_type_names_the_section_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(load_raw(env={"STOCKWIRE__NATS__CONNECT_TIMEOUT_S": "soon"}))
    assert str(caught.value) == (
        "[nats] connect_timeout_s: Expected `float`, got `str` (STOCKWIRE__NATS__CONNECT_TIMEOUT_S)"
    )


@pytest.mark.parametrize(
    ("variable", "suggested"),
    [
        ("STOCKWIRE_NATS_URLS", "STOCKWIRE_NATS_URL"),
        ("STOCKWIRE_DATADIR", "STOCKWIRE_DATA_DIR"),
        ("STOCKWIRE_ADMIN_TOKENS", "STOCKWIRE_ADMIN_TOKEN"),
        ("STOCKWIRE_INGRESS_PORT", "STOCKWIRE__INGRESS__PORT"),
        ("STOCKWIRE_OUTBOX_RELAY__BATCH_SIZE", "STOCKWIRE__OUTBOX_RELAY__BATCH_SIZE"),
        ("STOCKWIRE_TOPOLOGY_REPLICAS", "STOCKWIRE__TOPOLOGY__REPLICAS"),
    ],
)
def test_a_variable_that_looks_like_a_misspelt_setting_is_refused_naming_it(variable: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(load_raw(env={variable: "x"}))
    assert str(caught.value) == f"unknown variable {variable}; did you mean {suggested}?"


def test_an_unknown_setting_variable_is_refused_as_before() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[unknown\] \(STOCKWIRE__UNKNOWN__KEY\)"):
        load_settings(load_raw(env={"STOCKWIRE__UNKNOWN__KEY": "1"}))


def test_the_project_s_own_variables_are_taken_and_other_ones_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text("")
    env = {name: "1" for name in OTHER_VARIABLES} | {
        "STOCKWIRE_CONFIG": str(config),
        "STOCKWIRE_OUTBOX_SHOP_SPOOL_URL": "sqlite:///x.db",
        "STOCKWIRE_DEPLOYED_BY": "pipeline-7",
    }
    with caplog.at_level(logging.WARNING, logger="libs.config"):
        load_settings(load_raw(env=env))
    warned = [r.getMessage() for r in caplog.records if r.name == "libs.config"]
    assert len(warned) == 1
    assert warned[0].startswith("unknown variable STOCKWIRE_DEPLOYED_BY: ")


def _variables_named_in_the_repository() -> set[str]:
    """``STOCKWIRE_*`` names (one underscore) in the project's code (as strings), chart and build files."""
    anywhere = re.compile(r"(?<![A-Za-z0-9_])STOCKWIRE_[A-Z0-9][A-Z0-9_]*")
    quoted = re.compile(r"(?<=[\"'])STOCKWIRE_[A-Z0-9][A-Z0-9_]*")  # in Python, a string: not a constant's name
    names: set[str] = set()
    folders = ("libs", "services", "stockwire", "tests", "bench", "examples", "deploy")
    paths = [p for d in folders for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".yaml", ".tpl")]
    paths += [ROOT / name for name in ("Makefile", "Dockerfile", "Tiltfile")]
    for path in paths:
        if path.name in (Path(__file__).name, "config.py") or not path.is_file():
            continue
        pattern = quoted if path.suffix == ".py" else anywhere
        names.update(pattern.findall(path.read_text("utf-8", errors="replace")))
    return names


def test_every_variable_the_project_reads_is_known_to_the_loader() -> None:
    # A new STOCKWIRE_* variable read somewhere else would otherwise be warned about at every start.
    unknown = {
        name
        for name in _variables_named_in_the_repository()
        if name not in WELL_KNOWN_VARIABLES
        and name not in OTHER_VARIABLES
        and not name.startswith("STOCKWIRE_OUTBOX_")  # the chart's STOCKWIRE_OUTBOX_<NAME>_URL
    }
    assert not unknown


def test_the_cli_and_a_service_print_the_same_one_line_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "stockwire.toml"
    config.write_text('[sources.shop]\nsecrets = ["s"]\n[ingress]\nport = 70000\n')
    monkeypatch.setenv("STOCKWIRE_CONFIG", str(config))
    monkeypatch.setenv("STOCKWIRE__SOURCES__SHOP__SCHEME", "bogus")
    assert cli_main(["sources", "list"]) == 2
    assert capsys.readouterr().err == (
        "stockwire: configuration error: [sources.shop] scheme: Invalid enum value 'bogus' "
        "(STOCKWIRE__SOURCES__SHOP__SCHEME)\n"
    )
    monkeypatch.delenv("STOCKWIRE__SOURCES__SHOP__SCHEME")
    from services.ingress.settings import IngressSettings

    with pytest.raises(SystemExit) as stopped:
        load_service_config("ingress", IngressSettings)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"stockwire ingress: configuration error: [ingress] port = 70000 (in {config}) is out of range; "
        "allowed: 1 to 65535\n"
    )


def test_field_bounds_reads_annotated_hints_only() -> None:
    assert field_bounds(int) is None
    assert field_bounds(typing.Annotated[int, Bounds(ge=1)]) == Bounds(ge=1)
    assert str(Bounds(ge=0, le=2**31 - 1)) == "0 to 2147483647"
    assert str(Bounds(gt=0)) == "greater than 0"
    assert not Bounds(ge=0).admits(math.nan)


@pytest.mark.parametrize("secrets", ['[""]', '["  "]', '["ok", ""]'])
def test_a_blank_secret_is_refused_in_every_service(tmp_path: Path, secrets: str) -> None:
    """Anyone can sign with an empty key: a blank secret would let forged webhooks in, so no process starts
    with one, from the file or from the environment."""
    config = tmp_path / "stockwire.toml"
    config.write_text(f'[sources.acme]\nscheme = "commerce-engine"\nsecrets = {secrets}\n')
    with pytest.raises(ConfigError, match=r"^\[sources\.acme\] secrets: secret \d is empty or blank"):
        load_settings(load_raw(config, env={}))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"STOCKWIRE__SOURCES__ACME__SECRETS"):
        load_settings(load_raw(empty, env={"STOCKWIRE__SOURCES__ACME__SECRETS": secrets}))
