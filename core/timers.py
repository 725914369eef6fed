"""Timers kept in Redis, so they outlive the node that set them.

A timer is a member ``kind|ident|token`` of one sorted set scored by its due
time. Every node polls; claiming a due member moves its due time a lease into the
future (atomically, so one node gets it), and the member is removed only when its
handler finished. A node that dies holding a timer does not lose it: the lease runs
out and another node fires it. Handlers are written to be safe to run again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return due
"""

# Remove a fired timer unless its handler scheduled it again (its score moved).
_DONE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

LEASE_S = 30.0


@dataclass(frozen=True)
class Timer:
    kind: str
    ident: str
    token: str = ""

    @property
    def member(self) -> str:
        return f"{self.kind}|{self.ident}|{self.token}"

    @classmethod
    def parse(cls, member: str) -> Timer:
        kind, ident, token = member.split("|", 2)
        return cls(kind, ident, token)


class Timers:
    def __init__(self, redis: Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)

    async def schedule(self, timer: Timer, due: float) -> None:
        await self.redis.zadd(self.key, {timer.member: due})

    async def schedule_many(self, due: Mapping[Timer, float]) -> None:
        if due:
            await self.redis.zadd(self.key, {timer.member: at for timer, at in due.items()})

    async def cancel(self, timer: Timer) -> None:
        await self.redis.zrem(self.key, timer.member)

    async def claim_due(self, now: float, limit: int = 100) -> list[Timer]:
        """Due timers, each leased to the caller until `done` (or the lease ends)."""
        members = await self._claim(keys=[self.key], args=[now, limit, _lease(now)])
        return [Timer.parse(m) for m in members]

    async def done(self, timer: Timer, claimed_at: float) -> None:
        await self._done(keys=[self.key], args=[timer.member, _lease(claimed_at)])

    async def next_due(self) -> float | None:
        first = await self.redis.zrange(self.key, 0, 0, withscores=True)
        # Scores come back as floats (the default score_cast_func).
        return cast(float, first[0][1]) if first else None


def _lease(now: float) -> str:
    return repr(float(now + LEASE_S))
