"""Reads asked for in one turn of the event loop, run together in one read.

A screen pop's caller lookup is a worker-thread hop on SQLite (a connection checked out,
the GIL handed over and back) and a session on PostgreSQL: under load the hop costs the
loop about as much as the queries. The lookups that calls arriving together ask for
start on the loop's next turn, after all of them asked, in one `Read` (one hop, one
connection), each isolated from the others' errors; two asking for the same key share
one read, which starts after both asked, so each sees what a read of its own started
then would see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection

from core.db import Read

log = logging.getLogger(__name__)
T = TypeVar("T")

Query = Callable[[Connection], Any]


class GatheredReads:
    """`await reads(key, query)`: `query`'s result, read with this loop turn's others.
    A result shared by one key's callers is theirs to read, not to change."""

    def __init__(self, read: Read[Any]) -> None:
        self._read = read
        # Each key's query and the futures of its callers: one each, so that a cancelled
        # caller cancels only its own (a shield per caller would cost a future and two
        # callbacks more, on every offered call).
        self._pending: dict[Hashable, tuple[Query, list[asyncio.Future[Any]]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, key: Hashable, query: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is None:
            if not self._pending:
                loop.call_soon(self._go)
            pending = self._pending[key] = (query, [])
        done: asyncio.Future[T] = loop.create_future()
        pending[1].append(done)
        return await done

    def _go(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(list(batch.values())),
                                                      name="gathered-reads")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Query, list[asyncio.Future[Any]]]]) -> None:
        queries = [query for query, _ in batch]
        try:
            outcomes = await self._read(lambda conn: [_attempt(q, conn) for q in queries])
        except BaseException as e:  # the read as a whole failed (or was cancelled)
            for _, callers in batch:
                for done in callers:
                    _settle(done, None, e if isinstance(e, Exception) else
                            ConnectionError("the read was cancelled"))
            if not isinstance(e, Exception):
                raise
            return
        for (_, callers), (value, error) in zip(batch, outcomes, strict=True):
            for done in callers:
                _settle(done, value, error)


def _attempt(query: Query, conn: Connection) -> tuple[Any, Exception | None]:
    try:
        return query(conn), None
    except Exception as e:  # this query's own failure: the others' results stand
        return None, e


def _settle(done: asyncio.Future[Any], value: Any, error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(value)
    else:
        done.set_exception(error)
        done.exception()  # retrieved: callers all gone (cancelled) log nothing
