"""Rows stored through core/plans.py are what SQLAlchemy would store, on SQLite (the
synchronous driver the writer uses) and PostgreSQL (asyncpg): each statement is run both
ways in a transaction rolled back, and the stored rows read back as the database holds
them (SQLite: the driver's raw values; PostgreSQL: each row as text)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Enum,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    case,
    event,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core import db, plans, sequenced, writer
from core.models import Base, UTCDateTime
from reports import agent_days, agent_states

Fill = Callable[[Connection], Any]

# The tables the record writer stores rows in.
TABLES = ("calls", "interactions", "processed_events", "agent_state_changes", "callbacks",
          "audit_log", "parked_updates")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def stored(engine: AsyncEngine, fill: Fill, names: tuple[str, ...]) -> list[Any]:
    """What `fill` leaves in the tables `names`, read as stored; rolled back after."""
    sync = db.create_sync_engine(str(engine.url.render_as_string(hide_password=False)))
    if sync is not None:  # SQLite: the writer's own driver
        with sync.connect() as conn:
            try:
                return _filled(conn, fill, names)
            finally:
                conn.rollback()
                sync.dispose()
    async with engine.connect() as aconn:
        try:
            return await aconn.run_sync(_filled, fill, names)
        finally:
            await aconn.rollback()


def _stamped(conn: Connection, table: Table, started: dt.datetime) -> None:
    """The times that column defaults (an offer's time, `updated_at`) filled in while
    storing made one: both ways must fill the same columns, not at the same instant."""
    timed = [c for c in table.columns if isinstance(c.type, UTCDateTime)
             and (c.default is not None or c.onupdate is not None)]
    if timed:
        conn.execute(table.update().values(
            {c: case((c >= started, STAMP), else_=c) for c in timed}))


def _filled(conn: Connection, fill: Fill, names: tuple[str, ...]) -> list[Any]:
    started = dt.datetime.now(dt.UTC)
    fill(conn)
    rows: list[Any] = []
    for name in names:
        _stamped(conn, Base.metadata.tables[name], started)
        query = (f"SELECT CAST({name} AS text) FROM {name}"
                 if conn.dialect.name == "postgresql" else f"SELECT * FROM {name}")
        rows.append(sorted(conn.exec_driver_sql(query).all(), key=repr))
    return rows


async def both_ways(engine: AsyncEngine, statement: Any, rows: list[dict[str, Any]],
                    *names: str) -> list[Any]:
    by_sqlalchemy = await stored(engine, lambda conn: conn.execute(
        statement, rows[0] if len(rows) == 1 else rows), names)
    by_plan = await stored(engine, lambda conn: plans.execute(conn, statement, rows), names)
    assert by_plan == by_sqlalchemy
    assert any(by_plan)
    return by_plan


def value(table: Table, column: str, n: int) -> Any:
    """A value of the column's type, awkward where it can be (zones, non-ASCII, NULL)."""
    col = table.c[column]
    kind = col.type
    if col.foreign_keys or (col.nullable and n == 2 and not col.primary_key):
        return None
    if isinstance(kind, UTCDateTime):
        return dt.datetime(2026, 12, 3, 17, 55, n, 123456 * (n % 2), tzinfo=SHANGHAI)
    if isinstance(kind, JSON):
        return {"名": ["é", n, 1.5, None, True], "n": {"x": [n]}}
    if isinstance(kind, Enum):
        return kind.enums[n % len(kind.enums)]
    if isinstance(kind, Boolean):
        return n % 2 == 0
    if isinstance(kind, Integer):
        return n + 1
    if isinstance(kind, Float | Numeric):
        return 1.25 + n
    if isinstance(kind, String):
        return f"v{n}-é"[: kind.length or 100]
    raise AssertionError(f"no value for {table.name}.{column} ({kind!r})")


def full_row(table: Table, n: int) -> dict[str, Any]:
    return {c.name: value(table, c.name, n) for c in table.columns
            if not (c.primary_key and c.autoincrement is True
                    and isinstance(c.type, Integer))}


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("count", [1, 3])
async def test_inserts_store_what_sqlalchemy_stores(engine, name, count):
    table = Base.metadata.tables[name]
    rows = [full_row(table, n) for n in range(count)]
    for skip_existing in (False, True):
        statement = writer._insert(engine.dialect.name, name, skip_existing)
        await both_ways(engine, statement, rows, name)


async def test_column_defaults_are_filled_in_as_sqlalchemy_fills_them(engine):
    # offered_at/updated_at default to the time: compared apart from the rest
    rows = [{"id": f"c-{n}", "state": "queued"} for n in range(3)]
    statement = writer._insert(engine.dialect.name, "calls", False)
    stored_rows = (await both_ways(engine, statement, rows, "calls"))[0]
    assert len(stored_rows) == 3


@pytest.mark.parametrize("count", [1, 3])
async def test_updates_store_what_sqlalchemy_stores(engine, count):
    table = Base.metadata.tables["interactions"]
    columns = tuple(sorted(c.name for c in table.columns
                           if not (c.primary_key or c.unique or c.name == "call_id")))
    statement = writer._update("interactions", "call_id", columns)
    rows = [{"_ident": f"c-{n}", **{f"_v_{c}": value(table, c, n + 1) for c in columns}}
            for n in range(count)]
    inserts = [full_row(table, n) | {"call_id": f"c-{n}"} for n in range(count)]

    def fill(execute: Fill) -> Fill:
        def run(conn: Connection) -> Any:
            conn.execute(writer._insert(conn.dialect.name, "interactions", False), inserts)
            return execute(conn)
        return run

    by_sqlalchemy = await stored(engine, fill(lambda conn: conn.execute(
        statement, rows[0] if count == 1 else rows)), ("interactions",))
    by_plan = await stored(engine, fill(lambda conn: plans.execute(conn, statement, rows)),
                           ("interactions",))
    assert by_plan == by_sqlalchemy


NUMBERED_COLUMNS = {"calls": ("state",),
                    "interactions": ("agent_ids", "answered_at", "complaint_flag", "disposition")}


@pytest.mark.parametrize("name", sorted(NUMBERED_COLUMNS))
@pytest.mark.parametrize("which", [slice(0, 1), slice(1, 2), slice(0, 3)])
async def test_numbered_updates_store_what_sqlalchemy_stores_and_count_alike(engine, name,
                                                                             which):
    table = Base.metadata.tables[name]
    key = "id" if name == "calls" else "call_id"
    columns = NUMBERED_COLUMNS[name]
    statement = sequenced._statement(name, key, columns)
    # Row 0 newer than its update (left alone), row 1 older, row 2 absent.
    inserts = [full_row(table, n) | {key: f"c-{n}", "seq": 5 - 4 * n} for n in range(2)]
    rows = [{"_ident": f"c-{n}", "_seq": 3, **{f"_v_{c}": value(table, c, n + 1)
                                               for c in columns}} for n in range(3)][which]
    counts: list[int] = []

    def fill(execute: Callable[[Connection], int]) -> Fill:
        def run(conn: Connection) -> None:
            conn.execute(writer._insert(conn.dialect.name, name, False), inserts)
            counts.append(execute(conn))
        return run

    by_sqlalchemy = await stored(engine, fill(lambda conn: conn.execute(
        statement, rows[0] if len(rows) == 1 else rows).rowcount), (name,))
    by_plan = await stored(engine, fill(lambda conn: plans.execute(conn, statement, rows)),
                           (name,))
    assert by_plan == by_sqlalchemy
    if len(rows) == 1 or engine.dialect.name == "sqlite":  # asyncpg: no executemany count
        assert counts[0] == counts[1]


async def test_a_duplicate_row_raises_integrity_error_as_sqlalchemy_does(engine):
    table = Base.metadata.tables["processed_events"]
    rows = [full_row(table, 0), full_row(table, 0)]
    statement = writer._insert(engine.dialect.name, "processed_events", False)
    with pytest.raises(IntegrityError):
        await stored(engine, lambda conn: plans.execute(conn, statement, rows),
                     ("processed_events",))


async def test_statements_go_to_the_driver_as_text_seen_by_cursor_events(engine):
    table = Base.metadata.tables["processed_events"]
    seen: list[tuple[str, bool]] = []
    sync = db.create_sync_engine(str(engine.url.render_as_string(hide_password=False)))
    target = sync if sync is not None else engine.sync_engine
    event.listen(target, "before_cursor_execute",
                 lambda conn, cursor, sql, params, context, many: seen.append(
                     (sql, context.compiled is None)))
    statement = writer._insert(engine.dialect.name, "processed_events", False)
    if sync is not None:
        with sync.begin() as conn:
            plans.execute(conn, statement, [full_row(table, 0)])
        sync.dispose()
    else:
        async with engine.begin() as aconn:
            await aconn.run_sync(plans.execute, statement, [full_row(table, 0)])
    assert [by_driver for sql, by_driver in seen if "INSERT INTO processed_events" in sql] \
        == [True]


async def test_unnested_inserts_store_what_sqlalchemy_stores(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statement")
    table = Base.metadata.tables["processed_events"]
    columns = tuple(sorted(full_row(table, 0)))
    rows = [full_row(table, n) for n in range(3)]
    statement = writer._insert_unnest("processed_events", columns, False)
    arrays = [{c: [row[c] for row in rows] for c in columns}]
    await both_ways(engine, statement, arrays, "processed_events")


async def test_the_agent_state_rollups_add_what_sqlalchemy_adds(engine):
    rows = [{"start": dt.datetime(2026, 12, 3, 17, 45, tzinfo=SHANGHAI), "agent_id": n % 2,
             "state": "ready", "reason": "", "seconds": 1.5 + n} for n in range(3)]
    await both_ways(engine, agent_states._ADD, rows, "report_agent_states")


@pytest.mark.parametrize("level", agent_days.LEVELS, ids=lambda level: level.table)
async def test_the_agent_day_and_hour_rows_add_what_sqlalchemy_adds(engine, level):
    if engine.dialect.name != "postgresql":
        pytest.skip("kept on PostgreSQL only (reports/agent_days.py)")
    seconds = {(dt.datetime(2026, 12, 3, 17, 45, tzinfo=dt.UTC), n % 2, state, reason): 1.5
               for n in range(3) for state, reason in (("ready", ""), ("not_ready", "lunch"))}

    def add(execute: Callable[[Connection, Any, list[dict[str, Any]]], Any]) -> Fill:
        def run(conn: Connection) -> None:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(agent_days.plans, "execute", execute)
                agent_days._add_states(conn, level, ZoneInfo("Asia/Shanghai"), seconds)
        return run

    names = (level.table, level.reasons)
    by_sqlalchemy = await stored(engine, add(
        lambda conn, statement, rows: conn.execute(statement, rows)), names)
    by_plan = await stored(engine, add(plans.execute), names)
    assert by_plan == by_sqlalchemy and all(by_plan)
