"""Requests answered once by their event id: a `call.control` frame sent again (a console
that lost its connection before the answer, then resent it, perhaps to another node) is
given the answer of the first and acts once.

The first request claims its key (`SET NX`, "pending") and stores its answer there when it
has one; a resend finds the answer, or waits for it while the first is still pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from core.keys import Keys

log = logging.getLogger(__name__)

PENDING = b"pending"
# How long an answer is kept for resends.
KEEP_S = 3600
# How often a resend looks for the first request's answer while it is pending.
POLL_S = 0.1


class Once:
    def __init__(self, redis: Redis, keys: Keys, wait_s: float) -> None:
        self.redis, self.keys, self.wait_s = redis, keys, wait_s

    async def run(self, who: str, event_id: str,
                  work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """`work`'s answer, computed once for (`who`, `event_id`) however often asked."""
        key = self.keys.control_request(who, event_id)
        claimed = await self.redis.set(key, PENDING, nx=True, ex=int(self.wait_s) + KEEP_S)
        if not claimed:
            return await self._answer_of(key)
        try:
            answer = await work()
        except BaseException:
            await self.redis.delete(key)  # not answered: a resend may try again
            raise
        await self.redis.set(key, orjson.dumps(answer), ex=KEEP_S)
        return answer

    async def _answer_of(self, key: str) -> dict[str, Any]:
        """The first request's answer, once it has one (within the command's timeout)."""
        try:
            return await self._poll(key)
        except TimeoutError:
            return {"type": "error", "code": "control_timeout",
                    "message": "the first request with this event_id is still unanswered"}

    async def _poll(self, key: str) -> dict[str, Any]:
        async with asyncio.timeout(self.wait_s):
            while True:
                value = await self.redis.get(key)
                if value is None:
                    return {"type": "error", "code": "request_lost",
                            "message": "the first request with this event_id was not "
                                       "answered; send it again"}
                raw = value if isinstance(value, bytes) else value.encode()
                if raw != PENDING:
                    answer: dict[str, Any] = orjson.loads(raw)
                    return answer
                await asyncio.sleep(POLL_S)
