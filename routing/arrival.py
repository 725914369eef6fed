"""A call's arrival in Redis: it joins its queue and, in the same step, takes the
longest-idle available agent of its open rings (the offer as one Lua step), and the
reservation of an agent for a waiting call on its own (a call looked at again).

The pieces are shared: `_RESERVE` and `_ENQUEUE` on their own (routing/store.py), and
`OFFER` doing both, so an arriving call is queued and reserved in one round trip, with
no moment in between when another node's freed agent could take it.
"""

from __future__ import annotations

from routing.queue_index import INDEX_LIB

# queued_notice(ckey, waiting prefix, stats, pending callbacks, pool prefix, the handle
# time to assume before any call was handled, call key prefix): where a waiting call
# stands and how long it will wait (routing/estimate.py: position x average handle time /
# agents serving the queue), noted on the call as announced, only while it waits (a call
# that hung up meanwhile gets no key back). Callbacks of its queue waiting for an agent
# with a better place (routing/callbacks.py) are ahead of it too.
# {1, queue, position, estimated wait (s), agents serving} | {0}
QUEUED_NOTICE_LIB = """
local function queued_notice(ckey, wp, stats, callbacks, pp, default_aht, cp)
  local call = redis.call('HMGET', ckey, 'state', 'queue', 'id', 'score')
  if call[1] ~= 'queued' then return {0} end
  local queue = call[2]
  local rank = redis.call('ZRANK', wp .. queue, call[3])
  if not rank then return {0} end
  local score, position = tonumber(call[4]), rank + 1
  for _, cb in ipairs(redis.call('ZRANGE', callbacks, 0, -1)) do
    local f = redis.call('HMGET', cp .. cb, 'state', 'queue', 'score')
    if f[1] == 'queued' and f[2] == queue and tonumber(f[3]) < score then
      position = position + 1
    end
  end
  local aht = tonumber(redis.call('HGET', stats, 'aht') or default_aht)
  local serving = redis.call('SCARD', pp .. 'serving:queue:' .. queue)
  local wait = math.floor(position * aht / math.max(1, serving) + 0.5)
  redis.call('HSET', ckey, 'announced_position', position, 'announced_wait', wait)
  return {1, queue, position, wait, serving}
end
"""

# enqueue(first): a new call joins its queue, unless a call with its id is live already
# (0) or its event was applied before ({2, what the event key holds}, as
# routing/transitions.py guard_call). The call notes when it joined the queue
# (`queued_at`) by Redis's clock, so every node's calls are stamped in the order they
# really joined; it joins the index of waiting calls by pool (routing/queue_index.py) in
# the same step. A call of a customer being erased (its mark set by privacy/erasure.py in
# the step that found them on no live call) is refused (3) and offered again as a new
# caller: erasure and offer have one winner. 1: queued.
# KEYS: call hash, waiting set, set of live calls, set of queues, event key, the erasing
# mark of the call's customer;
# ARGV: call id, score, queue, event key value ("" = none), its time to live, now, pool
# key prefix; from `first` on, field/value pairs of the call.
ENQUEUE_LIB = """
local function enqueue(first)
  if ARGV[4] ~= '' then
    local seen = redis.call('GET', KEYS[5])
    if seen then return {2, seen} end
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  if redis.call('EXISTS', KEYS[6]) == 1 then return 3 end
  -- the call's fields and when it joined, in one command (each command a script runs
  -- costs Redis about as much as a small command sent by a client)
  local t = redis.call('TIME')
  local fields = {unpack(ARGV, first)}
  fields[#fields + 1] = 'queued_at'
  fields[#fields + 1] = string.format('%d.%06d', t[1], t[2])
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('HSETNX', KEYS[1], 'seq', 1)  -- the offer's writes are the call's first
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  index_call(KEYS[1], ARGV[1], ARGV[6], ARGV[7])
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[3])
  if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[5]) end
  return 1
end
"""

