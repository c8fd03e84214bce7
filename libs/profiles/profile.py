"""Source profiles: how one producer's webhooks become Stockwire's canonical events.

A profile is data (a TOML file under ``libs/profiles/data``, see docs/profiles.md): the signature
scheme it implies, where a delivery's id, type and time are, and for each event type which canonical
kind it builds and a JMESPath expression per field. Every expression is compiled once, when the
profile is loaded; mapping a delivery only evaluates them.

Two kinds of error, never mixed:

- :class:`ProfileError` — the profile or an operator's override is wrong (configuration time);
- :class:`MappingError` — a delivery does not match a mapped type's fields (run time). It names the
  field on the wire (``data.order_items[0].sku``). Nothing else is raised for any input.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from libs.profiles import canonical
from libs.profiles.canonical import (
    KEY,
    KINDS,
    MAX_ITEMS,
    MAX_KEY_LENGTH,
    SKU,
    TIME,
    WIRE_NOT_EMPTY,
    CanonicalEvent,
    Mapped,
    Unmapped,
)
from libs.profiles.evaluate import Evaluator, Unsure, compile_expression, jmespath_true

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "UNMAPPED",
    "MappingError",
    "Profile",
    "ProfileError",
    "event_type_label",
    "load_profile",
    "parse_profile",
    "profile_names",
    "shipped_scheme",
]

UNMAPPED = "unmapped"
"""The kind an events entry names to leave a type unmapped on purpose."""
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_MAX_TIME_TEXT = 64
_LIST_SOURCE = "from"
# The plain path an expression starts with (`data.status || 'shipped'` → data.status): the wire field
# an error names. An expression that starts otherwise (`sum([...])`) is named by its canonical field.
_LEADING_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?=\s*(?:\|\||$))")
_FILTERED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\[\?(.+)\]")
_PLAIN_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_MSGSPEC_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
# A JSON integer an id may be written as (wider values stay numbers and are refused as ids).
_INT_ID_RANGE = range(-(2**63), 2**64)


class ProfileError(ValueError):
    """A profile file or an override is wrong: unknown key, kind or field, bad JMESPath, missing field."""


class MappingError(ValueError):
    """A delivery of a mapped type does not match its mapping.

    ``field`` is where on the wire (``data.order_items[0].sku``; the canonical field name when the
    expression is not a plain path), ``detail`` what is wrong with it.
    """

    def __init__(self, field: str, detail: str, *, event_type: str | None = None) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.event_type = event_type


# --- the canonical structs, read once --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldShape:
    name: str
    required: bool
    coerce: Callable[[object, str], object] | None
    item: _Shape | None
    wire_not_empty: bool = False


@dataclass(frozen=True, slots=True)
class _Shape:
    struct: type[msgspec.Struct]
    fields: dict[str, _FieldShape]


def _as_sku(value: object, where: str) -> object:
    # The Meta pattern refuses control characters; str.isprintable also refuses the other
    # invisible ones (format characters, separators), as the inventory's own SKU check does.
    if isinstance(value, str) and not value.isprintable():
        raise MappingError(where, "must be printable characters only")
    return value


def _as_key(value: object, where: str) -> object:
    # Producers write ids as numbers too; within 64 bits the decimal text is the id.
    if type(value) is int and value in _INT_ID_RANGE:
        return str(value)
    return _as_sku(value, where)


def _as_time(value: object, where: str) -> object:
    if not isinstance(value, str):
        return value
    if len(value) > _MAX_TIME_TEXT:
        raise MappingError(where, f"a time of over {_MAX_TIME_TEXT} characters")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        raise MappingError(where, f"must be an ISO 8601 time or epoch seconds, got {value[:40]!r}") from None


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the base type, its msgspec.Meta objects) of an annotation, ``X | None`` read as X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            annotation = inner[0]
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metas = typing.get_args(annotation)
        return base, tuple(metas)
    return annotation, ()


def _shape(struct: type[msgspec.Struct]) -> _Shape:
    fields: dict[str, _FieldShape] = {}
    for info in msgspec.structs.fields(struct):
        base, metas = _unwrap(info.type)
        coerce = _COERCE.get(next((m for m in metas if m in _COERCE), None))
        item = None
        if typing.get_origin(base) is tuple:
            element = typing.get_args(base)[0]
            if isinstance(element, type) and issubclass(element, msgspec.Struct):
                item = _shape(element)
        required = info.default is msgspec.NODEFAULT and info.default_factory is msgspec.NODEFAULT
        not_empty = any(isinstance(m, msgspec.Meta) and (m.extra or {}).get(WIRE_NOT_EMPTY) for m in metas)
        fields[info.name] = _FieldShape(info.name, required, coerce, item, not_empty)
    return _Shape(struct, fields)


# A SKU is never rewritten (a numeric SKU is refused); a key may be written as a number.
_COERCE: dict[object, Callable[[object, str], object]] = {KEY: _as_key, SKU: _as_sku, TIME: _as_time}
_SHAPES = {kind: _shape(struct) for kind, struct in KINDS.items()}


# --- compiled mappings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Expr:
    text: str
    parsed: ParsedResult
    path: str | None
    """The plain dotted path the expression starts with, if any: the wire field it names."""
    keys: tuple[str, ...] | None
    """The keys of an expression that is nothing but a plain path: then it is evaluated by lookups."""
    selection: _Expr | None = None
    """For a list given as ``<plain path>[?<condition>]`` (Shopify's ``line_items[?sku]``): the condition,
    evaluated per element here so that an element keeps its position on the wire (errors name it)."""
    alternatives: tuple[tuple[str, ...], ...] = ()
    """The paths of an expression that is nothing but plain paths joined by ``||``, in order. It is read
    as "the first of them that is there" (present and not null): JMESPath's ``||`` would also pass over
    ``""``, ``[]`` and ``false``, and so hide a value that is there but wrong."""
    evaluate: Evaluator | None = None
    """Any other expression, as closures (:mod:`.evaluate`) when its tree allows; else JMESPath's walk."""

    def search(self, value: object) -> object:
        if self.alternatives:
            for path in self.alternatives:
                found = _lookup(value, path)
                if found is not None:
                    return found
            return None
        if self.keys is None:
            if self.evaluate is not None:
                try:
                    return self.evaluate(value)
                except Unsure:
                    pass
            return self.parsed.search(value)
        # What JMESPath does for a field chain, without walking its tree: a field of anything but an
        # object is null.
        return _lookup(value, self.keys)


class _NotInMap(Exception):
    def __init__(self, value: object, known: tuple[str, ...]) -> None:
        super().__init__(value)
        self.value = value
        self.known = known


@dataclass(frozen=True, slots=True)
class _ValueMap:
    """``{ from = <expression>, map = { <wire value> = <value> }, default = <value> }``: a field whose wire
    value is translated through a table (Shopify's fulfilment ``status`` ``success`` is ``shipped``).
    A wire value the table does not hold takes ``default``; without one it is a mapping error. A value
    of the table may itself be a value map, read from the same object: Shopify's fulfilment is read by its
    ``status`` and, once that is ``success``, by the carrier's ``shipment_status``."""

    source: _Expr
    table: dict[str, object]
    default: object
    has_default: bool

    @property
    def text(self) -> str:
        return self.source.text

    @property
    def path(self) -> str | None:
        return self.source.path

    def search(self, value: object) -> object:
        found = self.source.search(value)
        if found is None:
            return self.default if self.has_default else None
        key = _map_key(found)
        if key is not None and key in self.table:
            mapped = self.table[key]
            return mapped.search(value) if isinstance(mapped, _ValueMap) else mapped
        if self.has_default:
            return self.default
        raise _NotInMap(found, tuple(self.table))


def _map_key(value: object) -> str | None:
    """The table key a wire value is looked up by: a string as is, a boolean as ``true``/``false``, an
    integer as its decimal text; other values have none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    return None


_Getter = _Expr | _ValueMap


def _lookup(value: object, keys: tuple[str, ...]) -> object:
    for key in keys:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str
    shape: _Shape
    scalars: tuple[tuple[_FieldShape, _Getter], ...]
    lists: tuple[tuple[_FieldShape, _Expr, _Plan], ...]
    by_name: dict[str, tuple[_Getter, _Plan | None]]


@dataclass(frozen=True, slots=True)
class _Choice:
    """An event type whose kind a field decides (WooCommerce's ``order.updated`` by the order's
    ``status``): the plan per wire value; ``default`` for any other value (None: unmapped), or an
    error when there is none (``has_default`` false)."""

    selector: _Expr
    plans: dict[str, _Plan | None]
    default: _Plan | None
    has_default: bool

    def kinds(self) -> tuple[str, ...]:
        plans = [*self.plans.values(), self.default]
        return tuple(sorted({plan.kind for plan in plans if plan is not None}))

    def choose(self, document: object, event_type: str) -> _Plan | None:
        found = _search(self.selector, document, "", "kind")
        key = _map_key(found)
        if key is not None and key in self.plans:
            return self.plans[key]
        if self.has_default:
            return self.default
        where = self.selector.path or "kind"
        known = ", ".join(sorted(self.plans))
        shown = "missing" if found is None else repr(found)[:60]
        raise MappingError(where, f"{shown} is not one of the values this type maps ({known})", event_type=event_type)


_Entry = _Plan | _Choice | None


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAMETER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Compiler:
    """Compiles each distinct expression text once; ``count`` says how many were compiled.

    ``${name}`` in an expression is the profile parameter ``name`` (its ``[parameters]`` default, or the
    source's setting), written in as a JMESPath identifier, quoted unless it is a plain one:
    ``metadata.${order_metadata_key}`` reads ``metadata.order_id``, or ``metadata."shop-order"``."""

    def __init__(self, parameters: Mapping[str, str] | None = None) -> None:
        self._cache: dict[str, _Expr] = {}
        self._parameters = dict(parameters or {})

    @property
    def count(self) -> int:
        return len(self._cache)

    def _substituted(self, text: str, where: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._parameters:
                known = ", ".join(sorted(self._parameters)) or "none"
                raise ProfileError(f"{where}: unknown parameter ${{{name}}} (this profile's: {known})")
            value = self._parameters[name]
            # A plain identifier stays plain, so an error can name the wire field it reads.
            return value if _IDENTIFIER.fullmatch(value) else json.dumps(value)

        return _PARAMETER.sub(value, text)

    def __call__(self, text: object, where: str) -> _Expr:
        if not isinstance(text, str) or not text.strip():
            raise ProfileError(f"{where}: a JMESPath expression (a non-empty string) is needed, got {text!r}")
        if "${" in text:
            text = self._substituted(text, where)
        cached = self._cache.get(text)
        if cached is None:
            try:
                parsed = jmespath.compile(text)
            except JMESPathError as exc:
                raise ProfileError(f"{where}: {text!r} is not a JMESPath expression: {exc}") from None
            stripped = text.strip()
            leading = _LEADING_PATH.match(stripped)
            path = leading.group(0) if leading else None
            keys = tuple(path.split(".")) if path is not None and path == stripped else None
            parts = [part.strip() for part in stripped.split("||")]
            alternatives: tuple[tuple[str, ...], ...] = ()
            if len(parts) > 1 and all(_PLAIN_PATH.fullmatch(part) for part in parts):
                alternatives = tuple(tuple(part.split(".")) for part in parts)
            selection: _Expr | None = None
            filtered = _FILTERED.fullmatch(stripped)
            if filtered is not None:
                path, keys = filtered.group(1), tuple(filtered.group(1).split("."))
                selection = self(filtered.group(2), where)
            evaluate = compile_expression(parsed) if keys is None and not alternatives else None
            cached = _Expr(text, parsed, path, keys, selection, alternatives, evaluate)
            self._cache[text] = cached
        return cached


def _where(base: str, expr: _Getter, field_name: str) -> str:
    name = expr.path or field_name
    return f"{base}.{name}" if base else name


def _search(expr: _Getter, value: object, base: str, name: str) -> object:
    """``expr`` over ``value``; an error is named ``base.<expr's path or name>`` (built only then)."""
    try:
        return expr.search(value)
    except _NotInMap as exc:
        known = ", ".join(exc.known)
        shown = repr(exc.value)[:60]
        raise MappingError(_where(base, expr, name), f"{shown} is not one of the mapped values ({known})") from None
    except JMESPathError as exc:
        raise MappingError(_where(base, expr, name), f"{expr.text!r} failed: {exc}") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # An operator's expression may call functions (to_string, sort …) over untrusted data.
        raise MappingError(_where(base, expr, name), f"{expr.text!r} failed: {type(exc).__name__}") from None


def _build(
    plan: _Plan, value: object, base: str, positions: dict[str, list[int]], canonical: str = ""
) -> dict[str, object]:
    """The canonical fields of ``plan`` read from ``value``; ``positions`` gets, for each list built from a
    selection, the wire position of each element kept (keyed by its canonical path, ``.lines``)."""
    out: dict[str, object] = {}
    for field, expr in plan.scalars:
        found = _search(expr, value, base, field.name)
        if found is None:
            continue
        out[field.name] = field.coerce(found, _where(base, expr, field.name)) if field.coerce else found
    for field, expr, item_plan in plan.lists:
        found = (
            _lookup(value, expr.keys)
            if expr.selection is not None and expr.keys
            else _search(expr, value, base, field.name)
        )
        if found is None:
            continue
        where = _where(base, expr, field.name)
        if not isinstance(found, list):
            raise MappingError(where, f"must be a list, got {_json_type(found)}")
        if len(found) > MAX_ITEMS:
            raise MappingError(where, f"holds {len(found)} entries, over the limit of {MAX_ITEMS}")
        if field.wire_not_empty and not found:
            raise MappingError(where, "Expected `array` of length >= 1")
        kept = list(range(len(found)))
        if expr.selection is not None:
            kept = [i for i in kept if jmespath_true(_select(expr, found[i], f"{where}[{i}]"))]
            positions[f"{canonical}.{field.name}"] = kept
        out[field.name] = [
            _build(item_plan, found[i], f"{where}[{i}]", positions, f"{canonical}.{field.name}[{n}]")
            for n, i in enumerate(kept)
        ]
    return out


def _select(expr: _Expr, element: object, where: str) -> object:
    assert expr.selection is not None
    try:
        return expr.selection.search(element)
    except (JMESPathError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise MappingError(where, f"{expr.text!r} failed: {type(exc).__name__}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _wire_path(plan: _Plan, path: str, missing: str | None, positions: Mapping[str, list[int]]) -> str:
    """The wire name of a canonical path (``.lines[0].quantity``) as msgspec reports it; an element of a
    list built from a selection is named by its position on the wire."""
    where = ""
    canonical = ""
    current: _Plan | None = plan
    parts = [(m.group(1), m.group(2)) for m in _PATH_PART.finditer(path)]
    if missing is not None:
        parts.append((missing, None))
    for name, index in parts:
        if index is not None:
            kept = positions.get(canonical)
            wire = kept[int(index)] if kept is not None and int(index) < len(kept) else int(index)
            where += f"[{wire}]"
            canonical += f"[{index}]"
            continue
        canonical += f".{name}"
        entry = current.by_name.get(name) if current is not None else None
        if entry is None:
            where = f"{where}.{name}" if where else name
            current = None
            continue
        getter, current = entry
        where = _where(where, getter, name)
    return where or plan.kind


def _invalid(
    plan: _Plan, exc: msgspec.ValidationError, event_type: str, positions: Mapping[str, list[int]]
) -> MappingError:
    match = _MSGSPEC_AT.match(str(exc))
    detail, path = (match.group("detail"), match.group("path")) if match else (str(exc), None)
    missing = _MISSING.match(detail)
    if missing is not None:
        where = _wire_path(plan, path or "", missing.group("field"), positions)
        return MappingError(where, "required, missing or null", event_type=event_type)
    if path is None:
        return MappingError(plan.kind, detail, event_type=event_type)
    return MappingError(_wire_path(plan, path, None, positions), detail, event_type=event_type)


# --- profile files -------------------------------------------------------------------------------

_TOP_KEYS = {"name", "scheme", "follows", "parameters", "envelope", "common", "events", "kinds"}
_OVERRIDABLE = {"envelope", "common", "events", "kinds"}
_ENVELOPE_KEYS = {"id", "type", "occurred_at", "id_header", "type_header"}


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: a table is needed, got {value!r}")
    return dict(value)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _event_entry(value: object, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"kind": value}
    if value is False:
        return {"kind": UNMAPPED}
    return _table(value, where)


def _normalised(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(document)
    if "events" in out:
        events = _table(out["events"], f"{where}events")
        out["events"] = {key: _event_entry(value, f"{where}events.{key!r}") for key, value in events.items()}
    return out


_MAP_KEYS = {_LIST_SOURCE, "map", "default"}


def _value_table(value: object, where: str) -> tuple[object, dict[str, object], object, bool]:
    """(the ``from`` expression text, ``map``, ``default``, whether there is a default) of a value map."""
    table = _table(value, where)
    unknown = set(table) - _MAP_KEYS
    if unknown or _LIST_SOURCE not in table or "map" not in table:
        raise ProfileError(
            f"{where}: a value map is {{ {_LIST_SOURCE} = <expression>, map = {{ <wire value> = <value> }}, "
            f"default = <value> (optional) }}, got keys {sorted(table, key=str)}"
        )
    mapping = _table(table["map"], f"{where}.map")
    if not mapping:
        raise ProfileError(f"{where}.map: an empty map maps nothing")
    return table[_LIST_SOURCE], mapping, table.get("default"), "default" in table


def _value_map(value: object, compile_: _Compiler, where: str) -> _ValueMap:
    source, mapping, default, has_default = _value_table(value, where)
    table: dict[str, object] = {}
    for key, mapped in mapping.items():
        if isinstance(mapped, Mapping):
            table[key] = _value_map(mapped, compile_, f"{where}.map.{key}")
        elif isinstance(mapped, str | int | float | bool):
            table[key] = mapped
        else:
            raise ProfileError(
                f"{where}.map.{key}: a value map gives a string, number, boolean or value map, got {mapped!r}"
            )
    if has_default and not isinstance(default, str | int | float | bool):
        raise ProfileError(f"{where}.default: a string, number or boolean, got {default!r}")
    return _ValueMap(compile_(source, f"{where}.{_LIST_SOURCE}"), table, default, has_default)


def _plan(
    kind: str,
    fields: Mapping[str, Any],
    compile_: _Compiler,
    where: str,
    shape: _Shape | None = None,
    *,
    complete: bool = True,
) -> _Plan:
    """Compile ``fields`` for ``kind``; ``complete``: every required field must have an expression."""
    shape = shape or _SHAPES[kind]
    scalars: list[tuple[_FieldShape, _Getter]] = []
    lists: list[tuple[_FieldShape, _Expr, _Plan]] = []
    by_name: dict[str, tuple[_Getter, _Plan | None]] = {}
    for name, value in fields.items():
        field = shape.fields.get(name)
        if field is None:
            known = ", ".join(sorted(shape.fields))
            raise ProfileError(f"{where}.{name}: {kind} has no field {name!r} (its fields: {known})")
        if field.item is not None:
            table = _table(value, f"{where}.{name}")
            if _LIST_SOURCE not in table:
                raise ProfileError(f"{where}.{name}: a list needs '{_LIST_SOURCE}', the expression giving the list")
            expr = compile_(table.pop(_LIST_SOURCE), f"{where}.{name}.{_LIST_SOURCE}")
            item_plan = _plan(kind, table, compile_, f"{where}.{name}", field.item, complete=complete)
            lists.append((field, expr, item_plan))
            by_name[name] = (expr, item_plan)
        else:
            getter: _Getter = (
                _value_map(value, compile_, f"{where}.{name}")
                if isinstance(value, Mapping)
                else compile_(value, f"{where}.{name}")
            )
            scalars.append((field, getter))
            by_name[name] = (getter, None)
    for field in shape.fields.values() if complete else ():
        if field.required and field.name not in by_name:
            raise ProfileError(f"{where}: {kind} needs an expression for {field.name!r}")
    return _Plan(kind, shape, tuple(scalars), tuple(lists), by_name)


@dataclass(frozen=True, slots=True)
class _Envelope:
    id: _Expr | None
    type: _Expr | None
    occurred_at: _Expr | None
    id_header: str | None
    type_header: str | None


def _envelope(table: Mapping[str, Any], compile_: _Compiler) -> _Envelope:
    unknown = set(table) - _ENVELOPE_KEYS
    if unknown:
        raise ProfileError(f"envelope: unknown keys {sorted(unknown, key=str)} (known: {sorted(_ENVELOPE_KEYS)})")

    def expr(key: str) -> _Expr | None:
        return compile_(table[key], f"envelope.{key}") if key in table else None

    def header(key: str) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ProfileError(f"envelope.{key}: a header name is needed, got {value!r}")
        return value.lower() if value else None

    envelope = _Envelope(expr("id"), expr("type"), expr("occurred_at"), header("id_header"), header("type_header"))
    if envelope.type is None and envelope.type_header is None:
        raise ProfileError("envelope: 'type' or 'type_header' must say where the event type is")
    return envelope


def _header(headers: Mapping[str, str] | None, name: str | None) -> str | None:
    if not headers or name is None:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _identifier(value: object, where: str, event_type: str | None) -> str:
    value = _as_key(value, where)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH or not value.isprintable():
        raise MappingError(where, f"must be 1 to {MAX_KEY_LENGTH} printable characters", event_type=event_type)
    return value


class Profile:
    """A loaded, compiled source profile. Build it with :func:`load_profile` or :func:`parse_profile`."""

    def __init__(
        self,
        *,
        name: str,
        scheme: str | None,
        follows: str | None,
        envelope: _Envelope,
        exact: dict[str, _Entry],
        patterns: list[tuple[str, _Entry]],
        compiled: int,
    ) -> None:
        self.name = name
        self.scheme = scheme
        """The signature scheme the profile implies; None: the source's own ``scheme`` applies."""
        self.follows = follows
        """Where the profile's facts come from (a schema and its version), for the reader."""
        self._envelope = envelope
        self._exact = exact
        self._patterns = patterns
        self.expressions_compiled = compiled
        """How many distinct expressions were compiled (once each, at load)."""

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, scheme={self.scheme!r}, {len(self._exact) + len(self._patterns)} types)"

    @property
    def type_only_in_header(self) -> str | None:
        """The header the event type travels in (lower case; Shopify's ``x-shopify-topic``) when the body
        does not carry it; None when the body does."""
        return self._envelope.type_header if self._envelope.type is None else None

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types this profile maps (patterns end in ``.*``), unmapped ones on purpose left out."""
        exact = [t for t, plan in self._exact.items() if plan is not None]
        return tuple(exact + [f"{prefix}*" for prefix, plan in self._patterns if plan is not None])

    def _plan_for(self, event_type: str) -> _Entry:
        if event_type in self._exact:
            return self._exact[event_type]
        for prefix, plan in self._patterns:
            if event_type.startswith(prefix):
                return plan
        return None

    def kind_of(self, event_type: str) -> str:
        """The canonical kind ``event_type`` builds under this profile (``unmapped`` when none); for a type
        whose kind a field decides, the kinds it may build joined by ``|`` (``order_cancelled|order_placed``)."""
        plan = self._plan_for(event_type)
        if isinstance(plan, _Choice):
            return "|".join(plan.kinds()) or UNMAPPED
        return plan.kind if plan is not None else UNMAPPED

    def map(
        self,
        document: object,
        *,
        event_type: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Mapped:
        """Map one decoded webhook body (any JSON value) to its canonical event.

        ``event_type``/``event_id`` given by the caller (what ingress already read and verified) win
        over the profile's ``type_header``/``id_header`` in ``headers``, which win over the body.
        An event type the profile does not map gives :class:`~libs.profiles.canonical.Unmapped`.
        Raises :class:`MappingError` naming the field for anything that does not match; nothing else.
        """
        envelope = self._envelope
        if event_type is None:
            event_type = _header(headers, envelope.type_header)
        if event_type is None and envelope.type is not None and isinstance(document, dict):
            event_type = _search(envelope.type, document, "", "type")  # type: ignore[assignment]
        type_where = envelope.type.path if envelope.type and envelope.type.path else "event_type"
        if event_type is None:
            raise MappingError(type_where, "the event type is missing")
        event_type = _identifier(event_type, type_where, None)
        plan = self._plan_for(event_type)
        if plan is not None and not isinstance(document, dict):
            raise MappingError("body", f"must be a JSON object, got {_json_type(document)}", event_type=event_type)
        if event_id is None:
            event_id = _header(headers, envelope.id_header)
        if event_id is None and envelope.id is not None and isinstance(document, dict):
            found = _search(envelope.id, document, "", "id")
            if found is not None:
                event_id = _identifier(found, envelope.id.path or "id", event_type)
        elif event_id is not None:
            event_id = _identifier(event_id, "id", event_type)
        occurred_at = None
        if envelope.occurred_at is not None and isinstance(document, dict):
            occurred_at = self._time(envelope.occurred_at, document)
        if isinstance(plan, _Choice):
            plan = plan.choose(document, event_type)
        if plan is None:
            return Mapped(
                event_type=event_type, event_id=event_id, occurred_at=occurred_at, event=Unmapped(event_type=event_type)
            )
        return Mapped(
            event_type=event_type, event_id=event_id, occurred_at=occurred_at, event=_event(plan, document, event_type)
        )

    def map_body(
        self,
        body: bytes,
        *,
        event_type: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> Mapped:
        """Decode a raw webhook body (JSON, at most ``max_bytes``) and :meth:`map` it.

        A type known to be unmapped is answered without decoding the body. Raises :class:`MappingError`
        (``field="body"`` for a body that is too large, not JSON, or nested too deep).
        """
        if event_type is not None and self._plan_for(event_type) is None and event_id is not None:
            return self.map(None, event_type=event_type, event_id=event_id, headers=headers)
        if len(body) > max_bytes:
            raise MappingError("body", f"{len(body)} bytes, over the limit of {max_bytes}", event_type=event_type)
        try:
            document = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise MappingError("body", f"not valid JSON: {exc}", event_type=event_type) from None
        except RecursionError:
            raise MappingError("body", "JSON nested too deep", event_type=event_type) from None
        return self.map(document, event_type=event_type, event_id=event_id, headers=headers)

    @staticmethod
    def _time(expr: _Expr, document: object) -> float | None:
        """The producer's time: None when absent; a time that is there but unreadable or outside
        0..MAX_TIME raises :class:`MappingError` (it orders an order's events, so it is never guessed)."""
        where = expr.path or "occurred_at"
        found = _search(expr, document, "", "occurred_at")
        if found is None:
            return None
        for keys in expr.alternatives:  # `created_at || timestamp`: name the one that is there
            if _lookup(document, keys) is not None:
                where = ".".join(keys)
                break
        if isinstance(found, bool) or not isinstance(found, int | float | str):
            raise MappingError(where, f"must be an ISO 8601 time or epoch seconds, got {_json_type(found)}")
        value = _as_time(found, where)
        if isinstance(value, int) and not 0 <= value <= canonical.MAX_TIME:
            raise MappingError(where, f"must be between 0 and {canonical.MAX_TIME:.0f} epoch seconds")
        assert isinstance(value, int | float)
        if not 0 <= value <= canonical.MAX_TIME:  # NaN fails this too
            raise MappingError(where, f"must be between 0 and {canonical.MAX_TIME:.0f} epoch seconds")
        return float(value)


_decoder = msgspec.json.Decoder()


def _event(plan: _Plan, document: object, event_type: str) -> CanonicalEvent:
    positions: dict[str, list[int]] = {}
    try:
        return msgspec.convert(_build(plan, document, "", positions), plan.shape.struct)  # type: ignore[return-value]
    except MappingError as exc:
        exc.event_type = event_type
        raise
    except msgspec.ValidationError as exc:
        raise _invalid(plan, exc, event_type, positions) from None


def parse_profile(
    document: Mapping[str, Any],
    override: Mapping[str, Any] | None = None,
    parameters: Mapping[str, str] | None = None,
) -> Profile:
    """Build a profile from its parsed TOML table, with an operator's ``override`` merged over it.

    ``override`` has the file's shape restricted to ``envelope``, ``common``, ``events`` and ``kinds``:
    tables merge key by key, an expression replaces the file's (see docs/profiles.md). ``parameters``
    set the profile's ``[parameters]`` (each a non-empty string; one the profile does not declare is
    refused). Every expression is compiled here, once. Raises :class:`ProfileError` naming the key
    that is wrong.
    """
    document = _table(document, "profile")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"unknown keys {sorted(unknown, key=str)} (known: {sorted(_TOP_KEYS)})")
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError("'name' must be a non-empty string")
    merged = _normalised(document, "")
    if override:
        override = _table(override, "override")
        unknown = set(override) - _OVERRIDABLE
        if unknown:
            keys, allowed = sorted(unknown, key=str), sorted(_OVERRIDABLE)
            raise ProfileError(f"override: keys {keys} cannot be overridden (only {allowed})")
        merged = _merge(merged, _normalised(override, "override."))
    scheme, follows = merged.get("scheme"), merged.get("follows")
    for key, value in (("scheme", scheme), ("follows", follows)):
        if value is not None and not isinstance(value, str):
            raise ProfileError(f"'{key}' must be a string")

    compile_ = _Compiler(_parameters(merged.get("parameters", {}), parameters or {}))
    envelope = _envelope(_table(merged.get("envelope", {}), "envelope"), compile_)
    common = _table(merged.get("common", {}), "common")
    for key, value in common.items():
        if not any(key in shape.fields and shape.fields[key].item is None for shape in _SHAPES.values()):
            raise ProfileError(f"common.{key}: no kind has a field {key!r}")
        compile_(value, f"common.{key}")
    kinds = _table(merged.get("kinds", {}), "kinds")
    for kind, table in kinds.items():
        if kind not in KINDS:
            raise ProfileError(f"kinds.{kind}: unknown kind (known: {', '.join(sorted(KINDS))})")
        # Checked on their own first, so that an error names the kinds table it is in.
        _plan(kind, _table(table, f"kinds.{kind}"), compile_, f"kinds.{kind}", complete=False)
    exact: dict[str, _Entry] = {}
    patterns: list[tuple[str, _Entry]] = []

    def kind_plan(kind: object, fields: Mapping[str, Any], where: str, *, strict: bool = True) -> _Plan | None:
        if kind == UNMAPPED:
            return None
        if not isinstance(kind, str) or kind not in KINDS:
            raise ProfileError(f"{where}: kind {kind!r} is unknown (known: {', '.join(sorted(KINDS))}, {UNMAPPED})")
        shape = _SHAPES[kind]
        shared = {key: value for key, value in common.items() if key in shape.fields}
        own = fields if strict else {key: value for key, value in fields.items() if key in shape.fields}
        return _plan(kind, _merge(_merge(shared, _table(kinds.get(kind, {}), f"kinds.{kind}")), own), compile_, where)

    for event_type, entry in _table(merged.get("events", {}), "events").items():
        where = f"events.{event_type!r}"
        if not isinstance(event_type, str):
            raise ProfileError(f"{where}: an event type is a string")
        fields = dict(entry)
        kind = fields.pop("kind", None)
        plan: _Entry
        if isinstance(kind, Mapping):
            plan = _choice(kind, fields, kind_plan, compile_, where)
        else:
            plan = kind_plan(kind, fields, where)
        if event_type.endswith(".*"):
            patterns.append((event_type[:-1], plan))
        elif "*" in event_type or not event_type:
            raise ProfileError(f"{where}: a pattern ends in '.*' and has no other '*'")
        else:
            exact[event_type] = plan
    patterns.sort(key=lambda item: len(item[0]), reverse=True)
    return Profile(
        name=name,
        scheme=scheme,
        follows=follows,
        envelope=envelope,
        exact=exact,
        patterns=patterns,
        compiled=compile_.count,
    )


def _parameters(declared: object, given: Mapping[str, str]) -> dict[str, str]:
    table = _table(declared, "parameters")
    for key, value in table.items():
        if not isinstance(value, str) or not value:
            raise ProfileError(f"parameters.{key}: a parameter's default is a non-empty string, got {value!r}")
    for key, value in given.items():
        if key not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ProfileError(f"parameter {key!r} is not one of this profile's (its parameters: {known})")
        if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH or not value.isprintable():
            raise ProfileError(f"parameter {key!r}: 1 to {MAX_KEY_LENGTH} printable characters, got {value!r}")
    return {**table, **given}


def _choice(
    table: Mapping[str, Any],
    fields: Mapping[str, Any],
    kind_plan: Callable[..., _Plan | None],
    compile_: _Compiler,
    where: str,
) -> _Choice:
    """An events entry whose ``kind`` is a value map: one plan per kind named, built once and shared by
    the wire values naming it. The entry's own fields go to each chosen kind that has them."""
    source, mapping, default, has_default = _value_table(table, f"{where}.kind")
    named = {*mapping.values(), *([default] if has_default else [])}
    built: dict[object, _Plan | None] = {}
    for kind in sorted(named, key=str):
        built[kind] = kind_plan(kind, fields, f"{where} (kind {kind})", strict=False)
    for name in fields:
        if not any(plan is not None and name in plan.shape.fields for plan in built.values()):
            raise ProfileError(f"{where}.{name}: none of the kinds this entry chooses has a field {name!r}")
    return _Choice(
        compile_(source, f"{where}.kind.{_LIST_SOURCE}"),
        {key: built[kind] for key, kind in mapping.items()},
        built[default] if has_default else None,
        has_default,
    )


_DATA = "data"


def profile_names() -> tuple[str, ...]:
    """The names of the profiles shipped with Stockwire, sorted."""
    folder = resources.files(__package__ or "libs.profiles").joinpath(_DATA)
    return tuple(sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml")))


@functools.cache
def _shipped_event_types() -> tuple[frozenset[str], tuple[str, ...]]:
    exact: set[str] = set()
    patterns: set[str] = set()
    for name in profile_names():
        for event_type in load_profile(name).event_types:
            (patterns if event_type.endswith("*") else exact).add(event_type)
    return frozenset(exact), tuple(sorted(patterns, key=len, reverse=True))


def event_type_label(event_type: str) -> str:
    """A bounded metric label for ``event_type``: the type itself when a shipped profile maps it, the
    pattern (``payment.refund.*``) that maps it, else ``other``."""
    exact, patterns = _shipped_event_types()
    if event_type in exact:
        return event_type
    for pattern in patterns:
        if event_type.startswith(pattern[:-1]):
            return pattern
    return "other"


def load_profile(
    name: str, override: Mapping[str, Any] | None = None, parameters: Mapping[str, str] | None = None
) -> Profile:
    """Load the shipped profile ``name`` (``commerce-engine``, ``stockwire`` …), ``override`` merged over it
    and ``parameters`` set (see :func:`parse_profile`).

    Raises :class:`ProfileError` for an unknown name, a bad override or an unknown parameter.
    """
    return parse_profile(_shipped_document(name), override, parameters)


def shipped_scheme(name: str) -> str | None:
    """The ``scheme`` the shipped profile ``name`` declares (None: the source's own applies), read from its
    file without compiling it. Raises :class:`ProfileError` for an unknown name."""
    scheme = _read_shipped(name, ()).get("scheme")
    return scheme if isinstance(scheme, str) else None


def _shipped_document(name: str) -> dict[str, Any]:
    return copy.deepcopy(_read_shipped(name, ()))


@functools.cache
def _read_shipped(name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """The shipped file ``name``, its ``extends`` (another shipped profile it builds on) merged under it."""
    if name not in profile_names():
        raise ProfileError(f"unknown profile {name!r} (known: {', '.join(profile_names())})")
    text = resources.files(__package__ or "libs.profiles").joinpath(_DATA, f"{name}.toml").read_text("utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{name}.toml: {exc}") from None
    base = document.pop("extends", None)
    if base is None:
        return document
    if not isinstance(base, str) or base in (*seen, name):
        raise ProfileError(f"{name}.toml: extends {base!r}: a shipped profile other than itself is needed")
    return _merge(_normalised(_read_shipped(base, (*seen, name)), ""), _normalised(document, ""))
