"""Marks written after records are stored go to Redis together, per turn of the loop."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.tickbatch import TickBatch
from core.tickpipe import TickPipe


async def test_writes_of_one_loop_turn_are_one_round_trip_and_each_caller_waits_for_its_own(
        redis: Redis, redis_prefix: str) -> None:
    batch = TickBatch(redis)
    sent: list[int] = []
    pipeline = redis.pipeline

    def counting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        sent.append(1)
        return pipeline(*args, **kwargs)  # type: ignore[arg-type]

    redis.pipeline = counting  # type: ignore[method-assign]
    keys = [f"{redis_prefix}:event:{n}" for n in range(50)]
    await asyncio.gather(*(batch.set(key, "1", ex=60) for key in keys))
    assert sent == [1]
    assert await redis.mget(keys) == ["1"] * 50
    assert 0 < await redis.ttl(keys[0]) <= 60


async def test_a_write_made_while_a_batch_is_in_flight_is_sent_too(
        redis: Redis, redis_prefix: str) -> None:
    batch = TickBatch(redis)
    first = asyncio.create_task(batch.set(f"{redis_prefix}:a", "1", ex=60))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first batch is being sent
    await asyncio.wait_for(batch.set(f"{redis_prefix}:b", "1", ex=60), 10)
    await first
    assert await redis.mget([f"{redis_prefix}:a", f"{redis_prefix}:b"]) == ["1", "1"]


async def test_a_failed_batch_fails_its_callers_and_the_next_one_works(
        redis: Redis, redis_prefix: str) -> None:
    batch = TickBatch(redis)
    # A bad expiry makes Redis refuse the command.
    results = await asyncio.gather(batch.set(f"{redis_prefix}:ok", "1", ex=-5),
                                   return_exceptions=True)
    assert isinstance(results[0], Exception)
    await batch.set(f"{redis_prefix}:ok", "1", ex=60)
    assert await redis.get(f"{redis_prefix}:ok") == "1"


async def test_through_the_tick_pipe_a_loop_turns_marks_go_in_one_write_and_fail_alone(
        redis: Redis, redis_prefix: str) -> None:
    pipe = TickPipe.for_client(redis)
    assert pipe is not None
    try:
        batch = TickBatch(redis, pipe)
        await batch.set(f"{redis_prefix}:warm", "1", ex=60)  # connected
        protocol = pipe._protocol
        assert protocol is not None
        writes: list[int] = []  # the commands of each write to the socket
        flush = protocol._flush

        def counting() -> None:
            writes.append(len(protocol.out))
            flush()

        protocol._flush = counting  # type: ignore[method-assign]
        keys = [f"{redis_prefix}:event:{n}" for n in range(50)]
        results = await asyncio.gather(*(batch.set(key, "1", ex=-5 if n == 7 else 60)
                                         for n, key in enumerate(keys)),
                                       return_exceptions=True)
        assert writes == [50]
        assert isinstance(results[7], ResponseError)  # a bad expiry: that write alone
        assert [r for n, r in enumerate(results) if n != 7] == [None] * 49
        assert await redis.mget(keys) == ["1"] * 7 + [None] + ["1"] * 42
    finally:
        await pipe.close()
