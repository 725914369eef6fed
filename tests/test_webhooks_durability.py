"""Webhook delivery survives a node dying: an event read by a consumer that died is
fanned out by another (XAUTOCLAIM), a send cut off mid-flight is sent again once its
lease runs out, and a call's events arrive in order even while an earlier one fails."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from core import outbox
from core.bus import Bus
from core.keys import Keys
from core.models import WebhookDelivery, WebhookSubscription
from core.settings import Settings
from tests.conftest import _database_params, _database_url
from tests.waits import eventually
from tests.webhook_receiver import Receiver, wait_for
from webhooks.delivery import Policy, Sender
from webhooks.fanout import GROUP, FanOut
from webhooks.service import Webhooks

SECRET = "whsec_durability_0123456789"


class Clock:
    """Real time, moved ahead by `offset` seconds when a test skips ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset



@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite and PostgreSQL: the claims and conflicts are database-specific SQL."""
    return _database_url(request.param, tmp_path)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver(secret=SECRET).start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def node(redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
         name: str, clock: Clock, **policy: Any) -> Webhooks:
    stream = Keys(settings.redis_prefix).webhook_events
    fanout = FanOut(redis, stream, sessions, name, claim_idle_ms=50)
    sender = Sender(sessions, http, Policy(**{"timeout_s": 5.0, "backoff_s": 0.01,
                                              "backoff_max_s": 0.01, **policy}), clock=clock)
    return Webhooks(redis, stream, fanout, sender)


async def subscribe(sessions: Any, url: str) -> int:
    async with sessions() as session, session.begin():
        sub = WebhookSubscription(url=url, events=["*"], secret=SECRET)
        session.add(sub)
        await session.flush()
        return sub.id


async def rows(sessions: Any) -> list[WebhookDelivery]:
    async with sessions() as session:
        from sqlalchemy import select
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def run_until(hooks: Webhooks, done: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(hooks.run())
    try:
        await wait_for(done, timeout=timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await hooks.close()


async def test_an_event_read_by_a_consumer_that_died_is_fanned_out_by_another(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    clock = Clock()
    await subscribe(sessions, receiver.url)
    survivor = node(redis, settings, sessions, http, "survivor", clock)
    await survivor.fanout.ensure_group()
    await outbox.emit(redis, survivor.stream, "call.offered", {"call_id": "c1"}, "c1")
    # The dead node read the entry and died before storing its deliveries.
    taken = await redis.xreadgroup(GROUP, "dead-node", {survivor.stream: ">"}, count=10)
    assert len(taken[0][1]) == 1
    await asyncio.sleep(0.06)  # past claim_idle_ms
    await run_until(survivor, lambda: receiver.types() == ["call.offered"])
    assert (await redis.xpending(survivor.stream, GROUP))["pending"] == 0


async def test_a_send_cut_off_by_a_dying_node_is_sent_again_after_its_lease(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    clock = Clock()
    await subscribe(sessions, receiver.url)
    receiver.stall_s = 30.0  # the first node never hears back
    first = node(redis, settings, sessions, http, "first", clock)
    await first.fanout.ensure_group()
    await outbox.emit(redis, first.stream, "call.offered", {"call_id": "c2"}, "c2")
    await run_until(first, lambda: receiver.requests == 1)  # then it is killed
    [leased] = await rows(sessions)
    assert leased.status == "pending" and leased.lease_until is not None
    receiver.stall_s = 0.0
    second = node(redis, settings, sessions, http, "second", clock)
    # Within the lease nobody else sends it.
    assert await second.step() == 0
    clock.offset += first.sender.policy.lease.total_seconds() + 1
    task = asyncio.create_task(second.run())
    try:
        deadline = time.monotonic() + 10
        while [r.status for r in await rows(sessions)] != ["delivered"]:
            assert time.monotonic() < deadline, "never delivered"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert receiver.types() == ["call.offered"]


async def test_a_calls_later_events_wait_for_its_failing_earlier_one(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    clock = Clock()
    await subscribe(sessions, receiver.url)
    receiver.fail_first = 5
    hooks = node(redis, settings, sessions, http, "n1", clock, concurrency=8)
    await hooks.fanout.ensure_group()
    for kind in ("call.offered", "call.answered", "call.ended"):
        await outbox.emit(redis, hooks.stream, kind, {"call_id": "c3"}, "c3")
    await outbox.emit(redis, hooks.stream, "call.offered", {"call_id": "c4"}, "c4")

    def advance() -> bool:
        clock.offset += 1.0
        return len(receiver.received) == 4

    await run_until(hooks, advance)
    of_c3 = [e["type"] for e in receiver.received if e["data"]["call_id"] == "c3"]
    assert of_c3 == ["call.offered", "call.answered", "call.ended"]
    assert receiver.requests == 4 + 5


async def test_events_behind_an_entry_still_being_fanned_out_are_held(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    clock = Clock()
    await subscribe(sessions, receiver.url)
    hooks = node(redis, settings, sessions, http, "n1", clock)
    await hooks.fanout.ensure_group()
    await outbox.emit(redis, hooks.stream, "call.offered", {"call_id": "c5"}, "c5")
    # Another node holds the first entry, mid fan-out; the second is read here.
    await redis.xreadgroup(GROUP, "slow-node", {hooks.stream: ">"}, count=1)
    await outbox.emit(redis, hooks.stream, "call.answered", {"call_id": "c5"}, "c5")
    hooks.fanout.claim_idle_ms = 60_000
    assert await hooks.fanout.step() == 1
    assert await hooks.sender.step(await hooks.fanout.watermark()) == 0
    hooks.fanout.claim_idle_ms = 0
    await run_until(hooks, lambda: len(receiver.received) == 2)
    assert receiver.types() == ["call.offered", "call.answered"]


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = Policy(backoff_s=10, backoff_max_s=60)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert policy.lease > dt.timedelta(seconds=policy.timeout_s)


async def test_a_failing_receiver_is_retried_with_doubling_gaps_for_the_hours_set_then_dead(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    """The settings' backoff (10 min, doubled, at most an hour) and retry window (3 h) on
    the sender's injected clock: each failed attempt is due again after the doubled gap,
    and the delivery stays pending until its next try would pass the window."""
    from webhooks.plugin import policy

    clock = Clock()
    await subscribe(sessions, receiver.url)
    receiver.fail_first = 1000
    hooks = node(redis, settings, sessions, http, "n1", clock)
    hooks.sender.policy = policy(settings.model_copy(update={
        "webhook_backoff_s": 600.0, "webhook_backoff_max_s": 3600.0,
        "webhook_retry_hours": 3.0, "webhook_timeout_s": 5.0}))
    await hooks.fanout.ensure_group()
    await outbox.emit(redis, hooks.stream, "call.offered", {"call_id": "c6"}, "c6")
    assert await hooks.fanout.step() == 1
    # Each attempt is made between `before` and `after`: it is due again its gap later.
    spans: list[tuple[float, float, float]] = []  # (due - before, due - after, due)
    statuses: list[str] = []
    while "dead" not in statuses:
        assert len(statuses) < 10, statuses
        before = clock()
        assert await hooks.sender.step(await hooks.fanout.watermark()) == 1
        await asyncio.gather(*hooks.sender.inflight)
        after = clock()
        [row] = await rows(sessions)
        statuses.append(row.status)
        due = row.next_attempt_at.replace(tzinfo=dt.UTC).timestamp()
        spans.append((due - before, due - after, due))
        clock.offset += due - clock()  # skip ahead to when it is due again
    for gap, (most, least, _) in zip([600, 1200, 2400, 3600], spans, strict=False):
        assert least - 0.01 <= gap <= most + 0.01, (gap, spans)
    assert statuses == ["pending"] * 4 + ["dead"]
    assert receiver.requests == 5


def test_the_receiver_example_in_the_docs_verifies_our_signature() -> None:
    """The Python receiver in docs/webhooks.md, run as written (but for starting its
    server), accepts a delivery signed by the sender and refuses a tampered or old one."""
    import re
    from pathlib import Path

    from webhooks import signing

    doc = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    namespace: dict[str, Any] = {}
    exec(code.replace("web.run_app(app, port=9000)", ""), namespace)  # noqa: S102
    secret = namespace["SECRET"].decode()
    body = b'{"id":"evt_1","type":"call.ended","data":{}}'
    now = int(time.time())
    valid = namespace["valid"]
    assert valid(signing.header(secret, now, body), body)
    assert not valid(signing.header(secret, now, body), body + b" ")
    assert not valid(signing.header(secret, now - 3600, body), body)
    assert not valid(signing.header("whsec_other", now, body), body)


class Pair:
    """Two nodes' webhook loops, each with its own Redis client and bus, wired as
    webhooks/plugin.py wires them (a word on the webhooks channel reaches both)."""

    def __init__(self, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
                 **loop: Any) -> None:
        self.keys = Keys(settings.redis_prefix)
        self.clients = [Redis.from_url(settings.redis_url, decode_responses=True)
                        for _ in range(2)]
        self.buses = [Bus(r, f"{self.keys.prefix}:ch:node:n{i}")
                      for i, r in enumerate(self.clients)]
        self.nodes = [node(r, settings, sessions, http, f"n{i}", Clock(), concurrency=2)
                      for i, r in enumerate(self.clients)]
        for hooks, bus in zip(self.nodes, self.buses, strict=True):
            hooks.announce = self._announcer(bus)
            for name, value in loop.items():
                setattr(hooks, name, value)
        self.tasks: list[asyncio.Task[None]] = []

    def _announcer(self, bus: Bus) -> Any:
        async def announce(message: dict[str, Any]) -> None:
            await bus.publish(self.keys.webhooks_channel, message)
        return announce

    async def __aenter__(self) -> Pair:
        for hooks, bus in zip(self.nodes, self.buses, strict=True):
            await bus.subscribe(self.keys.webhooks_channel, hooks.heard)
            self.tasks.append(asyncio.create_task(bus.run()))
            await wait_for(bus._ready.is_set)
            await hooks.fanout.ensure_group()
            self.tasks.append(asyncio.create_task(hooks.run()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for hooks, bus, client in zip(self.nodes, self.buses, self.clients, strict=True):
            await hooks.close()
            await bus.close()
            await client.aclose()


async def test_events_queued_on_one_of_two_nodes_are_each_delivered_once(
        settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    receiver.stall_s = 0.02  # node 0's two senders are soon busy: it asks node 1 for help
    # Neither node polls within the test: only the blocked read and the words wake them.
    async with Pair(settings, sessions, http, idle_poll_s=60.0) as pair:
        first, second = pair.nodes
        await wait_for(lambda: first.looks and second.looks)  # both asleep now
        await subscribe(sessions, receiver.url)
        await first.changed()  # as the API does after committing a change
        # The other node heard of the subscription at once (it looks again only when told).
        await wait_for(lambda: second.looks >= 2 and second.wants("call.offered"))
        for n in range(40):
            await outbox.emit(first.redis, first.stream, "call.offered", {"call_id": f"c{n}"},
                              f"c{n}")
        await wait_for(lambda: len(receiver.received) == 40, timeout=20)
        # A send is marked delivered just after its request is answered.
        delivered = await eventually(lambda: _all_delivered(sessions, 40), timeout=20)
    assert [(r.status, r.attempts) for r in delivered] == [("delivered", 1)] * 40
    assert receiver.requests == 40
    assert len({e["id"] for e in receiver.received}) == 40


async def _all_delivered(sessions: Any, count: int) -> list[WebhookDelivery] | None:
    found = await rows(sessions)
    done = len(found) == count and all(r.status != "pending" for r in found)
    return found if done else None


async def test_an_idle_node_sleeps_until_told_instead_of_polling_the_database(
        settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    began = time.monotonic()
    async with Pair(settings, sessions, http, db_poll_s=0.01, idle_poll_s=0.5,
                    block_s=0.5) as pair:
        idle = pair.nodes[0]
        await wait_for(lambda: idle.looks >= 3)
        # Nothing pending: it slept `idle_poll_s` between looks, not `db_poll_s`.
        assert time.monotonic() - began >= 2 * 0.5
        for hooks in pair.nodes:
            hooks.idle_poll_s = 60.0
        # Told of a subscription, it fans out at once; a failed send is retried when due
        # (the backoff is 0.01 s), not at the next idle look a minute away.
        receiver.fail_first = 2
        await subscribe(sessions, receiver.url)
        await pair.nodes[1].changed()
        await outbox.emit(idle.redis, idle.stream, "call.offered", {"call_id": "c1"}, "c1")
        await wait_for(lambda: receiver.types() == ["call.offered"])
        assert receiver.requests == 3


async def test_a_stream_lost_by_redis_is_recreated_without_a_failed_round(
        redis: Redis, settings: Settings, sessions: Any, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    """Redis came back empty (a flush, a failover to an empty replica): the send loop's
    look at what is in flight and a fan-out read blocked at that moment both recreate
    the group; neither fails its round (each logged an ERROR and slept a second)."""
    await subscribe(sessions, receiver.url)
    hooks = node(redis, settings, sessions, http, "n1", Clock())
    await hooks.fanout.ensure_group()

    await redis.delete(hooks.stream)
    assert await hooks.fanout.watermark() is None
    assert (await redis.xinfo_groups(hooks.stream))[0]["name"] == GROUP

    blocked = asyncio.create_task(hooks.fanout.step(block_ms=3000))  # < socket timeout
    await _until_blocked(redis)
    await redis.delete(hooks.stream)  # the blocked read is let go with UNBLOCKED
    assert await asyncio.wait_for(blocked, timeout=10) == 0

    await outbox.emit(redis, hooks.stream, "call.offered", {"call_id": "c1"}, "c1")
    await run_until(hooks, lambda: receiver.types() == ["call.offered"])


async def _until_blocked(redis: Redis) -> None:
    deadline = time.monotonic() + 10
    while not [c for c in await redis.client_list()
               if c["cmd"] == "xreadgroup" and "b" in c["flags"]]:
        assert time.monotonic() < deadline, "the fan-out's read never blocked"
        await asyncio.sleep(0.01)



async def test_a_fan_out_read_timed_out_is_a_warning_and_the_next_round_reads_again(
        redis: Redis, redis_url: str, settings: Settings, sessions: Any,
        http: aiohttp.ClientSession, receiver: Receiver,
        caplog: pytest.LogCaptureFixture) -> None:
    """The fan-out's read blocks for `block_s` of the client's socket timeout: a loop held
    up for seconds (a full collection on a loaded host) times it out though Redis is fine
    (an ERROR with its traceback in clean-clone runs). Here the client's timeout is
    shorter than the block, so every idle read times out."""
    caplog.set_level(logging.WARNING, logger="webhooks")
    impatient = Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.3)
    await subscribe(sessions, receiver.url)
    hooks = node(impatient, settings, sessions, http, "n1", Clock())
    hooks.block_s = 1.0

    def warned() -> bool:
        return any(r.levelno == logging.WARNING and "fan-out" in r.getMessage()
                   for r in caplog.records)

    task = asyncio.create_task(hooks.run())
    try:
        await eventually(warned, timeout=20, what="a fan-out read timed out, as a warning")
        await outbox.emit(redis, hooks.stream, "call.offered", {"call_id": "c1"}, "c1")
        await wait_for(lambda: receiver.types() == ["call.offered"], timeout=20)
        # Looked at while the loop runs: cancelling it mid-query below can make
        # SQLAlchemy's pool log an ERROR of its own (a rollback cancelled), which is
        # about stopping, not about the rounds.
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await hooks.close()
        await impatient.aclose()
    assert errors == []
