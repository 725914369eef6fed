"""The read pool (core/db.py): on PostgreSQL a lookup is its statements alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
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
    try:  # each pool opens at most size + overflow connections, and keeps them
        assert (engine.pool.size(), reader.pool.size()) == (13, 7)  # type: ignore[attr-defined]
        assert reader.pool._max_overflow == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
        await reader.dispose()


async def _backend_pid(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT pg_backend_pid()")))


def _counted_pings(engine: AsyncEngine) -> list[object]:
    """The pings the engine's dialect sends (one round trip each, three in a transaction
    of the writer's engine)."""
    pings: list[object] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection):  # type: ignore[no-untyped-def]
        pings.append(dbapi_connection)
        return ping(dbapi_connection)
    dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


@pytest.mark.postgres
@pytest.mark.parametrize("make", [db.create_engine, db.create_read_engine])
async def test_a_pool_in_use_hands_out_connections_without_pinging_them(make) -> None:
    assert POSTGRES_URL is not None
    engine = make(POSTGRES_URL)
    pings = _counted_pings(engine)
    try:
        for _ in range(5):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
    assert pings == [], "a connection used a moment ago was pinged on checkout"


@pytest.mark.postgres
async def test_a_connection_the_server_closed_is_replaced_when_checked_out() -> None:
    """A restarted server (here: the connection's backend terminated) is noticed without a
    round trip: the read that follows gets a new connection, not an error."""
    assert POSTGRES_URL is not None
    reader, admin = db.create_read_engine(POSTGRES_URL), db.create_read_engine(POSTGRES_URL)
    try:
        async with reader.connect() as conn:
            pid = await _backend_pid(conn)
            raw = (await conn.get_raw_connection()).driver_connection
        async with admin.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await _until(lambda: raw.is_closed())
        async with reader.connect() as conn:
            assert await _backend_pid(conn) != pid
    finally:
        await reader.dispose()
        await admin.dispose()


@pytest.mark.postgres
async def test_a_connection_idle_for_long_is_pinged_before_use(monkeypatch) -> None:
    assert POSTGRES_URL is not None
    monkeypatch.setattr(db, "IDLE_PING_S", 0.0)
    engine = db.create_read_engine(POSTGRES_URL)
    pings = _counted_pings(engine)
    try:
        for _ in range(2):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
    assert len(pings) == 1  # the second checkout, of a connection returned before


@pytest.mark.postgres
async def test_connections_opened_under_a_pile_up_are_kept_for_the_next() -> None:
    """Overflow connections were closed on their return and opened again at the next
    pile-up: a new backend and a TLS handshake each."""
    assert POSTGRES_URL is not None
    engine = db.create_read_engine(POSTGRES_URL, size=2, overflow=4)
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda *args: opened.append(args))

    async def pile_up() -> set[int]:
        conns = [await engine.connect() for _ in range(6)]
        try:
            return {await _backend_pid(conn) for conn in conns}
        finally:
            for conn in conns:
                await conn.close()
    try:
        first = await pile_up()
        second = await pile_up()
    finally:
        await engine.dispose()
    assert len(opened) == 6
    assert first == second


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
