"""The timer loop (core/timers.py): a due timer fires once across nodes, a node that dies
mid-handler leaves its timer to another after the lease, an idle loop sleeps until
the next due time instead of polling, and a handler's Redis timeout is a warning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.timers import Poll, Timer, TimerLoop, Timers
from tests.test_faults import RedisProcess
from tests.waits import eventually


@pytest.fixture
def key(redis_prefix: str) -> str:
    return f"{redis_prefix}:timers"


class Node:
    """One node's timers and timer loop, noting what it fired and when."""

    def __init__(self, redis: Redis, key: str, *, lease_s: float = 30.0,
                 max_wait_s: float = 1.0,
                 handler: Callable[[Timer], Awaitable[None]] | None = None) -> None:
        self.timers = Timers(redis, key, lease_s)
        self.fired: list[tuple[Timer, float]] = []
        self.loop = TimerLoop(self.timers, handler or self.record, time.time, max_wait_s)
        self.task: asyncio.Task[None] | None = None

    async def record(self, timer: Timer) -> None:
        self.fired.append((timer, time.time()))

    def start(self) -> Node:
        self.task = asyncio.create_task(self.loop.run())
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    for node in nodes:
        node.start()
    try:
        yield
    finally:
        for node in nodes:
            await node.stop()


async def test_a_poll_reports_what_fired_claims_what_is_due_and_says_what_is_next(redis, key):
    timers = Timers(redis, key, lease_s=1000.0)
    a, b, c = Timer("wrapup", "1", "c-1"), Timer("rona", "c-2", "2"), Timer("widen", "c-3")
    await timers.schedule_many({a: 100.0, b: 150.0, c: 500.0})
    first = await timers.poll(120.0)
    assert (first.due, first.next_due) == ([a], 150.0)
    second = await timers.poll(160.0, [a], 120.0)
    assert (second.due, second.next_due) == ([b], 500.0)
    assert await redis.zscore(key, a.member) is None  # reported fired: gone
    await timers.schedule(b, 700.0)  # its handler set it again
    third = await timers.poll(170.0, [b], 160.0)
    assert (third.due, third.next_due) == ([], 500.0)
    assert await redis.zscore(key, b.member) == 700.0  # kept at its new time
    await timers.cancel(c)
    await timers.cancel(b)
    assert await timers.poll(10_000.0) == Poll([], None)


async def test_each_due_timer_fires_once_on_one_of_two_nodes(redis, key):
    one, two = Node(redis, key, max_wait_s=0.2), Node(redis, key, max_wait_s=0.2)
    start = time.time()
    due = {Timer("wrapup", str(i), f"c-{i}"): start + 0.3 + i * 0.003 for i in range(300)}
    await one.timers.schedule_many(due)
    async with running(one, two):
        await eventually(lambda: len(one.fired) + len(two.fired) >= len(due), timeout=30)
        await eventually(_empty(redis, key), timeout=10, what="fired timers removed")
    fired = Counter(timer for node in (one, two) for timer, _ in node.fired)
    assert set(fired) == set(due) and set(fired.values()) == {1}
    assert all(at >= due[timer] for node in (one, two) for timer, at in node.fired)


def _empty(redis: Redis, key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await redis.zcard(key) == 0
    return check


async def test_a_node_that_dies_mid_handler_leaves_its_timer_to_another_after_the_lease(
        redis, key):
    entered = asyncio.Event()

    async def hang(timer: Timer) -> None:
        entered.set()
        await asyncio.Event().wait()  # the node dies before it finishes

    dying = Node(redis, key, lease_s=0.6, max_wait_s=0.1, handler=hang)
    survivor = Node(redis, key, lease_s=0.6, max_wait_s=0.1)
    timer = Timer("rona", "c-1", "7")
    await dying.timers.schedule(timer, time.time())
    async with running(dying):
        await asyncio.wait_for(entered.wait(), 10)
        claimed = time.time()
    async with running(survivor):
        await eventually(lambda: survivor.fired, timeout=10)
        await eventually(_empty(redis, key), timeout=10, what="fired timer removed")
    assert [t for t, _ in survivor.fired] == [timer]
    assert survivor.fired[0][1] >= claimed + 0.6 - 0.05  # not before the lease ran out


async def test_a_failed_handler_fires_again_after_its_lease(redis, key):
    calls: list[float] = []

    async def fail_once(timer: Timer) -> None:
        calls.append(time.time())
        if len(calls) == 1:
            raise RuntimeError("the handler's first run fails")

    node = Node(redis, key, lease_s=0.5, max_wait_s=0.1, handler=fail_once)
    await node.timers.schedule(Timer("widen", "c-9"), time.time())
    async with running(node):
        await eventually(lambda: len(calls) >= 2, timeout=10)
        await eventually(_empty(redis, key), timeout=10, what="fired timer removed")
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.5 - 0.05


async def test_an_idle_loop_sleeps_until_the_next_due_timer_instead_of_polling(redis, key):
    node = Node(redis, key, max_wait_s=0.5)
    elsewhere = Timers(redis, key)  # another node sets it: nothing wakes this loop
    timer = Timer("wrapup", "3", "c-3")
    due = time.time() + 1.5
    await elsewhere.schedule(timer, due)
    async with running(node):
        await eventually(lambda: node.fired, timeout=10)
    assert node.fired[0][1] >= due
    # Polled every 0.5 s at most, then once to claim and once to report: a loop polling
    # every 0.1 s would have polled 15 times.
    assert node.loop.polls <= 7


async def test_a_timer_set_on_this_node_wakes_its_sleeping_loop(redis, key):
    node = Node(redis, key, max_wait_s=60.0)
    async with running(node):
        await eventually(lambda: node.loop.polls >= 1)  # asleep for a minute now
        await node.timers.schedule(Timer("away", "5"), time.time() + 0.2)
        await eventually(lambda: len(node.fired) == 1, timeout=10)
        # A timer that a script of the call path set here, told to the loop.
        due = time.time() + 0.2
        await redis.zadd(key, {Timer("rona", "c-4", "4").member: due})
        node.timers.expect(due)
        await eventually(lambda: len(node.fired) == 2, timeout=10)
    assert [t.kind for t, _ in node.fired] == ["away", "rona"]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_a_handler_meeting_a_redis_timeout_is_one_warning_and_fires_again(
        own_redis: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    """A handler's command times out (Redis up, connected and silent; on a loaded host, a
    loop held up past the socket timeout): one WARNING line, no ERROR with a traceback,
    and the timer fires again after its lease."""
    redis = Redis.from_url(own_redis.url, decode_responses=True)
    impatient = Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=0.3,
                               retry=Retry(NoBackoff(), 0))
    runs: list[float] = []

    async def handler(timer: Timer) -> None:
        runs.append(time.time())
        if len(runs) == 1:
            with own_redis.paused():
                await impatient.set("handled", "while paused")
        await impatient.set("handled", timer.member)

    node = Node(redis, "timers", lease_s=0.5, max_wait_s=0.1, handler=handler)
    timer = Timer("rona", "c-1", "7")
    await node.timers.schedule(timer, time.time())
    try:
        with caplog.at_level(logging.WARNING, logger="core"):
            async with running(node):
                await eventually(lambda: len(runs) >= 2, timeout=20, what="fired again")
                await eventually(_empty(redis, "timers"), timeout=10, what="timer removed")
        assert await redis.get("handled") == timer.member
    finally:
        await impatient.aclose()
        await redis.aclose()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert timer.member in warnings[0].getMessage()
    assert "Redis unavailable" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