# take(ckey, wkey, agent_id, now, ap, pp): the queued call of hash `ckey` (in waiting set
# `wkey`) and the agent move to ringing together, if the agent is available (else false).
# reserve_from(ckey, wkey, first, now, ap, pp): the first available agent of the pools
# KEYS[first..] in order: {1, agent id, pool key, agent after, call after}, or
# {0, 'no_agent'}. ap, pp: the agent and pool key prefixes.
RESERVE_LIB = """
local function take(ckey, wkey, agent_id, now, ap, pp)
  local akey = ap .. agent_id
  if redis.call('HGET', akey, 'state') ~= 'available' then return false end
  local pools = redis.call('HGET', akey, 'pools') or ''
  for pool in string.gmatch(pools, '[^;]+') do
    redis.call('ZREM', pp .. pool, agent_id)
  end
  local call_id = redis.call('HGET', ckey, 'id')
  redis.call('HSET', akey, 'state', 'ringing', 'reason', '', 'since', now, 'call_id', call_id)
  redis.call('HSET', ckey, 'state', 'ringing', 'agent_id', agent_id, 'ring_started', now)
  redis.call('ZREM', wkey, call_id)
  unindex_call(ckey, call_id, pp)
  return true
end
local function reserve_from(ckey, wkey, first, now, ap, pp)
  for i = first, #KEYS do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0)
    if head[1] then
      if take(ckey, wkey, head[1], now, ap, pp) then
        return {1, head[1], KEYS[i], redis.call('HGETALL', ap .. head[1]),
                redis.call('HGETALL', ckey)}
      end
      -- a stale member: drop it so the next decision does not trip over it
      redis.call('ZREM', KEYS[i], head[1])
    end
  end
  return {0, 'no_agent'}
end
"""

# Reserve one agent for one waiting call, atomically; answers the agent and the call as
# they are now, so the caller need not read them again.
# KEYS: call hash, waiting set of the call's queue, then candidate pool keys in order.
# ARGV: now, agent key prefix, pool key prefix, agent id ("" = take the first pool member).
RESERVE = INDEX_LIB + RESERVE_LIB + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return {0, 'call_not_queued'} end
if ARGV[4] ~= '' then
  if take(KEYS[1], KEYS[2], ARGV[4], ARGV[1], ARGV[2], ARGV[3]) then
    return {1, ARGV[4], '', redis.call('HGETALL', ARGV[2] .. ARGV[4]),
            redis.call('HGETALL', KEYS[1])}
  end
  return {0, 'agent_not_available'}
end
return reserve_from(KEYS[1], KEYS[2], 3, ARGV[1], ARGV[2], ARGV[3])
"""

# A new call joins its queue (enqueue above; KEYS and ARGV 1-7 as there).
ENQUEUE = INDEX_LIB + ENQUEUE_LIB + """
return enqueue(8)
"""

# The offer in one step: the call joins its queue and takes the first available agent of
# its open rings. Answers {1, agent id, pool key, agent after, call after} (reserved),
# {0, 'no_agent', queued notice} (queued; the notice as queued_notice answers it, {0}
# when ARGV[9] is ''), or the refusal of enqueue above as {4} (a call with this id is
# live), {2, event key value} (the event was applied before), {3} (the customer is being
# erased).
# KEYS: as enqueue, then stats, pending callbacks, then the pool keys of the open rings,
# innermost first;
# ARGV: as enqueue (1-7), then the agent key prefix, the waiting prefix ('': no notice),
# the handle time to assume, the call key prefix, then the call's field/value pairs.
OFFER = INDEX_LIB + ENQUEUE_LIB + RESERVE_LIB + QUEUED_NOTICE_LIB + """
local queued = enqueue(12)
if queued == 0 then return {4} end
if queued == 3 then return {3} end
if queued ~= 1 then return queued end
local reserved = reserve_from(KEYS[1], KEYS[2], 9, ARGV[6], ARGV[8], ARGV[7])
if reserved[1] == 1 or ARGV[9] == '' then return reserved end
return {0, 'no_agent', queued_notice(KEYS[1], ARGV[9], KEYS[7], KEYS[8], ARGV[7], ARGV[10],
                                     ARGV[11])}
"""
