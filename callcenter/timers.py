"""Timers kept in Redis, so they outlive the node that set them.

A timer is a member ``kind|ident|token`` of one sorted set scored by its due
time. Every node polls; whichever node removes a due member owns it (ZREM is
atomic), so each timer fires once.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZREM', KEYS[1], member) end
return due
"""


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

    async def schedule(self, timer: Timer, due: float) -> None:
        await self.redis.zadd(self.key, {timer.member: due})

    async def cancel(self, timer: Timer) -> None:
        await self.redis.zrem(self.key, timer.member)

    async def claim_due(self, now: float, limit: int = 100) -> list[Timer]:
        members = await self._claim(keys=[self.key], args=[now, limit])
        return [Timer.parse(m) for m in members]

    async def next_due(self) -> float | None:
        first = await self.redis.zrange(self.key, 0, 0, withscores=True)
        return first[0][1] if first else None
