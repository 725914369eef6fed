"""Redis writes gathered over one turn of the event loop and sent in one pipeline.

Events acknowledged together (the group writer stores a batch of them in one
transaction) each mark their event key "stored": one round trip for all of them instead
of one each. A caller still waits until its own write is in Redis.

With the tick pipe (core/tickpipe.py) each write is simply one of the pipe's commands: it
already sends a loop turn's commands in one write, so no batch of its own is gathered (a
task, a shielded future and a gather for every batch, on every acknowledged event's
path). Through redis-py (behind Sentinel) the writes of a turn go in one pipeline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

from core.tickpipe import TickPipe


@dataclass
class TickBatch:
    redis: Redis
    pipe: TickPipe | None = None  # each write one of its commands when given
    _pending: list[tuple[str, str, int, asyncio.Future[None]]] = field(
        default_factory=list, init=False)
    _flushing: asyncio.Task[None] | None = field(default=None, init=False)

    async def set(self, key: str, value: str, ex: int) -> None:
        """SET key value EX ex, sent with the others of this loop turn."""
        if self.pipe is not None:
            await self.pipe.execute("SET", key, value, "EX", ex)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((key, value, ex, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="tick-batch")
        await asyncio.shield(done)  # a cancelled caller leaves the others' batch alone

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's writes join
        while self._pending:  # writes that came while the last batch was sent
            batch, self._pending = self._pending, []
            try:
                await self._send(batch)
            except BaseException:  # cancelled (shutdown): nobody is left waiting
                _fail([*batch, *self._pending], ConnectionError("batch cancelled"))
                self._pending = []
                raise

    async def _send(self, batch: list[tuple[str, str, int, asyncio.Future[None]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, value, ex, _ in batch:
                    pipe.set(key, value, ex=ex)
                await pipe.execute()
        except Exception as e:
            _fail(batch, e)
            return
        for *_, done in batch:
            if not done.done():
                done.set_result(None)


def _fail(batch: list[tuple[str, str, int, asyncio.Future[None]]], error: Exception) -> None:
    for *_, done in batch:
        if not done.done():
            done.set_exception(error)
            done.exception()  # retrieved: a caller gone meanwhile logs nothing
