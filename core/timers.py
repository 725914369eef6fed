"""Timers kept in Redis, so they outlive the node that set them.

A timer is a member ``kind|ident|token`` of one sorted set scored by its due
time. Every node polls; claiming a due member moves its due time a lease into the
future (atomically, so one node gets it), and the member is removed only when its
handler finished. A node that dies holding a timer does not lose it: the lease runs
out and another node fires it. Handlers are written to be safe to run again.

A node's poll is one script: it removes the timers the node fired since its last poll,
claims the due ones and answers when the next one is due, so an idle node sleeps until
then (at most `TimerLoop.max_wait_s`, to see timers other nodes set meanwhile) instead of
asking every tenth of a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from core.redisconn import OUTAGES, log_failure

log = logging.getLogger(__name__)

# KEYS: the timer set. ARGV: now, limit, lease end for what is claimed now, lease end of
# the timers fired since the last poll, then those timers. A fired timer is removed
# unless its handler scheduled it again (its score moved off its lease). Answers the
# claimed members and the earliest due time left ("" when the set is empty).
_POLL = """
for i = 5, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[4]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or ''}
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


@dataclass(frozen=True)
class Poll:
    due: list[Timer]  # leased to the poller until it reports them fired (or the lease ends)
    next_due: float | None  # the earliest due time left in the set (a lease's end included)


class Timers:
    def __init__(self, redis: Redis, key: str, lease_s: float = LEASE_S) -> None:
        self.redis = redis
        self.key = key
        self.lease_s = lease_s
        self._poll = redis.register_script(_POLL)
        self._expecting: list[Callable[[float], None]] = []

    def on_expect(self, wake: Callable[[float], None]) -> None:
        """Call `wake(due)` whenever this node sets a timer (the timer loop's alarm)."""
        self._expecting.append(wake)

    def expect(self, due: float) -> None:
        """A timer due at `due` was set here by a script of the call path: a poller
        sleeping past it wakes up in time."""
        for wake in self._expecting:
            wake(due)

    async def schedule(self, timer: Timer, due: float) -> None:
        await self.redis.zadd(self.key, {timer.member: due})
        self.expect(due)

    async def schedule_many(self, due: Mapping[Timer, float]) -> None:
        if due:
            await self.redis.zadd(self.key, {timer.member: at for timer, at in due.items()})
            self.expect(min(due.values()))

    async def cancel(self, timer: Timer) -> None:
        await self.redis.zrem(self.key, timer.member)

    async def poll(self, now: float, fired: Sequence[Timer] = (), fired_claimed_at: float = 0.0,
                   limit: int = 100) -> Poll:
        """Report `fired` (claimed at `fired_claimed_at`) done, claim what is due at `now`."""
        due, first = await self._poll(keys=[self.key], args=[
            now, limit, self._lease(now), self._lease(fired_claimed_at),
            *(t.member for t in fired)])
        return Poll([Timer.parse(m) for m in due], float(first) if first else None)

    async def claim_due(self, now: float, limit: int = 100) -> list[Timer]:
        """Due timers, each leased to the caller until `done` (or the lease ends)."""
        return (await self.poll(now, limit=limit)).due

    async def done(self, timer: Timer, claimed_at: float) -> None:
        await self.poll(float("-inf"), [timer], claimed_at, limit=0)

    def _lease(self, now: float) -> str:
        return repr(float(now + self.lease_s))

    async def next_due(self) -> float | None:
        first = await self.redis.zrange(self.key, 0, 0, withscores=True)
        # Scores come back as floats (the default score_cast_func).
        return cast(float, first[0][1]) if first else None


Handler = Callable[[Timer], Awaitable[None]]


class TimerLoop:
    """Fires the due timers on this node: one poll per batch, sleeping until the next due
    time between them. `max_wait_s` bounds the sleep, so a timer that another node sets
    sooner than that is seen late by at most it; timers set here wake the loop."""

    def __init__(self, timers: Timers, handler: Handler, clock: Callable[[], float],
                 max_wait_s: float = 1.0) -> None:
        self.timers, self.handler, self.clock = timers, handler, clock
        self.max_wait_s = max_wait_s
        self.polls = 0
        self._alarm = asyncio.Event()
        self._wake_at = float("inf")  # while asleep: when it wakes up by itself
        self._soonest = float("inf")  # the earliest timer set here since the last poll
        timers.on_expect(self._expect)

    def _expect(self, due: float) -> None:
        self._soonest = min(self._soonest, due)
        if due < self._wake_at:
            self._alarm.set()

    async def run(self) -> None:
        """Poll and fire until cancelled."""
        fired: list[Timer] = []
        claimed_at = 0.0
        # Not `while True`: the Redis client can swallow a cancellation mid-command, and the
        # loop would run on; checking `cancelling()` lets shutdown finish anyway.
        while not asyncio.current_task().cancelling():  # type: ignore[union-attr]
            now = self.clock()
            self._soonest = float("inf")  # what is set from here on, the poll may not see
            try:
                polled = await self.timers.poll(now, fired, claimed_at)
            except OUTAGES as e:
                log.warning("timer poll failed: %s", e)
                await asyncio.sleep(1)
                continue
            self.polls += 1
            fired, claimed_at = await self._fire(polled.due), now
            if not polled.due:  # after a batch, poll at once: it reports them, and more may be due
                await self._sleep(polled.next_due)

    async def _fire(self, due: list[Timer]) -> list[Timer]:
        fired = []
        for timer in due:
            try:
                await self.handler(timer)
            except Exception:
                # A Redis timeout is one warning line, a fault an ERROR with its traceback;
                # either way the timer fires again after its lease (handlers may run twice).
                log_failure(log, "timer %s failed; it fires again after its lease",
                            timer.member)
                continue
            fired.append(timer)
        return fired

    async def _sleep(self, next_due: float | None) -> None:
        now = self.clock()
        wake_at = min(now + self.max_wait_s, self._soonest,
                      float("inf") if next_due is None else next_due)
        if wake_at <= now:
            return
        self._wake_at = wake_at
        self._alarm.clear()
        try:
            await asyncio.wait_for(self._alarm.wait(), wake_at - now)
        except TimeoutError:
            pass
        finally:
            self._wake_at = float("inf")
