"""Group commit: the writes of events served at the same time share one transaction.

Every accepted telephony event is stored before it is acknowledged. One transaction
per event would cost a BEGIN/COMMIT and a statement round trip per row; here the
events in flight are written together, rows of the same shape in one executemany,
and each event's caller is woken when the transaction holding its rows commits.

A batch that fails is retried one event at a time, so one bad event (another node
stored the same call first) fails alone and the others still commit.

Writes that nobody waits on to go on (`write_later`: a screen pop's audit row) start no
batch of their own: they go with the next event's, or after `LATER_S` when none comes.
Each batch is a transaction, a thread hop on SQLite and the hooks' statements; a call's
screen pop otherwise costs one more of them.

Hooks (`RecordWriter.hooks`) run in each batch's transaction after its ops, with the
ops: what must change with the records and commit with them (the report rollups,
reports/rollup.py) is kept there, without the kernel knowing the feature.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Enum,
    Float,
    Integer,
    String,
    bindparam,
    insert,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core import plans, sequenced
from core.models import UTCDateTime
from core.ops import Insert, Op, Update, dumps, loads, numbered
from core.ops import table as _table
from core.supervise import Supervised, Supervisor

__all__ = ["Hook", "Insert", "Op", "RecordWriter", "Update", "dumps", "loads", "numbered"]

log = logging.getLogger(__name__)


# The longest a `write_later` waits for a batch to go with.
LATER_S = 0.5

# Runs in the batch's transaction (a synchronous connection) after its ops.
Hook = Callable[[Connection, list[Op]], None]
Execute = Callable[[Connection, list[Op], Sequence[Hook]], None]


@dataclass
class _Pending:
    ops: list[Op]
    done: asyncio.Future[None]


@dataclass
class RecordWriter:
    """`engine` writes; with `sync_engine` (SQLite) each batch is written on the
    synchronous driver in a worker thread instead, one thread hop per batch."""

    engine: AsyncEngine
    sync_engine: Engine | None = None
    max_batch: int = 256
    hooks: list[Hook] = field(default_factory=list)
    _queue: list[_Pending] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _due: bool = False  # something queued must go now (not only later writes)
    _later: asyncio.TimerHandle | None = None
    _supervisor: Supervisor | None = None
    _entry: Supervised | None = None

    async def write(self, ops: Iterable[Op]) -> None:
        """Store `ops` in one transaction with whatever else is waiting; raises what the
        database raised when they could not be stored."""
        await self._queued(list(ops), now=True)

    async def write_later(self, ops: Iterable[Op]) -> None:
        """As `write`, for writes that can wait: stored with the next batch that goes,
        or after `LATER_S`."""
        await self._queued(list(ops), now=False)

    async def _queued(self, ops: list[Op], now: bool) -> None:
        if not ops:
            return
        if self._entry is None:  # not started (a script, a test): write directly
            await self._commit(ops)
            return
        pending = _Pending(ops, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if now:
            self._go()
        elif self._later is None:
            self._later = asyncio.get_running_loop().call_later(LATER_S, self._go)
        await pending.done

    def _go(self) -> None:
        self._due = True
        self._wake.set()

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Run the writer's loop under `supervisor` (the node's: a fault is logged with its
        traceback, the loop restarted and /healthz says so meanwhile); its own if none."""
        self._supervisor = supervisor or Supervisor()
        self._entry = self._supervisor.start("record-writer", self._run)

    async def stop(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None and self._supervisor is not None:
            await self._supervisor.stop(entry)
        if self._later is not None:
            self._later.cancel()
            self._later = None
        for pending in self._queue:  # what arrived while stopping is written directly
            await self._write_alone(pending)
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            while self._queue and self._due:
                batch = self._take()
                try:
                    await self._write_batch(batch)
                except Exception as e:
                    # A fault of ours, not the database's (that one settles its batch):
                    # the batch's callers get it rather than waiting for ever, and the
                    # supervisor logs it and starts the loop again.
                    for pending in batch:
                        _settle(pending, e)
                    raise
            await self._wake.wait()
            self._wake.clear()

    def _take(self) -> list[_Pending]:
        batch = self._queue[:self.max_batch]
        del self._queue[:self.max_batch]
        if not self._queue:  # the later writes went too
            self._due = False
            if self._later is not None:
                self._later.cancel()
                self._later = None
        return batch

    async def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._commit([op for pending in batch for op in pending.ops])
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0], e)
                return
            log.debug("a batch of %d events failed (%s); storing them one by one",
                      len(batch), e)
            for pending in batch:
                await self._write_alone(pending)
            return
        for pending in batch:
            _settle(pending, None)

    async def _write_alone(self, pending: _Pending) -> None:
        try:
            await self._commit(pending.ops)
        except Exception as e:
            _settle(pending, e)
        else:
            _settle(pending, None)

    async def _commit(self, ops: list[Op]) -> None:
        try:
            await self._in_transaction(_execute, ops)
        except IntegrityError:
            if not any(isinstance(op, Insert) and sequenced.numbered(op.table) for op in ops):
                raise
            # The row may be a placeholder for updates stored before it (core/sequenced.py)
            await self._in_transaction(_execute_claiming, ops)

    async def _in_transaction(self, execute: Execute, ops: list[Op]) -> None:
        hooks = tuple(self.hooks)
        if self.sync_engine is not None:
            await asyncio.to_thread(self._run_sync, self.sync_engine, execute, ops, hooks)
            return
        async with self.engine.begin() as conn:
            await conn.run_sync(execute, ops, hooks)

    @staticmethod
    def _run_sync(engine: Engine, execute: Execute, ops: list[Op],
                  hooks: tuple[Hook, ...]) -> None:
        with engine.begin() as conn:
            execute(conn, ops, hooks)


