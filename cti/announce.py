"""Re-send `route.queued` when a waiting caller's position changes materially.

One node at a time (a short Redis lock) walks the queues every few seconds and tells
each PBX about its callers whose place in line moved enough to be worth announcing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from core.redisconn import OUTAGES
from cti.service import CallService

log = logging.getLogger(__name__)

# Positions beyond this depth are announced when they come within it.
ANNOUNCE_DEPTH = 500


def material(announced: int, position: int) -> bool:
    """Worth telling the caller: they are next, or moved at least 2 places and 20%."""
    if position == announced:
        return False
    if position == 1:
        return True
    return abs(announced - position) >= max(2, 0.2 * announced)


async def announce_positions(calls: CallService, interval: float = 3.0) -> None:
    redis, keys = calls.store.redis, calls.keys
    while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
        await asyncio.sleep(interval)
        try:
            if await redis.set(keys.lock("announce"), calls.node_id, nx=True,
                               px=int(interval * 900)):
                await _announce_all(calls)
        except OUTAGES as e:  # Redis away: try on the next round
            log.warning("queue announcements skipped: %s", e)


async def _announce_all(calls: CallService) -> None:
    store, keys = calls.store, calls.keys
    for queue in await store.queue_names():
        heads = cast(list[str], await store.redis.zrange(keys.waiting(queue), 0,
                                                         ANNOUNCE_DEPTH - 1))
        if not heads:
            continue
        async with store.redis.pipeline(transaction=False) as pipe:
            for call_id in heads:
                pipe.hmget(keys.call(call_id), "announced_position", "integration")
            rows = await pipe.execute()
        for position, (call_id, (announced, integration)) in enumerate(zip(heads, rows,
                                                                           strict=True), 1):
            if announced is None or integration is None:
                continue
            if material(int(announced), position):
                notice = await calls._queued_notice(call_id)
                if notice:  # it still waits
                    await calls.bus.publish(keys.telephony_channel(integration), notice)
