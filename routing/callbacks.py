"""Queue callbacks in the live state: a caller who leaves the line keeps their place.

A callback waits under its own id (``cb-...``) among the calls (``Keys.call``), with the
priority score, rings and offer time of the call it replaced, so the index of waiting
calls (routing/queue_index.py) picks it exactly as it picks a waiting call: an agent who
frees up takes it when it is the best call it may take. It is not in its queue's waiting
set (callers on the line are counted there) nor in the set of live calls; the sorted set
``Keys.callbacks`` holds every pending one, scored by when it was requested.

    scheduled --due--> queued --agent reserved--> ringing (dialling)
    ringing --connected--> connected (then a call: call.ended, wrap-up)
    ringing --no_answer|busy|failed--> scheduled (retry) | gone (failed, attempts used)

Each change is one Lua step that checks the state it expects and answers whether it won,
so a callback is dialled by one node only, and one result counts.
"""

from __future__ import annotations

from typing import NamedTuple, cast

from redis.asyncio import Redis

from core.keys import Keys
from routing.store import EventSeen
from routing.transitions import LIB

# callback.requested: the waiting call leaves its queue (its hash says `callback` for a
# day) and the callback takes its place.
# KEYS: call, callback, event key, live calls, pending callbacks, timers;
# ARGV: callback id, number, now, due ("" = now), event value, its TTL, pool prefix,
# waiting prefix, due timer member, screen-pop (JSON), then field/value pairs.
# {1, call before, the number of its writes} | {0, state} | {2, seen}
REQUEST = LIB + """
local was = seen(KEYS[3], ARGV[5])
if was then return {2, was} end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'unknown'} end
if state ~= 'queued' then return {0, state} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0, 'callback_exists'} end

local seq = next_seq(KEYS[1])  -- the number of the call's last writes (converted)
local call = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #call, 2 do f[call[i]] = call[i + 1] end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'kind', 'callback', 'call_id', f['id'],
           'number', ARGV[2], 'queue', f['queue'], 'score', f['score'], 'rings', f['rings'],
           'offered_at', f['offered_at'], 'tier', f['tier'] or 'standard',
           'integration', f['integration'] or '', 'customer_id', f['customer_id'] or '',
           'ani', ARGV[2], 'pop', ARGV[10], 'attempts', 0, 'requested_at', ARGV[3],
           'due_at', ARGV[4] ~= '' and ARGV[4] or ARGV[3], unpack(ARGV, 11))
drop(KEYS[1], f['id'], ARGV[8], KEYS[4], ARGV[7])
-- what the call became, for the events still to come about it (call.ended, a second
-- request) until the record says it
redis.call('HSET', KEYS[1], 'id', f['id'], 'state', 'callback', 'callback_id', ARGV[1],
           'integration', f['integration'] or '')
redis.call('EXPIRE', KEYS[1], ARGV[6])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'state', 'scheduled')
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[9])
else
  redis.call('HSET', KEYS[2], 'state', 'queued', 'queued_at', clock())
  index_call(KEYS[2], ARGV[1], ARGV[3], ARGV[7])
end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
mark(KEYS[3], ARGV[5], ARGV[6], seq)
return {1, call, seq}
"""

# A new callback with no call before it (scheduled by an agent or the win-back action).
# KEYS: callback, pending callbacks, timers; ARGV: callback id, due, now, due timer
# member, then field/value pairs. 1 | 0 (the id is taken)
SCHEDULE = LIB + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', 'callback', 'state', 'scheduled',
           'attempts', 0, 'requested_at', ARGV[3], 'due_at', ARGV[2], unpack(ARGV, 5))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# Its time came (not_before, a retry): scheduled -> queued, into the index.
