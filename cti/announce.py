"""Re-send `route.queued` when a waiting caller's position or estimated wait changes
materially.

One node at a time (a short Redis lock) walks the queues every few seconds and tells
each PBX about its callers whose place in line, or whose estimated wait (routing/estimate.py:
at least 30 s and 25%), moved enough to be worth announcing.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import defaultdict
from typing import cast

from core.redisconn import OUTAGES
from cti.service import CallService
from routing import engine
from routing.estimate import estimated_wait_s, wait_moved

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


def due(announced: tuple[str | None, str | None], position: int, estimate_s: int) -> bool:
    """Worth announcing again: the position or the estimated wait moved materially."""
    position_said, wait_said = announced
    if position_said is None:
        return False  # never announced: its first notice is on its way
    return material(int(position_said), position) or (
        wait_said is not None and wait_moved(float(wait_said), estimate_s))


async def _announce_all(calls: CallService) -> None:
    store = calls.store
    aht = await store.average_handle_s()
    ahead = await _callbacks_by_queue(calls)
    for queue in await store.queue_names():
        pool = engine.queue_pool(queue)
        serving = (await store.staffing.serving([pool]))[pool]
        await _announce_queue(calls, queue, aht, serving, ahead[queue])


async def _callbacks_by_queue(calls: CallService) -> dict[str, list[float]]:
    """The places (scores, sorted) of the callbacks waiting for an agent, by queue: a
    caller on the line behind one counts it (as QUEUED_NOTICE does)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for row in await calls.callbacks.pending():
        if row.get("state") == "queued" and "score" in row:
            scores[row.get("queue", "")].append(float(row["score"]))
    for queue_scores in scores.values():
        queue_scores.sort()
    return scores


async def _announce_queue(calls: CallService, queue: str, aht: float | None,
                          serving: int, callbacks: list[float]) -> None:
    redis, keys = calls.store.redis, calls.keys
    scored = cast(list[tuple[str, float]], await redis.zrange(
        keys.waiting(queue), 0, ANNOUNCE_DEPTH - 1, withscores=True))
    if not scored:
        return
    heads = [call_id for call_id, _ in scored]
    async with redis.pipeline(transaction=False) as pipe:
        for call_id in heads:
            pipe.hmget(keys.call(call_id), "announced_position", "announced_wait",
                       "integration")
        rows = await pipe.execute()
    for rank, ((call_id, score), (said, wait, integration)) in enumerate(
            zip(scored, rows, strict=True), 1):
        position = rank + bisect.bisect_left(callbacks, score)
        if integration is None or not due((said, wait), position,
                                          estimated_wait_s(position, aht, serving)):
            continue
        notice = await calls._queued_notice(call_id)
        if notice:  # it still waits
            await calls.bus.publish(keys.telephony_channel(integration), notice)
