"""The error shape every service shares: what escapes a handler from a bad value is a 400, a bug a 500."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from litestar import get
from litestar.testing import TestClient

from libs.http import create_service_app

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
