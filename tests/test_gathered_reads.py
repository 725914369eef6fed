"""Lookups gathered per loop turn (core/gathered.py), on SQLite's worker-thread reader
and PostgreSQL's session reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text

from core import db
from core.gathered import GatheredReads


class CountedRead:
    """A real reader of the database, counting the reads it was given."""

    def __init__(self, read: db.Read[Any]) -> None:
        self.inner, self.calls = read, 0
        self.gate: asyncio.Event | None = None  # set: each read waits for it first
        self.started = asyncio.Event()

    async def __call__(self, query: Callable[[Connection], Any]) -> Any:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self.inner(query)


@pytest.fixture
async def counted(any_database_url: str) -> AsyncIterator[CountedRead]:
    sync_engine = db.create_sync_engine(any_database_url)
    engine = db.create_read_engine(any_database_url)
    read = db.thread_reader(sync_engine) if sync_engine is not None \
        else db.session_reader(db.sessionmaker(engine))
    try:
        yield CountedRead(read)
    finally:
        await engine.dispose()
        if sync_engine is not None:
            sync_engine.dispose()


def _select(value: int) -> Callable[[Connection], int]:
    statement = text("SELECT CAST(:v AS INTEGER)")
    return lambda conn: int(conn.execute(statement, {"v": value}).scalar_one())


async def test_lookups_asked_in_one_loop_turn_share_one_read(counted: CountedRead) -> None:
    reads = GatheredReads(counted)
    asks: list[Awaitable[int]] = [reads(("n", n), _select(n)) for n in range(6)]
    asks += [reads(("n", 2), _select(99)), reads(("n", 5), _select(99))]  # same keys
    assert await asyncio.gather(*asks) == [0, 1, 2, 3, 4, 5, 2, 5]
    assert counted.calls == 1
    # The next turn's lookups are a read of their own.
    assert await reads(("n", 2), _select(7)) == 7
    assert counted.calls == 2


async def test_a_failing_lookup_fails_alone(counted: CountedRead) -> None:
    reads = GatheredReads(counted)

    def broken(conn: Connection) -> int:
        conn.execute(text("SELECT * FROM no_such_table"))
        return 0

    first, bad, last = await asyncio.gather(reads("a", _select(1)), reads("b", broken),
                                            reads("c", _select(3)), return_exceptions=True)
    assert (first, last) == (1, 3)
    assert isinstance(bad, Exception) and "no_such_table" in str(bad)
    assert counted.calls == 1


async def test_a_lookup_asked_once_a_read_started_does_not_join_it(
        counted: CountedRead) -> None:
    """A read that started before a caller asked might not see what was written before
    it asked: the caller gets a read of its own."""
    reads = GatheredReads(counted)
    counted.gate = asyncio.Event()
    early = asyncio.create_task(reads("k", _select(1)))
    await asyncio.wait_for(counted.started.wait(), 5)
    late = asyncio.create_task(reads("k", _select(2)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its read is on its way
    counted.gate.set()
    assert await asyncio.wait_for(asyncio.gather(early, late), 10) == [1, 2]
    assert counted.calls == 2


async def test_a_caller_cancelled_leaves_the_read_to_the_others(counted: CountedRead) -> None:
    reads = GatheredReads(counted)
    counted.gate = asyncio.Event()
    gone = asyncio.create_task(reads("k", _select(4)))
    stays = asyncio.create_task(reads("k", _select(4)))
    await asyncio.wait_for(counted.started.wait(), 5)
    gone.cancel()
    counted.gate.set()
    assert await asyncio.wait_for(stays, 10) == 4
    with pytest.raises(asyncio.CancelledError):
        await gone
