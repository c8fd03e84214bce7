"""JMESPath expressions of a profile evaluated as Python closures, for the shapes profiles use.

A profile expression is compiled once and evaluated per webhook. JMESPath's own evaluator walks the
expression's tree for every value (a visitor call and a dispatch per node) and checks every function
argument against its signature; for ``contains(['confirmed', …], data.status || '') ||
data.payment_status == 'success'`` or ``sum([quantity, free_quantity || `0`])`` that walk costs more
than the values it reads. :func:`compile_expression` turns the tree into nested closures for the node
types below and gives None for any other tree (the caller keeps JMESPath's evaluator for it).

A closure only takes the path where the result is certain to be JMESPath's own: a function whose
arguments are not of the types it expects, or a comparison of values that are not both strings or
both plain numbers, raises :class:`Unsure`, and the caller evaluates the expression with JMESPath
instead, which gives the same result or the same error it always gave. The rules followed are the
JMESPath specification's (https://jmespath.org/specification.html): a field of anything but an
object is null, a sub-expression stops at null, a multi-select list of null is null, ``||`` and
``&&`` use JMESPath's truth (false, null and empty strings, lists and objects are false).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from jmespath.parser import ParsedResult

__all__ = ["Evaluator", "Unsure", "compile_expression", "jmespath_true"]

Evaluator = Callable[[object], object]
"""A compiled expression: the document (decoded JSON) in, the value found out."""


class Unsure(Exception):
    """The closure cannot vouch for its answer on this value: evaluate with JMESPath instead."""


def jmespath_true(value: object) -> bool:
    """JMESPath's truth: false, null, and empty strings, lists and objects are false; numbers are true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _field(name: str) -> Evaluator:
    def field(value: object) -> object:
        return value.get(name) if type(value) is dict else None

    return field


def _subexpression(steps: list[Evaluator]) -> Evaluator:
    def subexpression(value: object) -> object:
        for step in steps:
            value = step(value)
            if value is None:
                return None
        return value

    return subexpression


def _or(left: Evaluator, right: Evaluator) -> Evaluator:
    def either(value: object) -> object:
        found = left(value)
        return found if jmespath_true(found) else right(value)

    return either


def _and(left: Evaluator, right: Evaluator) -> Evaluator:
    def both(value: object) -> object:
        found = left(value)
        return right(value) if jmespath_true(found) else found

    return both


def _not(inner: Evaluator) -> Evaluator:
    return lambda value: not jmespath_true(inner(value))


def _literal(constant: object) -> Evaluator:
    return lambda _value: constant


def _multi_select(items: list[Evaluator]) -> Evaluator:
    def multi_select(value: object) -> object:
        return None if value is None else [item(value) for item in items]

    return multi_select


def _comparator(operator: str, left: Evaluator, right: Evaluator) -> Evaluator | None:
    if operator not in ("eq", "ne"):
        return None
    negate = operator == "ne"

    def compare(value: object) -> object:
        a, b = left(value), right(value)
        # Strings, or numbers that are not booleans, compare as Python does; anything else (lists,
        # objects, null, 0 against false) is left to JMESPath's own rules.
        if not ((type(a) is str and type(b) is str) or (_is_number(a) and _is_number(b))):
            raise Unsure
        return (a != b) if negate else (a == b)

    return compare


def _sum(arguments: list[Evaluator]) -> Evaluator | None:
    if len(arguments) != 1:
        return None
    (argument,) = arguments

    def total(value: object) -> object:
        found = argument(value)
        if type(found) is not list or not all(_is_number(item) for item in found):
            raise Unsure
        return sum(found)

    return total


def _contains(arguments: list[Evaluator]) -> Evaluator | None:
    if len(arguments) != 2:
        return None
    subject, search = arguments

    def contains(value: object) -> object:
        within, wanted = subject(value), search(value)
        if type(within) is list:
            if type(wanted) is not str or not all(type(item) is str for item in within):
                raise Unsure
            return wanted in within
        if type(within) is str and type(wanted) is str:
            return wanted in within
        raise Unsure

    return contains


_FUNCTIONS: dict[str, Callable[[list[Evaluator]], Evaluator | None]] = {"sum": _sum, "contains": _contains}


def _compile(node: dict[str, Any]) -> Evaluator | None:
    kind = node["type"]
    children: list[dict[str, Any]] = node.get("children", [])
    if kind == "field":
        return _field(node["value"])
    if kind == "literal":
        return _literal(node["value"])
    compiled = [_compile(child) for child in children]
    if any(child is None for child in compiled):
        return None
    parts: list[Evaluator] = [child for child in compiled if child is not None]
    if kind == "subexpression":
        return _subexpression(parts)
    if kind == "or_expression" and len(parts) == 2:
        return _or(*parts)
    if kind == "and_expression" and len(parts) == 2:
        return _and(*parts)
    if kind == "not_expression" and len(parts) == 1:
        return _not(parts[0])
    if kind == "multi_select_list":
        return _multi_select(parts)
    if kind == "comparator" and len(parts) == 2:
        return _comparator(node["value"], *parts)
    if kind == "function_expression" and node["value"] in _FUNCTIONS:
        return _FUNCTIONS[node["value"]](parts)
    return None


def compile_expression(parsed: ParsedResult) -> Evaluator | None:
    """The closure evaluating ``parsed`` (from ``jmespath.compile``), or None when its tree holds a node
    type, operator or function outside this module's (projections, filters, indexes, pipes, ``<``, any
    function but ``sum`` and ``contains``). A closure may raise :class:`Unsure` for a given value."""
    return _compile(cast(dict[str, Any], parsed.parsed))
