"""Numbered writes: a row's updates applied in the order its live state changed, whatever
the order they reach the database in.

Each step of a call in Redis numbers the writes it owes (`seq`, routing/transitions.py);
two nodes storing two steps of one call may commit them in either order. An update
carrying a number (`Update.seq`) is applied by `apply` only as far as it is newer than
the row: on a table whose rows move together (`calls`) an older update changes nothing;
on one whose columns are filled in over the call (`interactions`) an older update fills
only what is still empty. An update of a row not stored yet (a later event stored before
the offer) is kept: the row is created as a placeholder (`seq` -1) and the update parked
in `parked_updates`; the placeholder's unique key makes the insert wait for it or fail,
and the insert then takes the placeholder's place (`claim`) and applies what was parked.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Enum,
    Float,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from core import plans
from core.models import Base, ParkedUpdate, UTCDateTime
from core.ops import Update, dumps, loads

PLACEHOLDER = -1
# Tables whose columns are filled in over the row's life: an older update still fills an
# empty column. Elsewhere the row's columns move together and an older update is dropped.
FILLED_IN = frozenset({"interactions"})

_PARKED: Table = ParkedUpdate.__table__  # type: ignore[assignment]


def numbered(name: str) -> bool:
    """Whether the table's rows carry a write number."""
    return "seq" in _table(name).c


def apply(conn: Connection, updates: Iterable[Update]) -> list[Update]:
    """Apply numbered updates, each row's in the order of their numbers; returns those
    parked because their row is not stored yet."""
    rows: dict[tuple[str, str, Any], list[Update]] = {}
    for op in sorted(updates, key=lambda op: op.seq or 0):
        rows.setdefault((op.table, op.key, op.ident), []).append(op)
    parked: list[Update] = []
    # Round n applies each row's n-th update: one statement per shape and round.
    for batch in itertools.zip_longest(*rows.values()):
        groups: dict[tuple[str, str], list[Update]] = {}
        for op in batch:
            if op is not None:
                groups.setdefault((op.table, op.key), []).append(op)
        for (name, key), group in groups.items():
            parked += _apply_group(conn, name, key, group)
    return parked


def _apply_group(conn: Connection, name: str, key: str, group: list[Update]) -> list[Update]:
    # The guarded updates first: when they changed as many rows as they were given, every
    # row was there (the usual case) and nothing is left to do. Otherwise the rows'
    # numbers say which are missing or placeholders; the others are applied again, which
    # leaves a row as it was after the first time.
    if _guarded(conn, name, key, group) == len(group):
        return []
    table = _table(name)
    found: dict[Any, int] = {row[0]: row[1] for row in conn.execute(
        _numbers(conn.dialect.name, name, key), {"idents": [op.ident for op in group]})}
    ready: list[Update] = []
    parked: list[Update] = []
    for op in group:
        seq = found.get(op.ident)
        if seq == PLACEHOLDER or (seq is None and _placeholder(conn, table, op)):
            parked.append(op)
        else:
            ready.append(op)
    _park(conn, parked)
    _guarded(conn, name, key, ready)
    return parked


def claim(conn: Connection, inserts: Iterable[tuple[str, dict[str, Any]]]) -> list[Update]:
    """Before inserting rows that may have placeholders: remove the placeholders and
    return the updates parked for them (oldest first), to apply after the insert."""
    ops: list[Update] = []
    for name, values in inserts:
        table = _table(name)
        idents = [str(values[c.name]) for c in table.columns
                  if (c.primary_key or c.unique) and c.name in values]
        rows = conn.execute(delete(_PARKED).where(
            _PARKED.c.table_name == name, _PARKED.c.ident.in_(idents))
            .returning(_PARKED.c.seq, _PARKED.c.op)).all()
        for _, data in sorted(rows, key=lambda row: int(row[0])):
            ops.extend(op for op in loads(data) if isinstance(op, Update))
    for op in ops:
        table = _table(op.table)
        conn.execute(delete(table).where(table.c[op.key] == op.ident,
                                         table.c.seq == PLACEHOLDER))
    return ops


def _placeholder(conn: Connection, table: Table, op: Update) -> bool:
    """Create the row as a placeholder holding the update; False when another writer
    stored it first (the insert waits for that writer's transaction)."""
    values = {**op.values, op.key: op.ident, "seq": PLACEHOLDER}
    statement = _insert_or_skip(conn.dialect.name, table).values(values)
    return bool(conn.execute(statement).rowcount == 1)


def _park(conn: Connection, ops: list[Update]) -> None:
    if ops:
        conn.execute(insert(_PARKED), [
            {"table_name": op.table, "ident": str(op.ident), "seq": op.seq,
             "op": dumps([op]).decode()} for op in ops])


