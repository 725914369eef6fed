"""Database engine, sessions and migrations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseUnavailable(Exception):
    code = "database_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database {safe_url(url)} is unreachable: {reason}")


def safe_url(url: str) -> str:
    """The URL without its password, fit for logs and error lines."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # One connection: SQLite takes one writer at a time, and queueing for the
        # connection in-process is fair and fast, where SQLite's own busy-wait sleeps
        # in steps of up to 100 ms and makes latency spiky under load.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def create_read_engine(url: str) -> AsyncEngine | None:
    """A separate pool for reads on SQLite, whose WAL lets readers run beside the writer.

    None elsewhere: PostgreSQL's one pool serves both.
    """
    if not url.startswith("sqlite"):
        return None
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=4,
                                 max_overflow=4)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the transcription worker and the server read while the other writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
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


@asynccontextmanager
async def session_scope(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with maker() as session, session.begin():
        yield session
