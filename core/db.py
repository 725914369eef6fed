"""Database engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import await_only, in_greenlet

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseUnavailable(Exception):
    code = "database_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database {safe_url(url)} is unreachable: {reason}")


def safe_url(url: str) -> str:
    """The URL without its password, fit for logs and error lines."""
    return make_url(url).render_as_string(hide_password=True)


# Files the service creates (the SQLite database and its WAL, the embedded Redis's dump,
# audit exports) hold personal data: owner-only from the moment they exist.
PRIVATE_UMASK = 0o077


def private_files() -> None:
    """Make every file this process (and its children) creates from now on owner-only."""
    os.umask(PRIVATE_UMASK)


def create_private_sqlite(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does; SQLite gives its WAL and
    shared-memory files the database file's permissions."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def create_engine(url: str, size: int = 10, overflow: int = 10) -> AsyncEngine:
    """`size` and `overflow`: PostgreSQL's pool (CALLCENTER_DB_POOL_SIZE and _OVERFLOW)."""
    if url.startswith("sqlite"):
        create_private_sqlite(url)
        # One connection: SQLite takes one writer at a time, and queueing for the
        # connection in-process is fair and fast, where SQLite's own busy-wait sleeps
        # in steps of up to 100 ms and makes latency spiky under load.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return _kept_pool(create_async_engine(url, **_pool(size, overflow)))


def create_read_engine(url: str, size: int = 5, overflow: int = 15) -> AsyncEngine:
    """A separate pool for the reads of the call path and the sign-in.

    SQLite: its WAL lets readers run beside the writer. PostgreSQL: the reads run in
    autocommit, a lookup being its SELECTs alone, without the BEGIN and ROLLBACK round
    trips (and transactions) a session adds; under READ COMMITTED each statement takes
    its own snapshot anyway, so what a lookup sees is the same. Only reads use it.
    """
    if not url.startswith("sqlite"):
        return _kept_pool(create_async_engine(url, isolation_level="AUTOCOMMIT",
                                              **_pool(size, overflow)))
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=4,
                                 max_overflow=4)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# A pooled PostgreSQL connection idle longer than this is pinged before it is used
# (a firewall may have dropped it without a word); a busy one is not.
IDLE_PING_S = 30.0


def _pool(size: int, overflow: int) -> dict[str, Any]:
    """A pool that keeps what it opens, up to `size + overflow`, opened as needed.

    An overflow connection would be closed when returned and opened again at the next
    pile-up of reads: a new backend, a TLS handshake and every statement prepared again,
    each time (bench/README.md, s11cpu: 0.1-0.3 connections opened per call). Last in,
    first out: at a steady load the same few connections serve, their prepared
    statements warm, and the others stay idle."""
    return {"pool_size": size + overflow, "max_overflow": 0, "pool_use_lifo": True}


