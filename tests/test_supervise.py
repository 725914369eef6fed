"""Background work under one supervisor: named, logged, restarted, reported, stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry
from sqlalchemy import func, select

from core import appkeys, db, web
from core.keys import Keys
from core.models import AgentStateChange
from core.supervise import Backoff, Supervisor, TaskState
from tests.test_faults import RedisProcess

APP_TASKS = {"record-writer", "bus", "timers", "agent-log", "recovery", "announce", "wallboard",
             "token-watch", "presence", "complaint-sla"}


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Flaky:
    """Fails `failures` times, then runs until cancelled; notes when each run started."""

    def __init__(self, failures: int, runs_for: float = 0.0) -> None:
        self.failures, self.runs_for = failures, runs_for
        self.starts: list[float] = []

    async def __call__(self) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.failures:
            await asyncio.sleep(self.runs_for)
            raise RuntimeError(f"boom {len(self.starts)}")
        await asyncio.Event().wait()


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def test_a_failing_task_is_logged_with_its_traceback_and_restarted_with_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(Backoff(initial_s=0.05, max_s=0.2, healthy_after_s=60))
    work = Flaky(failures=4)
    with caplog.at_level(logging.WARNING, logger="core.supervise"):
        entry = supervisor.start("flaky", work)
        await until(lambda: len(work.starts) == 5 and entry.state is TaskState.running)
    await supervisor.stop()
    gaps = [b - a for a, b in zip(work.starts, work.starts[1:], strict=False)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert gap >= delay
    assert entry.restarts == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4 and all("flaky" in r.getMessage() for r in errors)
    assert all(r.exc_info and "boom" in str(r.exc_info[1]) for r in errors)


async def test_a_healthy_run_starts_the_backoff_over() -> None:
    supervisor = Supervisor(Backoff(initial_s=0.05, max_s=10, healthy_after_s=0.1))
    work = Flaky(failures=3, runs_for=0.15)  # each run lasts long enough to count healthy
    entry = supervisor.start("slow-to-fail", work)
    await until(lambda: len(work.starts) == 4)
    await supervisor.stop()
    assert entry.restarts == 3
    assert entry.failures == 1, "each failure after a healthy run is the first in a row"


async def test_stop_ends_a_task_that_swallows_its_cancellation() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:  # as redis-py's client can, mid-command
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    supervisor = Supervisor()
    entry = supervisor.start("stubborn", stubborn)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(supervisor.stop(), timeout=5)
    assert swallowed.is_set() and entry.task.done()
    assert supervisor.tasks == {}


async def test_a_task_that_returns_is_finished_not_restarted() -> None:
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    supervisor = Supervisor(Backoff(initial_s=0.01))
    entry = supervisor.start("once", once)
    await until(entry.task.done)
    assert runs == [1] and entry.state is TaskState.finished and supervisor.down() == []


async def test_every_background_task_of_the_app_runs_under_the_supervisor(center) -> None:
    supervisor = center.server.app[appkeys.SUPERVISOR]
    assert APP_TASKS <= set(supervisor.tasks)
    assert all(s.state is TaskState.running for s in supervisor.tasks.values())


async def test_healthz_is_unhealthy_while_a_required_task_is_down(center) -> None:
    supervisor = center.server.app[appkeys.SUPERVISOR]
    supervisor.backoff = Backoff(initial_s=0.3, max_s=0.3)
    optional = supervisor.start("optional", Flaky(failures=1000), required=False)
    async with aiohttp.ClientSession() as http:
        await until(lambda: optional.down)
        async with http.get(f"{center.url}/healthz") as resp:
            assert resp.status == 200, "an optional task down leaves the node healthy"
        required = supervisor.start("required", Flaky(failures=1))
        await until(lambda: required.down)
        async with http.get(f"{center.url}/healthz") as resp:
            body = await resp.json()
            assert resp.status == 503
        assert body["status"] == "unhealthy" and body["down"] == ["required"]
        assert body["tasks"]["required"]["state"] == "restarting"
        assert body["tasks"]["bus"]["state"] == "running"
        await until(lambda: required.state is TaskState.running)
        async with http.get(f"{center.url}/healthz") as resp:
            assert resp.status == 200


async def test_restarts_are_counted_in_metrics(center) -> None:
    supervisor = center.server.app[appkeys.SUPERVISOR]
    supervisor.backoff = Backoff(initial_s=0.01, max_s=0.01)
    entry = supervisor.start("twice", Flaky(failures=2))
    await until(lambda: entry.restarts == 2 and entry.state is TaskState.running)
    auth = {"Authorization": f"Bearer {await center.telephony_token('prometheus')}"}
    async with aiohttp.ClientSession() as http, \
            http.get(f"{center.url}/metrics", headers=auth) as resp:
        text = await resp.text()
    assert 'callcenter_background_task_restarts_total{task="twice"} 2.0' in text
    assert 'callcenter_background_task_restarts_total{task="bus"} 0.0' in text
    up = next(line for line in text.splitlines()
              if line.startswith("callcenter_background_tasks_up "))
    assert float(up.split()[1]) >= len(APP_TASKS) + 1


async def test_the_agent_log_consumer_recovers_from_a_redis_error_reply(
        center, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a reply error other than NOGROUP (READONLY after a failover) ended it. Now
    the consumer logs it and carries on (or, failing otherwise, the supervisor restarts it)."""
    supervisor = center.server.app[appkeys.SUPERVISOR]
    supervisor.backoff = Backoff(initial_s=0.05, max_s=0.05)
    keys = Keys(center.settings.redis_prefix)
    redis = Redis.from_url(center.settings.redis_url)
    try:
        await redis.delete(keys.agent_log)
        with caplog.at_level(logging.WARNING, logger="cti.agent_log"):
            await redis.set(keys.agent_log, "not a stream")  # every XREADGROUP: WRONGTYPE
            await until(lambda: supervisor.tasks["agent-log"].restarts >= 1 or any(
                "WRONGTYPE" in r.getMessage() for r in caplog.records))
        await redis.delete(keys.agent_log)
    finally:
        await redis.aclose()
    agent = await center.agent("after-error")
    await agent.available()

    async def stored() -> int:
        async with center.sessions() as session:
            return await session.scalar(select(func.count()).select_from(AgentStateChange)
                                        .where(AgentStateChange.agent_id == agent.agent_id))

    deadline = time.monotonic() + 10
    while not await stored():
        assert time.monotonic() < deadline, "the agent's state change was never stored"
        await asyncio.sleep(0.05)


