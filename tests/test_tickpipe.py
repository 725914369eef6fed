"""The call path's commands pipelined by loop turn on one connection (core/tickpipe.py):
replies reach their own callers, errors are redis-py's, scripts load themselves, a lost
connection fails only the commands in flight, and a Redis that stops answering fails them
after the client's socket timeout instead of holding them for ever."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redisconn import client_from_url, close_client
from core.tickpipe import TickPipe
from tests.test_faults import RedisProcess
from tests.waits import eventually


@pytest.fixture
async def pipe(redis: Redis) -> AsyncIterator[TickPipe]:
    made = TickPipe.for_client(redis)
    assert made is not None
    yield made
    await made.close()


async def test_commands_of_one_loop_turn_each_get_their_own_reply(
        pipe: TickPipe, redis: Redis, redis_prefix: str) -> None:
    keys = [f"{redis_prefix}:n:{n}" for n in range(200)]
    await asyncio.gather(*(pipe.execute("SET", key, n * 0.5) for n, key in enumerate(keys)))
    got = await asyncio.gather(*(pipe.execute("GET", key) for key in keys))
    assert got == [repr(n * 0.5) for n in range(200)]
    assert await redis.get(keys[7]) == "3.5"


async def test_an_error_reply_raises_redis_pys_error_and_the_next_command_works(
        pipe: TickPipe, redis_prefix: str) -> None:
    await pipe.execute("SET", f"{redis_prefix}:s", "x")
    wrong, right = await asyncio.gather(pipe.execute("HGET", f"{redis_prefix}:s", "f"),
                                        pipe.execute("GET", f"{redis_prefix}:s"),
                                        return_exceptions=True)
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert right == "x"


async def test_a_script_loads_itself_once_and_answers_as_redis_pys_would(
        pipe: TickPipe, redis: Redis, redis_prefix: str) -> None:
    text = f"-- {redis_prefix}\nreturn {{ARGV[1], redis.call('HGETALL', KEYS[1])}}"
    await redis.hset(f"{redis_prefix}:h", mapping={"a": "1"})
    script = pipe.register_script(text)
    ours = await asyncio.gather(*(script(keys=[f"{redis_prefix}:h"], args=[n])
                                  for n in range(3)))
    theirs = await redis.register_script(text)(keys=[f"{redis_prefix}:h"], args=[0])
    assert ours == [[str(n), ["a", "1"]] for n in range(3)]
    assert ours[0] == theirs


async def test_a_lost_connection_fails_the_commands_in_flight_and_the_next_reconnects(
        redis_url: str, redis: Redis) -> None:
    # Without a reply timeout: the blocked command waits however long the kill takes.
    pipe = TickPipe.for_client(Redis.from_url(redis_url, socket_timeout=None))
    assert pipe is not None
    me = await pipe.execute("CLIENT", "ID")
    blocked = asyncio.ensure_future(pipe.execute("BLPOP", "tickpipe-never", 30))

    async def blocking() -> bool:
        return any(int(c["id"]) == me and c.get("cmd") == "blpop"
                   for c in await redis.client_list())

    await eventually(blocking)
    await redis.client_kill_filter(_id=me)
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(blocked, 10)
    assert await pipe.execute("PING") == "PONG"
    assert await pipe.execute("CLIENT", "ID") != me
    await pipe.close()


def test_the_pipe_has_the_clients_socket_timeout(redis_url: str) -> None:
    pipe = TickPipe.for_client(client_from_url(redis_url))
    assert pipe is not None and pipe.timeout_s == 5


async def test_a_redis_that_stops_answering_fails_the_commands_and_the_pipe_recovers(
        tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)
    server.start()
    client = client_from_url(server.url)
    pipe = TickPipe.for_client(Redis.from_url(server.url, socket_timeout=1.0))
    assert pipe is not None and server.proc is not None
    try:
        assert await pipe.execute("SET", "k", "before") == "OK"
        os.kill(server.proc.pid, signal.SIGSTOP)  # up, connected, and silent
        try:
            started = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(
                pipe.execute("SET", "k", "meanwhile"), pipe.execute("GET", "k"),
                return_exceptions=True), 20)
            waited = time.monotonic() - started
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert 1.0 <= waited < 10, waited
        # A new connection: no reply meant for a command given up on reaches another.
        assert await pipe.execute("GET", "k") in ("before", "meanwhile")
        assert await pipe.execute("SET", "k", "after") == "OK"
        assert await pipe.execute("GET", "k") == "after"
        assert await client.get("k") == "after"
    finally:
        await pipe.close()
        await close_client(client)
        server.stop()