def _settle(pending: _Pending, error: Exception | None) -> None:
    if pending.done.done():
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)


def _execute(conn: Connection, ops: list[Op], hooks: Sequence[Hook] = ()) -> None:
    """Inserts first (in order of first appearance per shape), then updates, then hooks,
    which see the ops applied (not those parked for a row not stored yet)."""
    applied = _apply(conn, ops)
    for hook in hooks:
        hook(conn, applied)


def _execute_claiming(conn: Connection, ops: list[Op], hooks: Sequence[Hook] = ()) -> None:
    """As `_execute`, for inserts whose rows are placeholders: they take their place, and
    the updates parked for them follow."""
    parked = sequenced.claim(conn, [(op.table, op.values) for op in ops
                                    if isinstance(op, Insert) and sequenced.numbered(op.table)])
    _execute(conn, [*ops, *parked], hooks)


def _apply(conn: Connection, ops: list[Op]) -> list[Op]:
    """Updates of one row are merged, later values winning, which leaves the row as
    applying them in order would; rows with the same columns share one executemany.
    Numbered updates go in the order of their numbers (core/sequenced.py)."""
    inserts: dict[tuple[str, tuple[str, ...], bool], list[dict[str, Any]]] = {}
    updates: dict[tuple[str, str, Any], dict[str, Any]] = {}
    numbered_updates: list[Update] = []
    for op in ops:
        if isinstance(op, Insert):
            shape = (op.table, tuple(sorted(op.values)), op.skip_existing)
            inserts.setdefault(shape, []).append(op.values)
        elif op.seq is not None:
            numbered_updates.append(op)
        else:
            updates.setdefault((op.table, op.key, op.ident), {}).update(op.values)
    for (name, columns, skip_existing), rows in inserts.items():
        if len(rows) > 1 and conn.dialect.name == "postgresql" and _flat(name, columns):
            plans.execute(conn, _insert_unnest(name, columns, skip_existing),
                          [{c: [row[c] for row in rows] for c in columns}])
        else:
            plans.execute(conn, _insert(conn.dialect.name, name, skip_existing), rows)
    shapes: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for (name, key, ident), values in updates.items():
        update_shape = (name, key, tuple(sorted(values)))
        shapes.setdefault(update_shape, []).append({"_ident": ident, **{f"_v_{k}": v
                                                                 for k, v in values.items()}})
    for (name, key, columns), rows in shapes.items():
        plans.execute(conn, _update(name, key, columns), rows)
    parked = sequenced.apply(conn, numbered_updates)
    if not parked:
        return ops
    waiting = {(op.table, op.ident) for op in parked}
    return [op for op in ops if not (isinstance(op, Update) and op.seq is not None
                                     and (op.table, op.ident) in waiting)]


# Statements are built once per shape: their plans (core/plans.py) are found by identity.

@functools.cache
def _update(name: str, key: str, columns: tuple[str, ...]) -> Any:
    table = _table(name)
    return update(table).where(table.c[key] == bindparam("_ident")).values(
        {c: bindparam(f"_v_{c}") for c in columns})


# PostgreSQL: rows of one shape as one statement, whatever their number: one array per
# column, unnested. An executemany would run the statement once per row; a multi-row
# VALUES list would be a new statement (a new prepare) for every row count.
_FLAT_TYPES = (String, Integer, Boolean, Float, UTCDateTime)


@functools.cache
def _flat(name: str, columns: tuple[str, ...]) -> bool:
    """Whether every column is a scalar that a PostgreSQL array carries as it is."""
    table = _table(name)
    return all(isinstance(table.c[c].type, _FLAT_TYPES)
               and not isinstance(table.c[c].type, Enum) for c in columns)


@functools.cache
def _insert_unnest(name: str, columns: tuple[str, ...], skip_existing: bool) -> Any:
    table = _table(name)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"CAST(:{c} AS {postgresql.ARRAY(table.c[c].type).compile(dialect=dialect)})"
        for c in columns)
    conflict = " ON CONFLICT DO NOTHING" if skip_existing else ""
    statement = text(f"INSERT INTO {name} ({', '.join(columns)}) "
                     f"SELECT * FROM unnest({arrays}){conflict}")
    return statement.bindparams(*(bindparam(c, type_=postgresql.ARRAY(table.c[c].type))
                                  for c in columns))


@functools.cache
def _insert(dialect: str, name: str, skip_existing: bool) -> Any:
    table = _table(name)
    if not skip_existing:
        return insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"no insert-or-skip for {dialect}")