async def test_a_token_check_that_cannot_reach_its_table_is_logged_as_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Before: logged at DEBUG, so a token re-check that never works went unseen."""
    monkeypatch.setattr(web, "TOKEN_RECHECK_S", 0.02)
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-schema.db'}")
    watch = web.TokenWatch(db.sessionmaker(engine))
    watch.watch("some-token", aiohttp.web.WebSocketResponse())
    supervisor = Supervisor()
    with caplog.at_level(logging.WARNING, logger="core.web"):
        supervisor.start("token-watch", watch.run)
        await until(lambda: any("tokens" in r.getMessage() for r in caplog.records))
    await supervisor.stop()
    await engine.dispose()
    assert supervisor.down() == []


async def test_a_task_meeting_a_redis_timeout_is_one_warning_and_runs_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Redis up, connected and silent (as a loaded host's loop held up past the socket
    timeout sees it): one WARNING line, no ERROR with a traceback, and the work resumes."""
    server = RedisProcess(tmp_path)
    server.start()
    impatient = Redis.from_url(server.url, decode_responses=True, socket_timeout=0.3,
                               retry=Retry(NoBackoff(), 0))
    runs: list[int] = []
    resumed = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            with server.paused():
                await impatient.set("k", "while paused")
        await impatient.set("k", "resumed")
        resumed.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(Backoff(initial_s=0.05))
    try:
        with caplog.at_level(logging.WARNING, logger="core.supervise"):
            entry = supervisor.start("redis-user", work)
            await asyncio.wait_for(resumed.wait(), 20)
        await supervisor.stop()
        assert await impatient.get("k") == "resumed"
    finally:
        await impatient.aclose()
        server.stop()
    assert entry.restarts == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "redis-user" in warnings[0], warnings
    assert "Redis unavailable" in warnings[0] and "TimeoutError" in warnings[0]


async def test_a_refused_redis_password_is_a_fault_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    async def refused() -> None:
        raise AuthenticationError("invalid username-password pair")

    supervisor = Supervisor(Backoff(initial_s=5))
    with caplog.at_level(logging.WARNING, logger="core.supervise"):
        entry = supervisor.start("misconfigured", refused)
        await until(lambda: entry.down)
    await supervisor.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
