"""The writes the call path owes the database, as values: kept in Redis (JSON) until
the record writer (core/writer.py) has stored them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import DateTime, Table
from sqlalchemy.types import TypeEngine

from core.models import Base


@dataclass(frozen=True)
class Insert:
    table: str
    values: dict[str, Any]
    skip_existing: bool = False  # ON CONFLICT DO NOTHING: a replay of a stored row


@dataclass(frozen=True)
class Update:
    table: str
    key: str  # the column that names the row
    ident: Any
    values: dict[str, Any]
    # The write's number among the row's (core/sequenced.py); None: applied as it comes.
    seq: int | None = None


Op = Insert | Update


def numbered(ops: Sequence[Op], seq: int) -> list[Op]:
    """`ops` with their updates of numbered tables (calls, interactions) given `seq`, the
    number the step in Redis that owes them gave (0: the step gave none)."""
    if not seq:
        return list(ops)
    # Built directly: dataclasses.replace costs several microseconds an op, on every event.
    return [Update(op.table, op.key, op.ident, op.values, seq)
            if isinstance(op, Update) and "seq" in table(op.table).c else op for op in ops]


def dumps(ops: Sequence[Op]) -> bytes:
    """Ops as JSON, to be kept in Redis until they are stored."""
    return orjson.dumps([_dump(op) for op in ops])


def _dump(op: Op) -> list[Any]:
    if isinstance(op, Insert):
        return ["i", op.table, op.values, op.skip_existing]
    item = ["u", op.table, op.key, op.ident, op.values]
    return item if op.seq is None else [*item, op.seq]


def loads(data: bytes | str) -> list[Op]:
    ops: list[Op] = []
    for item in orjson.loads(data):
        if item[0] == "i":
            ops.append(Insert(item[1], _revive(item[1], item[2]), item[3]))
        else:
            ops.append(Update(item[1], item[2], item[3], _revive(item[1], item[4]),
                              item[5] if len(item) > 5 else None))
    return ops


def _revive(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Datetimes came back from JSON as ISO strings."""
    columns = table(name).c
    return {k: dt.datetime.fromisoformat(v) if isinstance(v, str)
            and _is_datetime(columns[k].type) else v for k, v in values.items()}


def _is_datetime(kind: TypeEngine[Any]) -> bool:
    return isinstance(getattr(kind, "impl", kind), DateTime)


def table(name: str) -> Table:
    return Base.metadata.tables[name]
