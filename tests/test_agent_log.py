"""The agent-log consumer outlives Redis errors: it logs them and carries on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import select

from core.appkeys import CALLS
from core.models import AgentStateChange
from cti.agent_log import AgentLogConsumer


async def test_the_agent_log_consumer_logs_a_redis_error_and_carries_on(center: Any,
                                                                        caplog: Any) -> None:
    calls = center.server.app[CALLS]
    redis, stream = calls.store.redis, f"{calls.keys.prefix}:test-agent-log"
    await redis.set(stream, "not a stream")  # every stream command now fails: WRONGTYPE
    consumer = AgentLogConsumer(redis, stream, calls.writer, "test-node")
    task = asyncio.create_task(consumer.run(interval=0.05))
    try:
        async with asyncio.timeout(10):
            while not [r for r in caplog.records if r.name == "cti.agent_log"
                       and r.levelno == logging.WARNING and "WRONGTYPE" in r.getMessage()]:
                await asyncio.sleep(0.05)
        assert not task.done()
        await redis.delete(stream)  # Redis is sound again
        await redis.xadd(stream, {"agent_id": 4242, "state": "available", "reason": "",
                                  "at": 1_700_000_000.0})
        async with asyncio.timeout(10):
            while not await _stored(center, 4242):
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stored(center: Any, agent_id: int) -> bool:
    async with center.sessions() as session:
        row = await session.scalar(select(AgentStateChange).where(
            AgentStateChange.agent_id == agent_id))
    return row is not None
