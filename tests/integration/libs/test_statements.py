"""libs.statements.execute_many: the rows SQLAlchemy's own execution would write, on a real SQLite file
and on the machine's PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import UpdateBase

from libs.statements import execute_many, fetch_all

_metadata = sa.MetaData()
_items = sa.Table(
    "items",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=True),  # a type SQLite needs a bind processor for
    sa.Column("flag", sa.Boolean, nullable=False, default=False),
    sa.Column("body", sa.LargeBinary, nullable=True),
)
_INSERT = sa.insert(_items)
_KEEP_FIRST = sqlite.insert(_items).on_conflict_do_nothing(index_elements=["id"])
_upsert = sqlite.insert(_items)
_UPSERT = _upsert.on_conflict_do_update(index_elements=["id"], set_={"qty": _upsert.excluded.qty})
# A constant of the statement's own (flag = true) beside the rows' parameters.
_RENAME = (
    sa.update(_items).where(_items.c.id == sa.bindparam("b_id")).values(name=sa.bindparam("b_name"), flag=sa.true())
)
_BUMP_NAMED = sa.update(_items).where(_items.c.name == "b").values(qty=_items.c.qty + sa.bindparam("b_by"))
_DELETE_SOME = sa.delete(_items).where(_items.c.id.in_(sa.bindparam("ids", expanding=True)))

_ROWS = [
    {"id": 1, "name": "a", "qty": 3, "at": dt.datetime(2026, 12, 7, 12, 30), "flag": True, "body": b"\x00\x01"},
    {"id": 2, "name": "b", "qty": 5, "at": None, "flag": False, "body": None},
    {"id": 3, "name": "cé", "qty": -1, "at": dt.datetime(2000, 1, 1), "flag": False, "body": b""},
]


def _contents(conn: Connection) -> list[Any]:
    return [tuple(row) for row in conn.execute(sa.select(_items).order_by(_items.c.id))]


def _both_ways(path: Path, steps: list[tuple[UpdateBase, list[dict[str, Any]]]]) -> tuple[Any, Any]:
    """The table after ``steps`` run through execute_many in one database and Connection.execute in another."""
    results = []
    for name, run in (("fast", execute_many), ("sqlalchemy", lambda c, s, r: c.execute(s, r).rowcount)):
        engine = sa.create_engine(f"sqlite:///{path / name}.db")
        _metadata.create_all(engine)
        with engine.begin() as conn:
            counts = [run(conn, statement, rows) for statement, rows in steps]
        with engine.connect() as conn:
            results.append((counts, _contents(conn)))
        engine.dispose()
    return results[0], results[1]


def test_inserts_updates_and_upserts_write_what_sqlalchemy_writes(tmp_path: Path) -> None:
    fast, reference = _both_ways(
        tmp_path,
        [
            (_INSERT, _ROWS),
            (_KEEP_FIRST, [{**_ROWS[0], "qty": 99}, {**_ROWS[1], "id": 4}]),
            (_UPSERT, [{**_ROWS[2], "qty": 7}, {**_ROWS[1], "id": 5, "qty": 8}]),
            (_RENAME, [{"b_id": 2, "b_name": "renamed"}, {"b_id": 42, "b_name": "nobody"}]),
            (_DELETE_SOME, [{"ids": [4, 5]}]),
        ],
    )
    assert fast[1] == reference[1]
    # Counted as SQLite counts them: three inserted; of two, one skipped; two upserted; one of two
    # updated; two deleted.
    assert fast[0] == [3, 1, 2, 1, 2] == reference[0]
    ids = {row[0]: row for row in fast[1]}
    assert ids[1][2] == 3  # the first row kept its quantity against the conflicting second insert
    assert ids[2][1:5:3] == ("renamed", True)  # the statement's own constant went in beside the row's value
    assert ids[3][2] == 7 and ids[3][3] == dt.datetime(2000, 1, 1)


def test_a_statement_constant_and_a_row_parameter_together(tmp_path: Path) -> None:
    fast, reference = _both_ways(tmp_path, [(_INSERT, _ROWS), (_BUMP_NAMED, [{"b_by": 10}, {"b_by": 1}])])
    assert fast == reference
    assert [row[2] for row in fast[1]] == [3, 16, -1]


def test_no_rows_is_nothing_to_do(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    _metadata.create_all(engine)
    with engine.begin() as conn:
        assert execute_many(conn, _INSERT, []) == 0
        assert _contents(conn) == []
    engine.dispose()


async def test_on_postgresql_it_is_sqlalchemys_execution_and_the_count_is_unknown(postgres_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres_url)
    upsert = postgresql.insert(_items)
    statement = upsert.on_conflict_do_update(index_elements=["id"], set_={"qty": upsert.excluded.qty})
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)
            assert await conn.run_sync(execute_many, statement, _ROWS) is None
            assert await conn.run_sync(execute_many, statement, [{**_ROWS[0], "qty": 11}]) is None
            rows = await conn.run_sync(_contents)
    finally:
        await engine.dispose()
    assert [(row[0], row[2]) for row in rows] == [(1, 11), (2, 5), (3, -1)]
    assert rows[0][3] == dt.datetime(2026, 12, 7, 12, 30) and rows[0][5] == b"\x00\x01"


@pytest.mark.parametrize("statement", [_INSERT, _KEEP_FIRST])
def test_a_plan_is_kept_per_statement_and_keys(tmp_path: Path, statement: UpdateBase) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    _metadata.create_all(engine)
    with engine.begin() as conn:
        # The same statement with rows of other keys (no `at`, `flag` or `body`): columns left to defaults.
        assert execute_many(conn, statement, [{"id": 1, "name": "x", "qty": 1}]) == 1
        assert execute_many(conn, statement, [{**_ROWS[1], "id": 2}]) == 1
        rows = _contents(conn)
    engine.dispose()
    assert rows == [(1, "x", 1, None, False, None), (2, "b", 5, None, False, None)]


# --- fetch_all ---------------------------------------------------------------------------------------
_BY_IDS = sa.select(_items).where(_items.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(_items.c.id)
# A list, a scalar parameter and the statement's own constants (a literal bind and a boolean) together.
_SOME_NAMED = (
    sa.select(_items.c.name, _items.c.flag, _items.c.at)
    .where(
        _items.c.name.in_(sa.bindparam("names", expanding=True)),
        _items.c.qty >= sa.bindparam("least"),
        _items.c.qty < 100,
        _items.c.flag.is_(False),
    )
    .order_by(_items.c.name)
)
# Two columns with one key: no named tuple can hold them, so SQLAlchemy's own rows come back.
_SAME_KEY_TWICE = sa.select(_items.c.id, _items.c.id.label("id")).where(
    _items.c.id.in_(sa.bindparam("ids", expanding=True))
)


def _filled(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    _metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(_INSERT, _ROWS)
    return engine


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        (_BY_IDS, {"ids": [1, 2, 3]}),
        (_BY_IDS, {"ids": [3]}),
        (_BY_IDS, {"ids": [2, 7, 1, 9]}),
        (_BY_IDS, {"ids": []}),
        (_SOME_NAMED, {"names": ["a", "b", "cé", "zz"], "least": -1}),
        (_SOME_NAMED, {"names": ["b"], "least": 6}),
    ],
)
def test_fetch_all_reads_what_sqlalchemy_reads(tmp_path: Path, statement: Any, parameters: dict[str, Any]) -> None:
    engine = _filled(tmp_path / "read.db")
    with engine.connect() as conn:
        reference = conn.execute(statement, parameters).all()
        fast = fetch_all(conn, statement, parameters)
        again = fetch_all(conn, statement, parameters)  # the cached query
    engine.dispose()
    assert [tuple(row) for row in fast] == [tuple(row) for row in reference] == [tuple(row) for row in again]
    keys = list(statement.selected_columns.keys())
    for row, expected in zip(fast, reference, strict=True):
        assert [getattr(row, key) for key in keys] == [getattr(expected, key) for key in keys]


def test_fetch_all_processes_values_as_sqlalchemy_does(tmp_path: Path) -> None:
    engine = _filled(tmp_path / "types.db")
    with engine.connect() as conn:
        first, second, third = fetch_all(conn, _BY_IDS, {"ids": [1, 2, 3]})
    engine.dispose()
    # SQLite stores these as an integer and text: the columns' types read them back.
    assert first.flag is True and second.flag is False
    assert first.at == dt.datetime(2026, 12, 7, 12, 30) and second.at is None
    assert first.body == b"\x00\x01" and third.name == "cé"
    ident, name, *_ = first  # unpacked like a Row
    assert (ident, name) == (1, "a")


def test_fetch_all_keeps_a_query_per_length_of_each_list(tmp_path: Path) -> None:
    engine = _filled(tmp_path / "lengths.db")
    with engine.connect() as conn:
        ids = [[row.id for row in fetch_all(conn, _BY_IDS, {"ids": wanted})] for wanted in ([1], [1, 2], [3], [2, 3])]
    engine.dispose()
    assert ids == [[1], [1, 2], [3], [2, 3]]


def test_fetch_all_leaves_what_makes_no_named_tuple_to_sqlalchemy(tmp_path: Path) -> None:
    engine = _filled(tmp_path / "fallback.db")
    with engine.connect() as conn:
        rows = fetch_all(conn, _SAME_KEY_TWICE, {"ids": [2]})
    engine.dispose()
    assert [tuple(row) for row in rows] == [(2, 2)]


def test_fetch_all_raises_sqlalchemys_errors(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'none.db'}")  # no table
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="no such table"):
        fetch_all(conn, _BY_IDS, {"ids": [1]})
    engine.dispose()


async def test_fetch_all_on_postgresql_is_sqlalchemys_execution(postgres_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_metadata.drop_all)
            await conn.run_sync(_metadata.create_all)
            await conn.execute(_INSERT, _ROWS)
            rows = await conn.run_sync(fetch_all, _SOME_NAMED, {"names": ["a", "b", "cé"], "least": -1})
            await conn.run_sync(_metadata.drop_all)
    finally:
        await engine.dispose()
    assert [(row.name, row.flag, row.at) for row in rows] == [
        ("b", False, None),
        ("cé", False, dt.datetime(2000, 1, 1)),
    ]
