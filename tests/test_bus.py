"""The bus between nodes survives what anyone can publish on Redis."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis

from core import appkeys
from core.bus import Bus, Relay
from core.keys import Keys


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
