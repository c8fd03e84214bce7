"""Many rows through one Core statement on SQLite, compiled once rather than once per row.

``Connection.execute(statement, rows)`` compiles nothing twice (SQLAlchemy caches the SQL), but it still
builds every row's parameters through the compiled statement's general machinery (``construct_params``
per row, then the type processors), and with ``RETURNING`` it renders the rows into multi-row
``VALUES`` itself: in inventory's batch transaction that was about a sixth of the service's CPU
(bench/README.md, "SQL statements compiled once"). :func:`execute_many` does the same work with the
SQL and the parameter order worked out once per statement and set of keys, and hands plain tuples to
the driver's ``executemany``. It does so on SQLite only: on PostgreSQL (asyncpg), where statements
carry casts and the driver's ``executemany`` cannot count rows, it is ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnDefault
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.schema import ScalarElementColumnDefault

__all__ = ["execute_many"]

_Getter = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    getters: tuple[_Getter, ...]
    """One per positional parameter: reads the row's value (processed as SQLAlchemy would), or the
    statement's own constant."""


_plans: dict[tuple[int, str, tuple[str, ...]], tuple[UpdateBase, _Plan | None]] = {}
_MAX_PLANS = 256


def _getter(key: str, process: Callable[[Any], Any] | None) -> _Getter:
    if process is None:
        return lambda row: row[key]
    return lambda row: process(row[key])


def _constant(value: Any) -> _Getter:
    return lambda _row: value


def _plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    """The SQL and parameter getters of ``statement`` for rows with ``keys``; None when the statement
    needs what only SQLAlchemy's own execution does (an expanding ``IN``, a default computed by a
    function, a dialect with named parameters)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    names = compiled.positiontup
    if names is None:
        return None
    wanted = set(keys)
    # Columns the rows leave out whose default SQLAlchemy computes before the statement runs: a plain
    # value is a constant like the statement's own; anything else (a function) is SQLAlchemy's to run.
    defaults: dict[str, Any] = {}
    for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
        default = column.onupdate if column in compiled.update_prefetch else column.default
        if not isinstance(default, ScalarElementColumnDefault | ColumnDefault) or not default.is_scalar:
            return None
        defaults[column.key] = default.arg
    getters: list[_Getter] = []
    for name in names:
        bind = compiled.binds.get(name)
        if bind is None or bind.expanding or bind.callable is not None:
            return None
        process = bind.type._cached_bind_processor(dialect)
        if bind.key in wanted:
            getters.append(_getter(bind.key, process))
            continue
        value = defaults.get(bind.key, bind.effective_value)
        getters.append(_constant(process(value) if process is not None else value))
    return _Plan(compiled.string, tuple(getters))


def execute_many(conn: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Run ``statement`` (an ``INSERT``, ``UPDATE`` or ``DELETE`` without ``RETURNING``) once for each
    mapping in ``rows``, in ``conn``'s transaction; every mapping has the keys of the first.

    Returns the rows the database changed in all (SQLite's count, which leaves out rows an ``ON
    CONFLICT DO NOTHING`` skipped), or None where the count is not known (PostgreSQL, where this is
    ``conn.execute(statement, rows)``). The statement object is the cache key: pass one built once (a
    module constant, or one cached per table), not one built per call. Raises what the driver raises.
    """
    if not rows:
        return 0
    dialect = conn.dialect
    if dialect.name != "sqlite":
        conn.execute(statement, list(rows))
        return None
    keys = tuple(rows[0])
    cache_key = (id(statement), dialect.name, keys)
    cached = _plans.get(cache_key)
    if cached is None or cached[0] is not statement:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        cached = (statement, _plan(statement, dialect, keys))
        _plans[cache_key] = cached
    plan = cached[1]
    if plan is None:
        return conn.execute(statement, list(rows)).rowcount
    getters = plan.getters
    result = conn.exec_driver_sql(plan.sql, [tuple([get(row) for get in getters]) for row in rows])
    return result.rowcount
