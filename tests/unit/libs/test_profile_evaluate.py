"""Profile expressions evaluated as closures give JMESPath's own answer, or defer to it.

Every expression the shipped profiles compile is checked against every JSON fixture of the producers
(and each fixture's ``data``), then a set of expressions of the same shapes against generated
documents: where a closure answers, the value (and its type) is what ``jmespath`` gives; where
``jmespath`` raises, the closure never answers (it raises :class:`Unsure` and the caller asks
``jmespath``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jmespath.parser import ParsedResult

from libs.profiles import profile as profile_module
from libs.profiles.evaluate import Unsure, compile_expression
from libs.profiles.profile import load_profile, profile_names

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _agrees(parsed: ParsedResult, document: object) -> bool:
    """True when the closure answered (and agreed); False when it deferred. Fails on a disagreement."""
    evaluate = compile_expression(parsed)
    assert evaluate is not None
    try:
        expected: tuple[str, object] = ("value", parsed.search(document))
    except Exception as exc:  # any error jmespath raises is one the closure must not hide
        expected = ("error", type(exc).__name__)
    try:
        found = evaluate(document)
    except Unsure:
        return False
    assert expected == ("value", found), (parsed.expression, document, expected, found)
    assert type(expected[1]) is type(found), (parsed.expression, document, expected, found)
    return True


def _shipped_expressions() -> list[ParsedResult]:
    """Every expression the shipped profiles compile (recorded as each profile is loaded)."""
    seen: dict[str, ParsedResult] = {}
    real = profile_module.compile_expression

    def record(parsed: ParsedResult) -> Any:
        seen[parsed.expression] = parsed
        return real(parsed)

    with mock.patch.object(profile_module, "compile_expression", record):
        for name in profile_names():
            load_profile(name)
    return list(seen.values())


def _fixture_documents() -> list[object]:
    documents: list[object] = []
    for path in sorted(FIXTURES.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        documents.append(document)
        if isinstance(document, dict) and isinstance(document.get("data"), dict):
            documents.append(document["data"])
            for value in document["data"].values():
                if isinstance(value, list):
                    documents.extend(value)
    return documents


def test_the_shipped_profiles_expressions_agree_with_jmespath_on_every_fixture() -> None:
    expressions = _shipped_expressions()
    compiled = [parsed for parsed in expressions if compile_expression(parsed) is not None]
    # The Commerce Engine order's two (its "confirmed" test, a line's quantity) are among them.
    texts = {parsed.expression for parsed in compiled}
    assert any(text.startswith("contains(") for text in texts) and any(text.startswith("sum(") for text in texts)
    documents = _fixture_documents()
    assert len(documents) > 20
    answered = sum(_agrees(parsed, document) for parsed in compiled for document in documents)
    assert answered > 0, "the closures answered on the producers' own payloads"


def test_the_commerce_engine_order_is_mapped_the_same_with_and_without_closures() -> None:
    body = (FIXTURES / "commerce_engine" / "01-order.created.json").read_bytes()
    fast = load_profile("commerce-engine").map_body(body)
    with mock.patch.object(profile_module, "compile_expression", lambda _parsed: None):
        walked = load_profile("commerce-engine").map_body(body)
    assert fast == walked and fast.event is not None


@pytest.mark.parametrize(
    "text",
    ["a[0]", "a[*].b", "a | b", "a < b", "length(a)", "@", "a.b[?c]", "to_string(a)", "{x: a}", "*.a"],
)
def test_trees_outside_the_supported_shapes_keep_jmespath(text: str) -> None:
    assert compile_expression(jmespath.compile(text)) is None


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, -1, 0.0, 1.0, 2.5]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(["", "confirmed", "success", "pending", "0", "a"]),
)
_KEYS = st.sampled_from(["a", "b", "c", "data", "status", "quantity"])
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)
_SHAPES = [
    "a",
    "a.b.c",
    "a || b",
    "a && b",
    "!a",
    "a == b",
    "a != b",
    "a == 'success'",
    "a.b == `1`",
    "`0` == a",
    "[a, b]",
    "[a, b || `0`]",
    "sum([a, b || `0`])",
    "sum(a)",
    "contains(['confirmed', 'pending'], a || '')",
    "contains(a, 'x')",
    "contains(a, b)",
    "contains(['confirmed'], data.status || '') || data.b == 'success'",
    "`[1, 2]`",
    "!(a || b) && c",
]


@settings(max_examples=300, deadline=None)
@given(document=_DOCUMENTS, text=st.sampled_from(_SHAPES))
def test_closures_agree_with_jmespath_on_any_document(document: object, text: str) -> None:
    _agrees(jmespath.compile(text), document)


def test_the_happy_paths_answer_without_jmespath() -> None:
    assert _agrees(jmespath.compile("sum([a, b || `0`])"), {"a": 2, "b": None})
    assert _agrees(jmespath.compile("contains(['x', 'y'], a || '')"), {})
    assert _agrees(jmespath.compile("a == 'x' || b"), {"a": "x"})
    assert not _agrees(jmespath.compile("sum(a)"), {"a": [1, True]}), "a boolean is not a number to sum"
    assert not _agrees(jmespath.compile("a == b"), {"a": 0, "b": False}), "0 against false is JMESPath's to answer"