# KEYS: callback; ARGV: callback id, now, pool prefix. 1 | 0
DUE = LIB + """
if redis.call('HGET', KEYS[1], 'state') ~= 'scheduled' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at', clock())
index_call(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""

# callback.result (or the attempt's timer): the attempt of the agent it rang ends.
# KEYS: callback, event key, agent, timers, pending callbacks, live calls (a connected
# callback is a live call); ARGV: callback id, outcome, event value, its TTL, now, pool
# prefix, attempt timer, retry timer, retry due, max attempts, the agent after ("" =
# free, else a not-ready reason), expected agent ("" = whichever), expected attempts
# so far ("" = any).
# {1, 'connected'|'retry'|'failed', callback after, agent after} | {0, state} | {2, seen}
RESULT = LIB + """
local was = seen(KEYS[2], ARGV[3])
if was then return {2, was} end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'unknown'} end
if state ~= 'ringing' then return {0, state} end
local agent = redis.call('HGET', KEYS[1], 'agent_id') or ''
if ARGV[12] ~= '' and agent ~= ARGV[12] then return {0, 'ringing'} end
if ARGV[13] ~= '' and (redis.call('HGET', KEYS[1], 'attempts') or '0') ~= ARGV[13] then
  return {0, 'ringing'}
end
-- A connected callback is a call whose rows are written now, as an offer's are (their
-- first number); its later steps number theirs from here. Other outcomes write only the
-- callback's row, which is not numbered (0).
local seq = 0
if ARGV[2] == 'connected' then
  redis.call('HSET', KEYS[1], 'seq', 1)
  seq = 1
end
mark(KEYS[2], ARGV[3], ARGV[4], seq)
redis.call('ZREM', KEYS[4], ARGV[7])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_outcome', ARGV[2])
local holds_it = holds(KEYS[3], ARGV[1])
if ARGV[2] == 'connected' then
  redis.call('HSET', KEYS[1], 'state', 'connected', 'answered_at', ARGV[5])
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('SADD', KEYS[6], ARGV[1])
  if holds_it then go_unavailable(KEYS[3], 'on_call', '', ARGV[5], ARGV[6]) end
  return {1, 'connected', redis.call('HGETALL', KEYS[1]), agent_of(KEYS[3])}
end
if holds_it then
  if ARGV[11] == '' then after_call(KEYS[3], ARGV[5], ARGV[6])
  else
    go_unavailable(KEYS[3], 'not_ready', ARGV[11], ARGV[5], ARGV[6])
    redis.call('HSET', KEYS[3], 'call_id', '')
  end
end
local after = redis.call('HGETALL', KEYS[1])
if attempts < tonumber(ARGV[10]) then
  redis.call('HSET', KEYS[1], 'state', 'scheduled', 'agent_id', '', 'due_at', ARGV[9])
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
  return {1, 'retry', redis.call('HGETALL', KEYS[1]), agent_of(KEYS[3])}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return {1, 'failed', after, agent_of(KEYS[3])}
"""

# A pending callback is withdrawn (cancelled, or moved to another agent or time). Only a
# callback that is not being dialled: scheduled or queued. KEYS: callback, pending
# callbacks, timers; ARGV: callback id, pool prefix, due timer member, new due ("" =
# cancel), then field/value pairs to set when moved. {1, callback before} | {0, state}
WITHDRAW = LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'unknown'} end
if state ~= 'scheduled' and state ~= 'queued' then return {0, state} end
local before = redis.call('HGETALL', KEYS[1])
unindex_call(KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {1, before}
end
redis.call('HSET', KEYS[1], 'state', 'scheduled', 'due_at', ARGV[4], unpack(ARGV, 5))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return {1, before}
"""


class Result(NamedTuple):
    """The outcome of an attempt: whether this caller decided it, what became of the
    callback ('connected', 'retry', 'failed'; or its state when it lost), the callback
    after (as it ended, when it failed) and its agent after."""

    won: bool
    state: str
    callback: dict[str, str]
    agent: dict[str, str]


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flat(fields: dict[str, str | int | float]) -> list[str | int | float]:
    return [x for pair in fields.items() for x in pair]


