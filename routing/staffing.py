"""Who is signed in to each routing pool, and who is serving it, kept in Redis by the same
Lua steps that change an agent's state.

- signed in (``Keys.pool_staff``): any state but logged out or not-ready because its
  console went away (``disconnected``). A ring whose pool has nobody signed in is skipped
  at once (``RoutingPolicy.skip_empty_rings``): no agent of it can free up in time.
- serving (``Keys.pool_serving``): available, ringing, on a call or in wrap-up, the
  agents a queue's wait estimate counts on (routing/estimate.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from redis.asyncio import Redis

from core.keys import Keys

# staffing(akey, pp, state, reason): put the agent in or out of its pools' sets for the
# state it is now in. pp: the pool key prefix (the sets are named as in core/keys.py).
# 'disconnected': the not-ready reason of an agent whose console went away (cti/agents.py).
STAFF_LIB = """
local SERVING = {available = true, ringing = true, on_call = true, wrap_up = true}
local function staffing(akey, pp, state, reason)
  local names = redis.call('HGET', akey, 'pools') or ''
  local id = redis.call('HGET', akey, 'id')
  local signed = state ~= 'logged_out' and not (state == 'not_ready' and reason == 'disconnected')
  for pool in string.gmatch(names, '[^;]+') do
    if signed then redis.call('SADD', pp .. 'staff:' .. pool, id)
    else redis.call('SREM', pp .. 'staff:' .. pool, id) end
    if SERVING[state] then redis.call('SADD', pp .. 'serving:' .. pool, id)
    else redis.call('SREM', pp .. 'serving:' .. pool, id) end
  end
end
"""

# repool(akey, agents, pp, id, pools, first): create or refresh an agent's live record
# (its pools may have changed with its skills): out of its old pools' sets, into its new
# ones as its state says, with the field/value pairs of ARGV from `first` on. A new agent
# starts logged out. agents: the set of agent ids; pp: the pool key prefix; pools: ";".
# Answers the agent's state.
REPOOL_LIB = STAFF_LIB + """
local function repool(akey, agents, pp, id, pools, first)
  for pool in string.gmatch(redis.call('HGET', akey, 'pools') or '', '[^;]+') do
    redis.call('ZREM', pp .. pool, id)
    redis.call('SREM', pp .. 'staff:' .. pool, id)
    redis.call('SREM', pp .. 'serving:' .. pool, id)
  end
  redis.call('HSET', akey, 'id', id, 'pools', pools)
  for i = first, #ARGV, 2 do redis.call('HSET', akey, ARGV[i], ARGV[i + 1]) end
  redis.call('HSETNX', akey, 'state', 'logged_out')
  redis.call('SADD', agents, id)
  local state = redis.call('HGET', akey, 'state')
  staffing(akey, pp, state, redis.call('HGET', akey, 'reason') or '')
  if state == 'available' then
    local idle = redis.call('HGET', akey, 'idle_since') or '0'
    for pool in string.gmatch(pools, '[^;]+') do redis.call('ZADD', pp .. pool, idle, id) end
  end
  return state
end
"""

# KEYS: agent hash, set of agent ids; ARGV: pool key prefix, agent id, pools (";"), then
# field/value pairs.
REGISTER_ROUTING_AGENT = REPOOL_LIB + """
repool(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], 4)
"""


class Staffing:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def signed_in(self, pools: Sequence[str]) -> dict[str, int]:
        """How many agents are signed in to each of these pools."""
        return await self._count(self.keys.pool_staff, pools)

    async def serving(self, pools: Sequence[str]) -> dict[str, int]:
        """How many agents are serving each of these pools (routing/estimate.py)."""
        return await self._count(self.keys.pool_serving, pools)

    async def empty(self, pools: Iterable[str]) -> frozenset[str]:
        """The pools nobody is signed in to."""
        counts = await self.signed_in(list(dict.fromkeys(pools)))
        return frozenset(pool for pool, n in counts.items() if n == 0)

    async def _count(self, key_of: Callable[[str], str], pools: Sequence[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.scard(key_of(pool))
            counts = await pipe.execute()
        return dict(zip(pools, (int(n) for n in counts), strict=True))
