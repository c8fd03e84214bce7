"""The error shape every service shares: what escapes a handler from a bad value is a 400, a bug a 500."""

from __future__ import annotations

import re
import sys

import pytest
import sqlalchemy.exc
from litestar import get, post
from litestar.exceptions import NotFoundException
from litestar.testing import TestClient

from libs.http import create_service_app, printable_pattern

_RAISED: dict[str, Exception] = {
    "value": ValueError("invalid literal for int() with base 10: '²'"),
    "unicode": UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    "overflow": OverflowError("Python int too large to convert to SQLite INTEGER"),
    "recursion": RecursionError("maximum recursion depth exceeded while deserializing an object"),
    "data": sqlalchemy.exc.DataError("SELECT 1", {}, Exception("invalid byte sequence: 0x00")),
    "bug": KeyError("missing"),
}


@get("/raise/{kind:str}", sync_to_thread=False)
def raise_it(kind: str) -> None:
    raise _RAISED[kind]


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("value", 400, "invalid_input"),
        ("unicode", 400, "invalid_input"),
        ("overflow", 400, "out_of_range"),
        ("recursion", 400, "too_deep"),
        ("data", 400, "invalid_input"),
        ("bug", 500, "internal_error"),
    ],
)
def test_errors_from_request_values_are_400_and_bugs_500(kind: str, status: int, code: str) -> None:
    with TestClient(create_service_app("test", [raise_it])) as client:
        response = client.get(f"/raise/{kind}")
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and body["detail"]
    assert "²" not in body["detail"] and "SQLite" not in body["detail"]  # the detail never echoes internals


def test_the_printable_pattern_takes_what_isprintable_takes() -> None:
    pattern = re.compile(printable_pattern(1, 3))
    for code in range(sys.maxunicode + 1):
        character = chr(code)
        assert bool(pattern.fullmatch(character)) is character.isprintable(), hex(code)
    assert not pattern.fullmatch("") and not pattern.fullmatch("abcd") and pattern.fullmatch("a b")
    stripped = re.compile(printable_pattern(1, 4, strip=True))
    for text in ["a", " a ", "\tab\n", "a  b", "abcd", "   ", "a\tb", "abcde", "\u3000ab\u3000", "a\x00"]:
        expected = 1 <= len(text.strip()) <= 4 and text.strip().isprintable()
        assert bool(stripped.fullmatch(text)) is expected, repr(text)


@get("/thing/{name:str}", sync_to_thread=False)
def a_thing(name: str) -> dict[str, str]:
    if name == "missing":
        raise NotFoundException(f"no thing named {name}")
    return {"name": name}


@post("/things", sync_to_thread=False)
def make_a_thing() -> None:
    return None


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/schema/openapi.json", "/thing/x", "/thing/missing"]
)
def test_head_is_answered_as_get_without_the_content(path: str) -> None:
    with TestClient(create_service_app("test", [a_thing, make_a_thing])) as client:
        got = client.get(path)
        head = client.head(path)
    assert head.status_code == got.status_code
    assert head.content == b"" and got.content != b""
    assert head.headers.get("content-type") == got.headers.get("content-type")
    if path == "/metrics":
        # The document changes from one request to the next (each is counted in it): a length, not the same.
        assert int(head.headers["content-length"]) > 0
    else:
        assert head.headers.get("content-length") == got.headers.get("content-length")


def test_head_of_a_route_without_get_is_refused_as_get_is() -> None:
    with TestClient(create_service_app("test", [a_thing, make_a_thing])) as client:
        got = client.get("/things")
        head = client.head("/things")
    assert got.status_code == head.status_code == 405
    assert head.content == b""
