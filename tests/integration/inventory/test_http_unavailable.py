"""A store that cannot write answers 503 `{error, detail}` (documented), never a 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from .conftest import AUTH


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/reservations", {"reservation_id": "r1", "lines": [{"sku": "A", "qty": 1}]}),
        ("DELETE", "/reservations/r1", None),
    ],
    ids=["reserve", "release"],
)
async def test_a_write_while_the_store_cannot_write_is_answered_503(
    inventory: AsyncTestClient, data_dir: Path, method: str, path: str, body: object
) -> None:
    with sqlite3.connect(data_dir / "inventory.db") as db:
        db.execute("DROP TABLE reservations")
    response = await inventory.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert response.json()["detail"]