class CallbackStore:
    def __init__(self, redis: Redis, keys: Keys, timers_key: str) -> None:
        self.redis = redis
        self.keys = keys
        self.timers_key = timers_key
        self._request = redis.register_script(REQUEST)
        self._schedule = redis.register_script(SCHEDULE)
        self._due = redis.register_script(DUE)
        self._result = redis.register_script(RESULT)
        self._withdraw = redis.register_script(WITHDRAW)

    @property
    def _pools(self) -> str:
        return self.keys.pool("")

    async def request(self, call_id: str, callback_id: str, number: str, now: float,
                      due: float | None, pop: str, due_timer: str,
                      event: tuple[str, bytes], ttl: int,
                      **fields: str | int | float) -> tuple[bool, str | dict[str, str], int]:
        """The waiting call becomes the callback: (True, the call before, the number of
        the call's writes) or (False, the call's state now, 0). Raises EventSeen when the
        event was applied before."""
        keys = [self.keys.call(call_id), self.keys.call(callback_id), event[0],
                self.keys.calls, self.keys.callbacks, self.timers_key]
        result = await self._request(keys=keys, args=[
            callback_id, number, now, "" if due is None else due, event[1], ttl,
            self._pools, self.keys.waiting(""), due_timer, pop, *_flat(fields)])
        if result[0] == 2:
            raise EventSeen(result[1])
        if result[0] == 1:
            return True, _pairs(result[1]), int(result[2])
        return False, result[1], 0

    async def schedule(self, callback_id: str, due: float, now: float, due_timer: str,
                       **fields: str | int | float) -> bool:
        keys = [self.keys.call(callback_id), self.keys.callbacks, self.timers_key]
        return bool(await self._schedule(keys=keys, args=[
            callback_id, due, now, due_timer, *_flat(fields)]))

    async def due(self, callback_id: str, now: float) -> bool:
        return bool(await self._due(keys=[self.keys.call(callback_id)],
                                    args=[callback_id, now, self._pools]))

    async def result(self, callback_id: str, agent_id: int | None, outcome: str, now: float,
                     *, attempt_timer: str, retry_timer: str, retry_due: float,
                     max_attempts: int, event: tuple[str, bytes] | None = None,
                     ttl: int = 0, agent_after: str = "", expect_agent: str = "",
                     expect_attempts: str = "") -> Result:
        keys = [self.keys.call(callback_id), event[0] if event else self.keys.call(callback_id),
                self.keys.agent("" if agent_id is None else agent_id), self.timers_key,
                self.keys.callbacks, self.keys.calls]
        result = await self._result(keys=keys, args=[
            callback_id, outcome, event[1] if event else "", ttl, now, self._pools,
            attempt_timer, retry_timer, retry_due, max_attempts, agent_after, expect_agent,
            expect_attempts])
        if result[0] == 2:
            raise EventSeen(result[1])
        if result[0] == 0:
            return Result(False, result[1], {}, {})
        return Result(True, result[1], _pairs(result[2]), _pairs(result[3]))

    async def withdraw(self, callback_id: str, due_timer: str, due: float | None = None,
                       **fields: str | int | float) -> tuple[bool, str | dict[str, str]]:
        """Cancel (due None) or move a pending callback: (True, before) or (False, state)."""
        keys = [self.keys.call(callback_id), self.keys.callbacks, self.timers_key]
        result = await self._withdraw(keys=keys, args=[
            callback_id, self._pools, due_timer, "" if due is None else due, *_flat(fields)])
        return (True, _pairs(result[1])) if result[0] == 1 else (False, result[1])

    async def get(self, callback_id: str) -> dict[str, str]:
        row = cast(dict[str, str], await self.redis.hgetall(self.keys.call(callback_id)))
        return row if row.get("kind") == "callback" else {}

    async def pending(self) -> list[dict[str, str]]:
        """Every pending callback, oldest request first."""
        ids = cast(list[str], await self.redis.zrange(self.keys.callbacks, 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for callback_id in ids:
                pipe.hgetall(self.keys.call(callback_id))
            rows = await pipe.execute()
        return [row for row in rows if row]

    async def waiting(self) -> tuple[int, float | None]:
        """How many callbacks are pending, and when the oldest was requested."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.callbacks)
            pipe.zrange(self.keys.callbacks, 0, 0, withscores=True)
            count, first = await pipe.execute()
        return int(count), (float(first[0][1]) if first else None)