def _guarded(conn: Connection, name: str, key: str, ops: list[Update]) -> int:
    """Apply `ops` as far as they are newer; the rows changed, or -1 when the driver
    does not count them (an executemany on asyncpg)."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for op in ops:
        shapes.setdefault(tuple(sorted(op.values)), []).append(
            {"_ident": op.ident, "_seq": op.seq,
             **{f"_v_{k}": v for k, v in op.values.items()}})
    changed = 0
    for columns, rows in shapes.items():
        if len(rows) > 1 and conn.dialect.name == "postgresql" and _flat(name, columns):
            count = plans.execute(conn, _unnest_statement(name, key, columns),
                                  [_arrays(conn, name, rows)])
        else:
            count = plans.execute(conn, _statement(name, key, columns), rows)
            if len(rows) > 1 and not conn.dialect.supports_sane_multi_rowcount:
                count = -1
        changed = -1 if -1 in (count, changed) else changed + count
    return changed


@functools.cache
def _numbers(dialect: str, name: str, key: str) -> Any:
    """The rows' numbers, by key. On PostgreSQL the keys are one array parameter: one SQL
    text (one prepared statement per pooled connection) whatever their number, where an
    `IN` list is a new text per length."""
    table = _table(name)
    column = table.c[key]
    if dialect == "postgresql":
        match = column == any_(bindparam("idents", type_=postgresql.ARRAY(column.type)))
    else:
        match = column.in_(bindparam("idents", expanding=True))
    return select(column, table.c.seq).where(match)


@functools.cache
def _statement(name: str, key: str, columns: tuple[str, ...]) -> Any:
    table = _table(name)
    # Not older: the writes of one step share its number (and a replay applies again).
    newer = table.c.seq <= bindparam("_seq", type_=table.c.seq.type)
    values: dict[str, ColumnElement[Any]] = {
        c: case((newer, _value(table.c[c])), else_=_stale(name, table.c[c]))
        for c in columns}
    values["seq"] = case((newer, bindparam("_seq", type_=table.c.seq.type)),
                         else_=table.c.seq)
    # A placeholder is left as it is: what comes before the row is parked.
    statement = update(table).where(table.c[key] == bindparam("_ident"),
                                    table.c.seq != PLACEHOLDER).values(values)
    return statement if name in FILLED_IN else statement.where(newer)


# PostgreSQL: the rows of one shape as one statement, joined to one array per column
# (an executemany runs the statement once per row). Columns of these types travel as
# arrays as they are; JSON values as the text the column's type makes of them.
_FLAT_TYPES = (String, Integer, Boolean, Float, UTCDateTime, JSON)


@functools.cache
def _flat(name: str, columns: tuple[str, ...]) -> bool:
    table = _table(name)
    return all(isinstance(table.c[c].type, _FLAT_TYPES) and not isinstance(table.c[c].type, Enum)
               for c in columns)


@functools.cache
def _unnest_statement(name: str, key: str, columns: tuple[str, ...]) -> Any:
    """As `_statement`, for many rows: `UPDATE ... FROM unnest(...)`."""
    table = _table(name)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    params = {"_ident": _array_item(table.c[key]), "_seq": _array_item(table.c.seq),
              **{f"_v_{c}": _array_item(table.c[c]) for c in columns}}
    arrays = ", ".join(f"CAST(:{p} AS {postgresql.ARRAY(kind).compile(dialect=dialect)})"
                       for p, kind in params.items())
    newer = f"{name}.seq <= v._seq"

    def value(c: str) -> str:
        return f"CAST(v._v_{c} AS JSON)" if isinstance(table.c[c].type, JSON) else f"v._v_{c}"
    sets = [f"{c} = CASE WHEN {newer} THEN {value(c)} ELSE "
            + (f"COALESCE({name}.{c}, {value(c)})" if name in FILLED_IN else f"{name}.{c}")
            + " END" for c in columns]
    sets.append(f"seq = CASE WHEN {newer} THEN v._seq ELSE {name}.seq END")
    where = f"{name}.{key} = v._ident AND {name}.seq != {PLACEHOLDER}"
    if name not in FILLED_IN:
        where += f" AND {newer}"
    statement = text(f"UPDATE {name} SET {', '.join(sets)} FROM unnest({arrays}) "
                     f"AS v({', '.join(params)}) WHERE {where}")
    return statement.bindparams(*(bindparam(p, type_=postgresql.ARRAY(kind))
                                  for p, kind in params.items()))


def _array_item(column: Column[Any]) -> Any:
    """A column's type as an array's item: JSON as its text (a JSON list in an array
    would be taken for a dimension of it)."""
    return Text() if isinstance(column.type, JSON) else column.type


def _arrays(conn: Connection, name: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per parameter; JSON values as the text their column's type makes."""
    table = _table(name)
    arrays = {}
    for p in rows[0]:
        values = [row[p] for row in rows]
        column = table.c.get(p.removeprefix("_v_"))
        if p.startswith("_v_") and column is not None and isinstance(column.type, JSON):
            process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            if process is not None:
                values = [process(v) for v in values]
        arrays[p] = values
    return arrays


def _value(column: Column[Any]) -> ColumnElement[Any]:
    return bindparam(f"_v_{column.name}", type_=column.type)


def _stale(name: str, column: Column[Any]) -> ColumnElement[Any]:
    if name in FILLED_IN:
        return func.coalesce(column, _value(column))
    return column


@functools.cache
def _insert_or_skip(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _table(name: str) -> Table:
    return Base.metadata.tables[name]
