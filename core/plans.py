"""The writer's statements executed on the driver directly, from a plan made once.

`Connection.execute` builds, for every row of an executemany, a dict of every bind
parameter (`construct_params`), fills in column defaults, runs the bind processors over it
and turns it into the driver's tuple: most of the record writer's CPU. Here a statement
is compiled once per dialect and row shape, and a plan made from its compiled form: its
text and, for each positional parameter, a function from a row to the value SQLAlchemy
would send (the row's value, a constant of the statement or a column default, through the
bind processor of the parameter's type). Rows become the driver's tuples directly and go
through `Connection.exec_driver_sql` in the same transaction: the same events, errors
(`IntegrityError`) and row count. tests/test_plans.py stores rows both ways on SQLite
and PostgreSQL and compares them.

What a plan does not cover (a dialect with named parameters or set input sizes, expanding
or literal parameters, RETURNING, insertmanyvalues, defaults run in SQL) goes through
`Connection.execute` as before.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import BindTyping
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

Row = dict[str, Any]
Slot = Callable[[Row], Any]


@dataclass(frozen=True)
class Plan:
    sql: str
    slots: tuple[Slot, ...]
    tuple_of: Callable[[list[Any]], Sequence[Any]]

    def parameters(self, rows: Sequence[Row]) -> list[Sequence[Any]]:
        slots, tuple_of = self.slots, self.tuple_of
        return [tuple_of([slot(row) for slot in slots]) for row in rows]


# Per dialect (an engine's: its JSON serializer is its own), statement, columns given and
# whether it is an executemany; None: not covered, executed by SQLAlchemy.
_plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[Any, ...], Plan | None]] = (
    weakref.WeakKeyDictionary())


def execute(conn: Connection, statement: Any, rows: Sequence[Row]) -> int:
    """`conn.execute(statement, rows)` (one row: executed once, several: an executemany);
    returns the rows changed. `statement` must be one object per shape (its plan is
    found by identity)."""
    if not rows:
        return 0
    plan = _plan(conn.dialect, statement, tuple(sorted(rows[0])), len(rows) > 1)
    if plan is None:
        return int(conn.execute(statement, rows[0] if len(rows) == 1 else list(rows)).rowcount)
    parameters = plan.parameters(rows)
    result = conn.exec_driver_sql(plan.sql, parameters[0] if len(rows) == 1 else parameters)
    return int(result.rowcount)


def _plan(dialect: Dialect, statement: Any, keys: tuple[str, ...], many: bool) -> Plan | None:
    plans = _plans.setdefault(dialect, {})
    key = (statement, keys, many)
    if key not in plans:
        plans[key] = _make(dialect, statement, keys, many)
    return plans[key]


def _make(dialect: Dialect, statement: Any, keys: tuple[str, ...], many: bool) -> Plan | None:
    if not dialect.positional or dialect.bind_typing is BindTyping.SETINPUTSIZES:
        return None
    compiled = statement.compile(dialect=dialect, column_keys=list(keys),
                                 for_executemany=many)
    if not isinstance(compiled, SQLCompiler) or not _covered(compiled):
        return None
    defaults = _defaults(compiled)
    if defaults is None:
        return None
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    slots: list[Slot] = []
    for name in compiled.positiontup or ():
        slot = defaults.get(name) or _source(binds[name], name, keys)
        if slot is None:
            return None  # a required value missing: SQLAlchemy says which
        processor = compiled._bind_processors.get(name)
        if processor is not None and not callable(processor):
            return None  # a tuple's processors, one per element
        slots.append(slot if processor is None else _processed(processor, slot))
    return Plan(compiled.string, tuple(slots), dialect.execute_sequence_format)


def _covered(compiled: SQLCompiler) -> bool:
    return not (compiled.literal_execute_params or compiled.post_compile_params
                or compiled.effective_returning or compiled._insertmanyvalues
                or compiled.schema_translate_map or compiled._collected_params
                or compiled.positiontup is None)


def _source(bind: BindParameter[Any], name: str, keys: tuple[str, ...]) -> Slot | None:
    """Where a parameter's value comes from, as in `SQLCompiler.construct_params`."""
    if bind.key in keys:
        return operator.itemgetter(bind.key)
    if name in keys:
        return operator.itemgetter(name)
    if bind.required:
        return None
    value = bind.effective_value if bind.callable else bind.value
    return lambda row: value


def _processed(processor: Callable[[Any], Any], slot: Slot) -> Slot:
    return lambda row: processor(slot(row))


class _Context:
    """What a column default called with an execution context may read of it: the row
    being stored (its values as given) and the column."""

    def __init__(self, row: Row, column: Any) -> None:
        self.current_parameters = row
        self.current_column = column


def _defaults(compiled: SQLCompiler) -> dict[str, Slot] | None:
    """The columns not given whose Python defaults (an insert's) or onupdates (an
    update's) SQLAlchemy fills in for each row, as `_process_execute_defaults` does;
    None when one runs in SQL or is a sentinel."""
    if compiled.insert_prefetch:
        columns = [(c, c._default_description_tuple) for c in compiled.insert_prefetch]
    else:
        columns = [(c, c._onupdate_description_tuple) for c in compiled.update_prefetch]
    slots: dict[str, Slot] = {}
    for column, (arg, is_scalar, is_callable, is_sentinel) in columns:
        if is_sentinel or not (is_scalar or is_callable):
            return None
        name = compiled._within_exec_param_key_getter(column)
        slots[name] = _default(arg, bool(is_scalar), column)
    return slots


def _default(arg: Any, is_scalar: bool, column: Any) -> Slot:
    if is_scalar:
        return lambda row: arg
    return lambda row: arg(_Context(row, column))
