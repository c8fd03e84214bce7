"""Core statements on SQLite with their SQL and parameter handling worked out once, not per execution.

``Connection.execute(statement, rows)`` compiles nothing twice (SQLAlchemy caches the SQL), but it still
builds every row's parameters through the compiled statement's general machinery (``construct_params``
per row, then the type processors), and with ``RETURNING`` it renders the rows into multi-row
``VALUES`` itself: in inventory's batch transaction that was about a sixth of the service's CPU
(bench/README.md, "SQL statements compiled once"). :func:`execute_many` does the same work with the
SQL and the parameter order worked out once per statement and set of keys, and hands plain tuples to
the driver's ``executemany``. It does so on SQLite only: on PostgreSQL (asyncpg), where statements
carry casts and the driver's ``executemany`` cannot count rows, it is ``Connection.execute``.

:func:`fetch_all` is the read side: a ``SELECT`` built once (its lists as expanding bind parameters),
run with its SQL expanded once per length of each list, its rows returned as named tuples. Reading a
``Row``'s columns by attribute costs several times a named tuple's, and inventory reads every loaded
row's columns (measured: 100 reservations and 100 SKUs read in 0.97 ms instead of 2.45 ms).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnDefault
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.schema import ScalarElementColumnDefault

__all__ = ["execute_many", "fetch_all"]

_Getter = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    getters: tuple[_Getter, ...]
    """One per positional parameter: reads the row's value (processed as SQLAlchemy would), or the
    statement's own constant."""


_Statement = TypeVar("_Statement", bound=Executable)
_Shape = TypeVar("_Shape", bound=Hashable)
_Built = TypeVar("_Built")


class _Cache(Generic[_Statement, _Shape, _Built]):
    """What ``build`` made of a statement for a dialect and a shape of parameters, kept per statement
    object (by identity: statements are built once) and emptied whole when ``limit`` is reached."""

    def __init__(self, build: Callable[[_Statement, Dialect, _Shape], _Built | None], limit: int) -> None:
        self._build = build
        self._limit = limit
        self._entries: dict[tuple[int, str, _Shape], tuple[_Statement, _Built | None]] = {}

    def get(self, statement: _Statement, dialect: Dialect, shape: _Shape) -> _Built | None:
        key = (id(statement), dialect.name, shape)
        cached = self._entries.get(key)
        if cached is None or cached[0] is not statement:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            cached = self._entries[key] = (statement, self._build(statement, dialect, shape))
        return cached[1]


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


_plans: _Cache[UpdateBase, tuple[str, ...], _Plan] = _Cache(_plan, limit=256)


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
    plan = _plans.get(statement, dialect, tuple(rows[0]))
    if plan is None:
        return conn.execute(statement, list(rows)).rowcount
    getters = plan.getters
    result = conn.exec_driver_sql(plan.sql, [tuple([get(row) for get in getters]) for row in rows])
    return result.rowcount


@dataclass(frozen=True, slots=True)
class _Query:
    sql: str
    getters: tuple[_Getter, ...]
    """One per positional parameter, as :class:`_Plan`'s; a list's items each have their own."""
    row: Callable[[Sequence[Any]], Any]
    """Builds a named tuple from a driver's row, through the columns' result processors if any."""


def _item(name: str, index: int, process: Callable[[Any], Any] | None) -> _Getter:
    if process is None:
        return lambda parameters: parameters[name][index]
    return lambda parameters: process(parameters[name][index])


def _row_builder(statement: Select[Any], dialect: Dialect) -> Callable[[Sequence[Any]], Any] | None:
    columns = list(statement.selected_columns)
    try:
        row_type = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
    except (TypeError, ValueError):  # a key that is no identifier, or the same key twice
        return None
    processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
    make: Callable[[Sequence[Any]], Any] = row_type._make
    if not any(processors):
        return make
    steps = [(i, process) for i, process in enumerate(processors) if process is not None]

    def processed(values: Sequence[Any]) -> Any:
        out = list(values)
        for i, process in steps:
            out[i] = process(out[i])
        return make(out)

    return processed


def _query(statement: Select[Any], dialect: Dialect, lengths: tuple[tuple[str, int], ...]) -> _Query | None:
    """The SQL with each expanding parameter spelt out for its length, and the getters of its positional
    parameters; None when only SQLAlchemy's own execution will do (a named-parameter dialect, a bind
    whose value is computed, columns that make no named tuple)."""
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        return None
    row = _row_builder(statement, dialect)
    if row is None:
        return None
    given = {name for name, _ in lengths}
    for name in compiled.positiontup:
        bind = compiled.binds.get(name)
        if bind is None or bind.callable is not None or (bind.expanding and name not in given):
            return None
    state = compiled.construct_expanded_state({name: None if n < 0 else [None] * n for name, n in lengths})
    items = {item: (name, i) for name, expanded in state.parameter_expansion.items() for i, item in enumerate(expanded)}
    getters: list[_Getter] = []
    for name in state.positiontup or ():
        process = state.processors.get(name)
        if name in items:
            getters.append(_item(*items[name], process))
        elif name in given:
            getters.append(_getter(name, process))
        else:
            value = state.parameters[name]
            getters.append(_constant(process(value) if process is not None else value))
    return _Query(state.statement, tuple(getters), row)


# A query is kept per length of each of its lists: a few statements, each read with lists of one to a
# few hundred keys.
_queries: _Cache[Select[Any], tuple[tuple[str, int], ...], _Query] = _Cache(_query, limit=4096)


def fetch_all(conn: Connection, statement: Select[Any], parameters: Mapping[str, Any] | None = None) -> list[Any]:
    """The rows of ``statement`` with ``parameters`` (a value for each bind parameter the statement
    leaves open; a list for an expanding one, ``sa.bindparam(name, expanding=True)``), in ``conn``'s
    transaction.

    Each row reads like SQLAlchemy's ``Row``: by position, unpacked, or by column key as an attribute
    (on SQLite a named tuple, on PostgreSQL the ``Row`` itself), its values through the columns'
    result processors. The statement object is the cache key, as for :func:`execute_many`: build it
    once. Raises what ``Connection.execute`` raises (SQLAlchemy's wrapped driver errors).
    """
    parameters = parameters or {}
    dialect = conn.dialect
    if dialect.name != "sqlite":
        return list(conn.execute(statement, dict(parameters)).all())
    # Each parameter's name, and its length for a list (-1 for a single value).
    lengths = tuple(
        sorted((name, len(value) if isinstance(value, list | tuple) else -1) for name, value in parameters.items())
    )
    query = _queries.get(statement, dialect, lengths)
    if query is None:
        return list(conn.execute(statement, dict(parameters)).all())
    result = conn.exec_driver_sql(query.sql, tuple([get(parameters) for get in query.getters]))
    try:
        return list(map(query.row, result.cursor.fetchall()))
    finally:
        result.close()