def _kept_pool(engine: AsyncEngine) -> AsyncEngine:
    """Check a pooled connection on checkout without a round trip when it was used
    lately: asyncpg knows when the server closed it (a restart, a terminated backend),
    and such a connection is replaced. `pool_pre_ping` cost a round trip per checkout
    (three on the writer's engine: BEGIN, the ping, ROLLBACK)."""
    sync, idle_ping_s = engine.sync_engine, IDLE_PING_S

    def returned(_dbapi: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        closed = getattr(dbapi.driver_connection, "is_closed", None)  # asyncpg's
        if closed is not None and closed():
            raise DisconnectionError("the server closed the connection")
        since = record.info.get("returned")
        if since is None or (closed is not None and time.monotonic() - since <= idle_ping_s):
            return  # new, or known open and used lately
        try:
            sync.dialect.do_ping(dbapi)
        except Exception as e:  # whatever the driver raised: the connection is gone
            raise DisconnectionError(f"ping failed: {e}") from e

    event.listen(sync, "checkin", returned)
    event.listen(sync, "checkout", checkout)
    return engine


def create_sync_engine(url: str) -> Engine | None:
    """For SQLite, the synchronous driver beside the async one, used from worker threads.

    aiosqlite hands every cursor call to its thread and back; a screen-pop lookup or a
    batch of writes is a dozen such hops. On the synchronous driver, run in a worker
    thread, the same SQLAlchemy Core work is one hop. None elsewhere: asyncpg needs no
    thread.
    """
    if not url.startswith("sqlite"):
        return None
    sync_url = make_url(url).set(drivername="sqlite")
    engine = sqlalchemy.create_engine(
        sync_url, connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=4, max_overflow=4)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


Read = Callable[[Callable[[Connection], T]], Awaitable[T]]


def thread_reader(engine: Engine) -> Read[Any]:
    """Run a synchronous query function on `engine` in a worker thread."""
    async def read(query: Callable[[Connection], T]) -> T:
        def run() -> T:
            with engine.connect() as conn:
                return query(conn)
        return await asyncio.to_thread(run)
    return read


def off_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)`, from a read's query function, off the event loop: CPU-heavy Python
    (a long report's rows) there would stall every request of the node meanwhile.

    On PostgreSQL the query function runs on the loop, in SQLAlchemy's greenlet
    (`session_reader`, `AsyncConnection.run_sync`): `work` then runs in a worker thread
    while the loop carries on. Elsewhere (SQLite's `thread_reader`) the query function is
    already in a worker thread, and `work` is simply called."""
    if not in_greenlet():
        return work(*args)
    return await_only(asyncio.to_thread(work, *args))


def session_reader(maker: async_sessionmaker[AsyncSession]) -> Read[Any]:
    """Run a synchronous query function on a connection of the sessions' engine.

    The query functions are Core on a `Connection`: an ORM session around them only
    added its own setup, transaction bookkeeping and teardown (on PostgreSQL, with the
    screen-pop's profile read on the loop, about a third of that read's CPU)."""
    engine: AsyncEngine | None = maker.kw.get("bind")
    if engine is None:  # a maker bound per use: through its session
        async def read_in_session(query: Callable[[Connection], T]) -> T:
            async with maker() as session:
                return await session.run_sync(lambda s: query(s.connection()))
        return read_in_session

    async def read(query: Callable[[Connection], T]) -> T:
        async with engine.connect() as conn:
            return await conn.run_sync(query)
    return read


# How much of a SQLite database file is read through a memory map (its size or less).
SQLITE_MMAP_BYTES = 1 << 30


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the transcription worker and the server read while the other writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Pages read through a memory map, not a pread system call each: every commit of the
    # writer makes the other connections read the pages it changed again (about fifty
    # preads per call on the call path, bench/README.md).
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def check(engine: AsyncEngine) -> None:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:  # any driver error means the same thing to an operator
        raise DatabaseUnavailable(str(engine.url), f"{type(e).__name__}: {e}") from e


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Run migrations; synchronous, call it from a thread inside a running loop."""
    command.upgrade(alembic_config(url), revision)


# pg_advisory_lock key held while one node migrates and seeds: "callcntr" in ASCII.
FIRST_START_LOCK = 0x63616C6C636E7472


@asynccontextmanager
async def first_start(engine: AsyncEngine) -> AsyncIterator[None]:
    """The first-start lock, then the check that the database answers, made inside it.

    Held while a node migrates the schema and loads seed data, so that nodes started
    together against an empty database take turns: the first does the work, the others
    wait and then find it done. The check comes after the lock because on SQLite a
    node's first connection switches a new file to WAL, which SQLite refuses at once
    ("database is locked", no busy wait) while another node is doing the same.
    """
    url = engine.url.render_as_string(hide_password=False)
    if url.startswith("sqlite"):
        async with _file_lock(make_url(url).database):
            await check(engine)
            yield
        return
    async with _advisory_lock(url):
        await check(engine)
        yield


@asynccontextmanager
async def _advisory_lock(url: str) -> AsyncIterator[None]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        try:
            conn = await engine.connect()
        except Exception as e:  # the same meaning as a failed check
            raise DatabaseUnavailable(url, f"{type(e).__name__}: {e}") from e
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                     {"k": FIRST_START_LOCK}):
                log.info("another node is preparing the database; waiting for it")
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": FIRST_START_LOCK})
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": FIRST_START_LOCK})
        finally:
            await conn.close()
    finally:
        await engine.dispose()


@asynccontextmanager
async def _file_lock(database: str | None) -> AsyncIterator[None]:
    """An exclusive lock on a file beside the SQLite database (none for in-memory ones)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waiting = False
        while not _try_flock(fd):  # polled, not a blocking call: Ctrl-C still works
            if not waiting:
                log.info("another node is preparing the database; waiting for it")
                waiting = True
            await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@asynccontextmanager
async def session_scope(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with maker() as session, session.begin():
        yield session
