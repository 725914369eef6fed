"""The index of waiting calls by pool: which calls an agent who frees up may take, exactly.

Beside each pool's sorted set of available agents (``Keys.pool``), ``Keys.pool_waiting``
holds the waiting calls whose ring of that pool is open, scored by priority. A ring that
is not open yet waits in ``Keys.ring_openings``, scored by when it opens, and moves into
its pool's index as soon as a decision needs it (an agent freeing up looks, or the call
is looked at again). A call enters the index in the same Lua step that puts it in its
queue, and leaves it in the step that takes it out (reserved, abandoned, dropped), so an
agent who frees up finds the best call it may take by looking at the head of each of its
pools' indexes: O(pools x log n), whatever the depth of the queues.

The Lua pieces are shared by the call path's scripts (routing/transitions.py,
routing/store.py); a callback waiting for an agent can join the same index under its own
id, with the rings it waits on.
"""

from __future__ import annotations

from typing import NamedTuple

from redis.asyncio import Redis

from core.keys import Keys

# A ring opens at `offered_at + opens_after_s` (routing/engine.py, the same epsilon).
INDEX_LIB = """
local RING_EPSILON = 1e-6
-- Each ring of a call's `rings` field: its pool and when it opens (seconds after the offer).
local function each_ring_of(rings)
  return string.gmatch(rings or '', '([^|;]+)|([^|;]*)|[^;]*')
end
local function each_ring(ckey)
  return each_ring_of(redis.call('HGET', ckey, 'rings'))
end
-- The call joins the index: open rings in their pools', the others in the openings.
-- pp: the pool key prefix. (One HMGET: every command a script runs costs Redis about as
-- much as a small command from a client.)
local function index_call(ckey, call_id, now, pp)
  local call = redis.call('HMGET', ckey, 'score', 'offered_at', 'rings')
  local score = call[1]
  local offered = tonumber(call[2] or now)
  local waited = tonumber(now) - offered
  for pool, opens in each_ring_of(call[3]) do
    local at = tonumber(opens) or 0
    if at <= waited + RING_EPSILON then
      redis.call('ZADD', pp .. 'waiting:' .. pool, score, call_id)
    else
      redis.call('ZADD', pp .. 'openings', offered + at, call_id .. '|' .. pool)
    end
  end
end
local function unindex_call(ckey, call_id, pp)
  for pool in each_ring(ckey) do
    redis.call('ZREM', pp .. 'waiting:' .. pool, call_id)
    redis.call('ZREM', pp .. 'openings', call_id .. '|' .. pool)
  end
end
-- Rings whose time has come move into their pools' indexes. cp: the call key prefix.
local function open_due_rings(now, pp, cp)
  local due = redis.call('ZRANGEBYSCORE', pp .. 'openings', '-inf', tonumber(now) + RING_EPSILON,
                         'LIMIT', 0, 1000)
  for _, member in ipairs(due) do
    local call_id, pool = string.match(member, '^(.*)|([^|]*)$')
    local score = redis.call('HGET', cp .. call_id, 'score')
    if score and redis.call('HGET', cp .. call_id, 'state') == 'queued' then
      redis.call('ZADD', pp .. 'waiting:' .. pool, score, call_id)
    end
    redis.call('ZREM', pp .. 'openings', member)
  end
end
-- An available agent takes the best waiting call it may take: the lowest score at the heads
-- of its pools' indexes, ties to the lower call id. Agent and call move to ringing together
-- (the agent out of its pools, the call out of its queue and the index). wp: the waiting-set
-- key prefix. The call id and the pool it was found in, or nil.
local function take_best(akey, now, pp, cp, wp)
  if redis.call('HGET', akey, 'state') ~= 'available' then return nil end
  open_due_rings(now, pp, cp)
  local names = redis.call('HGET', akey, 'pools') or ''
  local agent_id = redis.call('HGET', akey, 'id')
  while true do
    local best, best_score, best_pool = nil, nil, nil
    for pool in string.gmatch(names, '[^;]+') do
      local head = redis.call('ZRANGE', pp .. 'waiting:' .. pool, 0, 0, 'WITHSCORES')
      if head[1] then
        local score = tonumber(head[2])
        if best == nil or score < best_score or (score == best_score and head[1] < best) then
          best, best_score, best_pool = head[1], score, pool
        end
      end
    end
    if best == nil then return nil end
    local ckey = cp .. best
    if redis.call('HGET', ckey, 'state') == 'queued' then
      for pool in string.gmatch(names, '[^;]+') do redis.call('ZREM', pp .. pool, agent_id) end
      redis.call('HSET', akey, 'state', 'ringing', 'reason', '', 'since', now, 'call_id', best)
      redis.call('HSET', ckey, 'state', 'ringing', 'agent_id', agent_id, 'ring_started', now)
      redis.call('ZREM', wp .. redis.call('HGET', ckey, 'queue'), best)
      unindex_call(ckey, best, pp)
      return {best, best_pool}
    end
    -- not waiting any more (a step that should have taken it out did not know of the index)
    redis.call('ZREM', pp .. 'waiting:' .. best_pool, best)
  end
end
-- What a step that may have taken a call answers about it: {call id, pool, call after,
-- Redis time} or {}.
local function taken_reply(taken, cp)
  if not taken then return {} end
  local t = redis.call('TIME')
  return {taken[1], taken[2], redis.call('HGETALL', cp .. taken[1]),
          string.format('%d.%06d', t[1], t[2])}
end
"""

# A freed agent takes the best waiting call it may take, in one step (take_best above).
# KEYS: agent hash; ARGV: now, pool prefix, call prefix, waiting-set prefix.
# {agent after, taken (taken_reply)}
FREED_AGENT_TAKES_CALL = INDEX_LIB + """
local taken = take_best(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {redis.call('HGETALL', KEYS[1]), taken_reply(taken, ARGV[3])}
"""


class Taken(NamedTuple):
    call_id: str
    pool: str
    agent: dict[str, str]
    call: dict[str, str]
    seen_at: float  # Redis's clock when the agent looked


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def taken(agent: list[str], reply: list[str]) -> Taken | None:
    """The call a step took for an agent (Lua taken_reply), or None."""
    if not reply:
        return None
    return Taken(reply[0], reply[1], _pairs(agent), _pairs(reply[2]),  # type: ignore[arg-type]
                 float(reply[3]))


class QueueIndex:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.keys = keys
        self._take = redis.register_script(FREED_AGENT_TAKES_CALL)

    async def take_for(self, agent_id: int, now: float) -> Taken | None:
        """The best waiting call an available agent may take, reserved for it."""
        agent, reply = await self._take(keys=[self.keys.agent(agent_id)], args=[
            now, self.keys.pool(""), self.keys.call(""), self.keys.waiting("")])
        return taken(agent, reply)
