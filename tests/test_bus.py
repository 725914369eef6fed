"""The bus between nodes survives what anyone can publish on Redis, and a connection
killed or gone silent."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis

from core import appkeys
from core.bus import Bus, Relay
from core.keys import Keys
from core.subscription import Liveness, RedisPySubscription, subscription_for
from tests.blackhole import BlackHoleProxy
from tests.waits import eventually


async def _until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("garbage", "logged"), [
    (b"not json {", "ch:agent:7"), (b"[1, 2]", "ch:agent:7"), (b"x" * 5000, "ch:agent:7"),
    (b"\xff\xfe\x00 not utf-8", "not UTF-8")])
async def test_a_malformed_message_is_logged_and_dropped_and_the_next_is_delivered(
        redis_url: str, redis_prefix: str, garbage: bytes, logged: str,
        caplog: pytest.LogCaptureFixture) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    raw = Redis.from_url(redis_url)
    bus = Bus(redis, f"{redis_prefix}:ch:node:n1")
    received: list[dict[str, object]] = []
    channel = f"{redis_prefix}:ch:agent:7"
    await bus.subscribe(channel, received.append)
    task = asyncio.create_task(bus.run())
    try:
        await _until(bus._ready.is_set)
        with caplog.at_level(logging.WARNING, logger="core.bus"):
            await raw.publish(channel, garbage)
            await bus.publish(channel, {"type": "screen_pop", "call_id": "c-1"})
            await _until(lambda: received)
        assert received == [{"type": "screen_pop", "call_id": "c-1"}]
        assert not task.done(), "the bus task died"
        dropped = [r for r in caplog.records if r.name == "core.bus"
                   and r.levelno == logging.WARNING]
        assert len(dropped) == 1 and logged in dropped[0].getMessage()
        assert len(dropped[0].getMessage()) < 400, "the payload is truncated in the log"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()
        await redis.aclose()
        await raw.aclose()


async def test_garbage_on_an_agents_channel_does_not_stop_their_screen_pops(center) -> None:
    agent = await center.agent("garbage")
    await agent.available()
    keys = Keys(center.settings.redis_prefix)
    raw = Redis.from_url(center.settings.redis_url)
    try:
        await raw.publish(keys.agent_channel(agent.agent_id), b"{broken")
    finally:
        await raw.aclose()
    ivr = await center.ivr()
    await ivr.offer("after-garbage", "+8613800000091")
    pop = await agent.inbox.expect("screen_pop", call_id="after-garbage")
    assert pop["call_id"] == "after-garbage"
    supervisor = center.server.app[appkeys.SUPERVISOR]
    assert supervisor.tasks["bus"].restarts == 0, "the bus survived without a restart"


class _Relayed(Relay):
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, object], str]] = []

    def relay(self, message: dict[str, object], text: str) -> None:
        self.got.append((message, text))


async def test_a_relay_gets_the_text_as_published_and_no_malformed_message(
        redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    bus = Bus(redis, f"{redis_prefix}:ch:node:n1")
    relay, decoded = _Relayed(), list[dict[str, object]]()
    channel = f"{redis_prefix}:ch:agent:8"
    await bus.subscribe(channel, relay)
    await bus.subscribe(channel, decoded.append)
    task = asyncio.create_task(bus.run())
    text = '{"type":  "screen_pop", "call_id": "c-\u00e9", "n": 1.50}'
    try:
        await _until(bus._ready.is_set)
        await redis.publish(channel, "[1, 2]")
        await redis.publish(channel, text)
        await _until(lambda: relay.got and decoded)
        expected = {"type": "screen_pop", "call_id": "c-\u00e9", "n": 1.5}
        assert relay.got == [(expected, text)], "relayed as published, never re-encoded"
        assert decoded == [expected]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()
        await redis.aclose()


async def _running_bus(redis: Redis, prefix: str) -> tuple[Bus, asyncio.Task[None]]:
    bus = Bus(redis, f"{prefix}:ch:node:n1")
    task = asyncio.create_task(bus.run())
    await _until(bus._ready.is_set)
    return bus, task


async def _stop(bus: Bus, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.close()


async def test_messages_published_together_arrive_in_order(
        redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    bus, task = await _running_bus(redis, redis_prefix)
    received: list[dict[str, object]] = []
    channel = f"{redis_prefix}:ch:agent:9"
    try:
        await bus.subscribe(channel, received.append)
        await _until_subscribed(redis, channel)
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(500):
                pipe.publish(channel, f'{{"n": {n}}}')
            await pipe.execute()
        await _until(lambda: len(received) == 500)
        assert received == [{"n": n} for n in range(500)]
    finally:
        await _stop(bus, task)
        await redis.aclose()


async def test_a_killed_subscriber_connection_comes_back_and_resyncs(
        redis_url: str, redis_prefix: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    bus, task = await _running_bus(redis, redis_prefix)
    received: list[dict[str, object]] = []
    resynced = asyncio.Event()

    async def resync() -> None:
        resynced.set()

    bus.on_resubscribed(resync)
    channel = f"{redis_prefix}:ch:agent:10"
    try:
        await bus.subscribe(channel, received.append)
        await _until_subscribed(redis, channel)
        name = f"bus:{redis_prefix}:ch:node:n1"
        killed = [c for c in await redis.client_list(_type="pubsub") if c["name"] == name]
        assert len(killed) == 1, "the bus's connection carries its name"
        await redis.execute_command("CLIENT", "KILL", "ID", killed[0]["id"])
        await asyncio.wait_for(resynced.wait(), timeout=10)
        await _until_subscribed(redis, channel)
        await redis.publish(channel, '{"after": "reconnect"}')
        await _until(lambda: received)
        assert received == [{"after": "reconnect"}]
        assert not task.done(), "the bus task died"
    finally:
        await _stop(bus, task)
        await redis.aclose()


async def _until_subscribed(redis: Redis, channel: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (await redis.pubsub_numsub(channel))[0][1] == 0:
        assert time.monotonic() < deadline, f"nobody subscribed to {channel}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["raw", "redis-py"])
async def test_a_subscription_gone_silent_is_given_up_and_the_bus_reconnects_and_resyncs(
        redis_url: str, redis_prefix: str, kind: str) -> None:
    """Redis's host gone without a reset (a proxy that stops forwarding and closes
    nothing): the subscription's PING goes unanswered, the bus reconnects within the
    bound and resyncs, and a message published afterwards is delivered. Without the
    check only TCP would notice, minutes later."""
    proxy = await BlackHoleProxy(redis_url).start()
    redis = Redis.from_url(proxy.url, decode_responses=True)
    direct = Redis.from_url(redis_url, decode_responses=True)
    liveness = Liveness(idle_s=0.3, reply_s=0.5)
    subscription = (subscription_for(redis, "bus:silent", liveness) if kind == "raw"
                    else RedisPySubscription(redis, liveness))
    bus = Bus(redis, f"{redis_prefix}:ch:node:n1", subscription)
    received: list[dict[str, object]] = []
    resynced = asyncio.Event()

    async def resync() -> None:
        resynced.set()

    bus.on_resubscribed(resync)
    channel = f"{redis_prefix}:ch:agent:11"
    task = asyncio.create_task(bus.run())
    try:
        await bus.subscribe(channel, received.append)
        await _until_subscribed(direct, channel)
        pinged = await _pings(direct)

        async def answered_and_pinged_again() -> bool:  # a PING waits for the last reply
            return await _pings(direct) >= pinged + 2

        await eventually(answered_and_pinged_again, timeout=20, what="two PINGs")
        assert not resynced.is_set(), "a live idle connection is kept"
        proxy.black_hole()
        await asyncio.wait_for(resynced.wait(), timeout=20)
        await _until_subscribed(direct, channel)
        await direct.publish(channel, '{"after": "silence"}')
        await _until(lambda: received)
        assert received == [{"after": "silence"}]
        assert not task.done(), "the bus task died"
    finally:
        await _stop(bus, task)
        await redis.aclose()
        await direct.aclose()
        await proxy.close()


async def _pings(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))
