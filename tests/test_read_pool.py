"""The read pool (core/db.py): on PostgreSQL a lookup is its statements alone."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from core import db
from tests.conftest import POSTGRES_URL


@pytest.mark.postgres
async def test_a_lookup_on_postgresql_opens_no_transaction_of_its_own() -> None:
    assert POSTGRES_URL is not None
    engine = db.create_read_engine(POSTGRES_URL)
    sent: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: sent.append(statement))
    try:
        async with db.sessionmaker(engine)() as session:
            # Each statement is its own transaction: two statements, two transaction ids.
            first = await session.scalar(text("SELECT pg_current_xact_id()::text"))
            second = await session.scalar(text("SELECT pg_current_xact_id()::text"))
            in_block = await session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() "
                "AND backend_xid IS NOT NULL"))
    finally:
        await engine.dispose()
    assert first != second
    assert in_block == 0, "the connection still held a transaction between statements"
    assert len(sent) == 3


async def test_a_read_runs_its_query_on_a_connection_without_an_orm_session(
        any_database_url) -> None:
    """The call path's reads (the screen-pop's profile) are Core queries: they run on a
    pooled connection of the read engine, without an ORM session's setup and teardown."""
    engine = db.create_read_engine(any_database_url)
    begun: list[object] = []

    def began(session, transaction, connection):  # type: ignore[no-untyped-def]
        begun.append(session)

    event.listen(Session, "after_begin", began)
    try:
        read = db.session_reader(db.sessionmaker(engine))
        got = await read(lambda conn: (isinstance(conn, Connection),
                                       conn.execute(text("SELECT 41 + 1")).scalar()))
    finally:
        event.remove(Session, "after_begin", began)
        await engine.dispose()
    assert got == (True, 42)
    assert begun == [], "the read went through an ORM session"


async def test_on_sqlite_the_read_pool_is_a_pool_of_its_own(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}"
    writer, reader = db.create_engine(url), db.create_read_engine(url)
    try:
        assert reader.pool is not writer.pool
        async with db.sessionmaker(reader)() as session:
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await writer.dispose()
        await reader.dispose()


@pytest.mark.postgres
async def test_the_pools_take_their_sizes_from_the_settings(monkeypatch) -> None:
    from core.settings import Settings

    assert POSTGRES_URL is not None
    monkeypatch.setenv("CALLCENTER_DB_POOL_SIZE", "3")
    monkeypatch.setenv("CALLCENTER_DB_READ_POOL_OVERFLOW", "2")
    settings = Settings(database_url=POSTGRES_URL)
    assert (settings.db_pool_size, settings.db_pool_overflow) == (3, 10)
    engine = db.create_engine(POSTGRES_URL, settings.db_pool_size, settings.db_pool_overflow)
    reader = db.create_read_engine(POSTGRES_URL, settings.db_read_pool_size,
                                   settings.db_read_pool_overflow)
    try:
        assert (engine.pool.size(), reader.pool.size()) == (3, 5)  # type: ignore[attr-defined]
        assert reader.pool._max_overflow == 2  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
        await reader.dispose()
