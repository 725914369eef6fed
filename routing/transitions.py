"""The call path's transitions as Lua scripts: each moves a call and its agent together in
one step, checking the state it expects first, and answers whether it won.

Only the winner of a transition writes records, publishes and counts; a loser finds the
state moved on and does nothing. Used through RoutingStore (routing/store.py).
"""

from __future__ import annotations

from routing.arrival import QUEUED_NOTICE_LIB
from routing.queue_index import INDEX_LIB
from routing.staffing import STAFF_LIB

# The prologue and epilogue of an event's step on a call: whether the event was applied
# before (its key), whether the call is in a state the event may move it from, and the
# writes the event owes kept under its key with their number.
CALL_GUARD_LIB = """
local function seen(key, value)
  if value ~= '' then return redis.call('GET', key) end
  return false
end
-- {2, what the event key holds} when the event was applied before; {0, state now
-- ('unknown': gone)} when the call is in none of `allowed` (';'); else nil and the state.
local function guard_call(ckey, ekey, event, allowed)
  local was = seen(ekey, event)
  if was then return {2, was} end
  local state = redis.call('HGET', ckey, 'state')
  if not state then return {0, 'unknown'} end
  for s in string.gmatch(allowed, '[^;]+') do if s == state then return nil, state end end
  return {0, state}
end
-- The number of the call's next write (`seq`): the record writer applies a call's writes
-- in this order, whichever node stores them first (core/sequenced.py).
local function next_seq(ckey) return redis.call('HINCRBY', ckey, 'seq', 1) end
-- Keep an event's owed writes under its key, with their number ("<seq> <writes>").
local function mark(key, value, ttl, seq)
  if value ~= '' then redis.call('SET', key, seq .. ' ' .. value, 'EX', ttl) end
end
"""

# Helpers every script below starts with. An agent's pools are ";"-separated pool names.
LIB = INDEX_LIB + STAFF_LIB + CALL_GUARD_LIB + """
local function pools(akey, prefix, add, score)
  local names = redis.call('HGET', akey, 'pools') or ''
  local id = redis.call('HGET', akey, 'id')
  for pool in string.gmatch(names, '[^;]+') do
    if add then redis.call('ZADD', prefix .. pool, score, id)
    else redis.call('ZREM', prefix .. pool, id) end
  end
end
local function go_available(akey, now, prefix)
  redis.call('HSET', akey, 'state', 'available', 'reason', '', 'since', now,
             'idle_since', now, 'call_id', '', 'after_wrap', '', 'after_wrap_reason', '',
             'after_wrap_by', '')
  pools(akey, prefix, true, now)
  staffing(akey, prefix, 'available', '')
end
local function go_unavailable(akey, state, reason, now, prefix)
  pools(akey, prefix, false)
  redis.call('HSET', akey, 'state', state, 'reason', reason, 'since', now)
  staffing(akey, prefix, state, reason)
end
-- An agent leaves its call: available, or the state it chose (or its console's absence,
-- or a supervisor: `after_wrap_by`, kept as `by` of the new state) for after the call.
local function after_call(akey, now, prefix)
  local after = redis.call('HGET', akey, 'after_wrap') or ''
  local by = redis.call('HGET', akey, 'after_wrap_by') or ''
  if after == '' or after == 'available' then go_available(akey, now, prefix)
  else
    local reason = redis.call('HGET', akey, 'after_wrap_reason') or ''
    go_unavailable(akey, after, reason, now, prefix)
    redis.call('HSET', akey, 'call_id', '', 'after_wrap', '', 'after_wrap_reason', '',
               'after_wrap_by', '')
  end
  if after ~= '' and by ~= '' then redis.call('HSET', akey, 'by', by, 'by_since', now) end
end
-- States in which the caller is with its agent (held, consulting or in conference too).
local WITH_AGENT = {connected = true, on_hold = true, consult_ringing = true,
                    consulting = true, conference = true}
local function holds(akey, call_id)
  return redis.call('HGET', akey, 'call_id') == call_id
end
local function agent_of(akey)
  if redis.call('EXISTS', akey) == 0 then return {} end
  return redis.call('HGETALL', akey)
end
-- Now by Redis's clock: when a call joins a queue, in the order calls really join.
local function clock()
  local t = redis.call('TIME')
  return string.format('%d.%06d', t[1], t[2])
end
local function drop(ckey, call_id, waiting_prefix, calls, pool_prefix)
  local queue = redis.call('HGET', ckey, 'queue') or ''
  redis.call('ZREM', waiting_prefix .. queue, call_id)
  unindex_call(ckey, call_id, pool_prefix)
  redis.call('SREM', calls, call_id)
  redis.call('DEL', ckey)
end
"""

# call.answered. KEYS: call, event key, agent, timers; ARGV: agent id, event value, its
# TTL, now, ring-no-answer timer, pool prefix, then call field/value pairs.
# {1, state before, agent after, write number} | {0, state} | {3, agent the call rings} |
# {2, seen}
ANSWER = LIB + """
local refused, state = guard_call(KEYS[1], KEYS[2], ARGV[2], 'ringing')
if refused then return refused end
local ringing = redis.call('HGET', KEYS[1], 'agent_id') or ''
if ringing ~= ARGV[1] then return {3, ringing} end
redis.call('HSET', KEYS[1], 'state', 'connected', unpack(ARGV, 7))
local seq = next_seq(KEYS[1])
mark(KEYS[2], ARGV[2], ARGV[3], seq)
redis.call('ZREM', KEYS[4], ARGV[5])
local call_id = redis.call('HGET', KEYS[1], 'id')
if holds(KEYS[3], call_id) then go_unavailable(KEYS[3], 'on_call', '', ARGV[4], ARGV[6]) end
return {1, state, agent_of(KEYS[3]), seq}
"""

# Ring-no-answer: the call goes back to its queue, the agent not-ready 'missed'.
# KEYS: call, agent, set of queues; ARGV: agent id, now, pool prefix, waiting prefix.
# {1, call after, agent after} | {0}
RING_NO_ANSWER = LIB + """
if redis.call('HGET', KEYS[1], 'state') ~= 'ringing'
   or redis.call('HGET', KEYS[1], 'agent_id') ~= ARGV[1] then return {0} end
local queue = redis.call('HGET', KEYS[1], 'queue')
local call_id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'state', 'queued', 'agent_id', '', 'queued_at', clock())
redis.call('ZADD', ARGV[4] .. queue, redis.call('HGET', KEYS[1], 'score'), call_id)
index_call(KEYS[1], call_id, ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], queue)
if holds(KEYS[2], call_id) then
  go_unavailable(KEYS[2], 'not_ready', 'missed', ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[2], 'call_id', '')
end
return {1, redis.call('HGETALL', KEYS[1]), agent_of(KEYS[2])}
"""

# call.ended. A call with its agent (connected, held, consulting, in conference) goes to
# wrap-up with its agent (wrap-up timer started), and a consulted agent leaves it; any
# other call is abandoned: out of Redis, its ringing agent freed.
# KEYS: call, event key, agent (or the call again), timers, set of live calls, the
# consulted agent (or the call again), then keys whose existence the step reports;
# ARGV: expected state, expected agent id ("" = none), event value, its TTL, now, pool
# prefix, waiting prefix, wrap-up end, wrap-up timer, ring-no-answer timer, then call
# field/value pairs. {1, state before, agent after, write number, consulted agent after
# ({}: none), 1 when one of the reported keys exists} | {0, state now} | {2, seen}
HANG_UP = LIB + """
-- 1 when any of KEYS[7..] exists (what else follows the call: its monitor, its pending
-- PBX commands), looked at in this step: nothing can start following an ended call.
local function watched()
  if #KEYS < 7 then return 0 end
  if redis.call('EXISTS', unpack(KEYS, 7)) > 0 then return 1 end
  return 0
end
local refused, state = guard_call(KEYS[1], KEYS[2], ARGV[3], ARGV[1])
if refused then return refused end
local call = redis.call('HMGET', KEYS[1], 'agent_id', 'id')
local agent = call[1] or ''
if agent ~= ARGV[2] then return {0, state} end
local call_id = call[2]
local seq = next_seq(KEYS[1])
mark(KEYS[2], ARGV[3], ARGV[4], seq)
if WITH_AGENT[state] and agent ~= '' then
  local consulted = redis.call('HGET', KEYS[1], 'consult_agent') or ''
  redis.call('HSET', KEYS[1], 'state', 'wrap_up', 'wrap_until', ARGV[8], 'wrap_agent', agent,
             'consult_agent', '', unpack(ARGV, 11))
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  if holds(KEYS[3], call_id) then
    go_unavailable(KEYS[3], 'wrap_up', '', ARGV[5], ARGV[6])
    redis.call('ZADD', KEYS[4], ARGV[8], ARGV[9])
  end
  local other = {}
  if consulted ~= '' and redis.call('HGET', KEYS[6], 'id') == consulted
     and holds(KEYS[6], call_id) then
    after_call(KEYS[6], ARGV[5], ARGV[6])
    other = agent_of(KEYS[6])
  end
  return {1, state, agent_of(KEYS[3]), seq, other, watched()}
end
drop(KEYS[1], call_id, ARGV[7], KEYS[5], ARGV[6])
if agent == '' then return {1, state, {}, seq, {}, watched()} end
redis.call('ZREM', KEYS[4], ARGV[10])
if holds(KEYS[3], call_id) then after_call(KEYS[3], ARGV[5], ARGV[6]) end
return {1, state, agent_of(KEYS[3]), seq, {}, watched()}
"""

# call.transferred (of a connected or held call): the call goes back into routing
# (keeping its place in time), its agent into wrap-up. KEYS: call, event key, agent (or
# the call again), timers, set of queues; ARGV: expected agent id, event value, its TTL,
# now, pool prefix, waiting prefix, queue, score, wrap-up end, wrap-up timer, the call's
# version as read ('': any), then call field/value pairs. The version makes the fields
# decided from the read (a pause closed, the legs) apply only to the call as read: a step
# in between (a `recording.paused`) makes this one stale, to be decided again.
# {1, state before, agent after, write number} | {0, state now} | {2, seen} | {3, stale}
TRANSFER = LIB + """
local refused, state = guard_call(KEYS[1], KEYS[2], ARGV[2], 'connected;on_hold')
if refused then return refused end
if ARGV[11] ~= '' and (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[11] then
  return {3, state}
end
local agent = redis.call('HGET', KEYS[1], 'agent_id') or ''
if agent ~= ARGV[1] then return {0, state} end
local call_id = redis.call('HGET', KEYS[1], 'id')
local seq = next_seq(KEYS[1])
mark(KEYS[2], ARGV[2], ARGV[3], seq)
redis.call('HSET', KEYS[1], 'state', 'queued', 'queue', ARGV[7], 'score', ARGV[8],
           'agent_id', '', 'queued_at', clock(), unpack(ARGV, 12))
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('ZADD', ARGV[6] .. ARGV[7], ARGV[8], call_id)
index_call(KEYS[1], call_id, ARGV[4], ARGV[5])
redis.call('SADD', KEYS[5], ARGV[7])
if agent ~= '' and holds(KEYS[3], call_id) then
  redis.call('HSET', KEYS[1], 'wrap_until', ARGV[9], 'wrap_agent', agent)
  go_unavailable(KEYS[3], 'wrap_up', '', ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[10])
end
return {1, state, agent_of(KEYS[3]), seq}
"""

# The end of an agent's wrap-up of a call (wrapup.done or its timer): the call ends (out
# of Redis; the average handle time moves) if it is still in wrap-up, and the agent leaves
# it (if it still holds it); an agent that leaves it available takes the best waiting call
# it may take in the same step (queue_index.py take_best), so a wrap-up's end is one round
# trip. KEYS: agent, call, timers, set of live calls, stats; ARGV: call id, now, pool
# prefix, waiting prefix, wrap-up timer, agent id, call prefix, strict ("1": only if the
# call is in this agent's wrap-up, else nothing changes and {0} -- wrapup.done's first try).
# {1, call before ({} when it had moved on), agent after leaving the call ({} when it had),
# taken (taken_reply), agent after taking it ({} when it took none)} | {0}: the wrap-up
# was over already.
END_WRAP_UP = LIB + """
local agent_holds = redis.call('HGET', KEYS[1], 'state') == 'wrap_up' and holds(KEYS[1], ARGV[1])
local call_wraps = redis.call('HGET', KEYS[2], 'state') == 'wrap_up'
  and redis.call('HGET', KEYS[2], 'wrap_agent') == ARGV[6]
if not agent_holds and not call_wraps then return {0} end
if ARGV[8] == '1' and not call_wraps then return {0} end
local call = {}
if call_wraps then
  next_seq(KEYS[2])  -- the call's end is written with the number (`seq`) it answers
  call = redis.call('HGETALL', KEYS[2])
  local answered = tonumber(redis.call('HGET', KEYS[2], 'answered_at') or ARGV[2])
  local handle = tonumber(ARGV[2]) - answered
  local old = tonumber(redis.call('HGET', KEYS[5], 'aht') or handle)
  redis.call('HSET', KEYS[5], 'aht', string.format('%.2f', 0.9 * old + 0.1 * handle))
  drop(KEYS[2], ARGV[1], ARGV[4], KEYS[4], ARGV[3])
end
redis.call('ZREM', KEYS[3], ARGV[5])
if not agent_holds then return {1, call, {}, {}, {}} end
after_call(KEYS[1], ARGV[2], ARGV[3])
local agent = agent_of(KEYS[1])
local taken = take_best(KEYS[1], ARGV[2], ARGV[3], ARGV[7], ARGV[4])
if not taken then return {1, call, agent, {}, {}} end
return {1, call, agent, taken_reply(taken, ARGV[7]), redis.call('HGETALL', KEYS[1])}
"""

# An agent's own state change; an agent going available takes the best waiting call it
# may take in the same step (routing/queue_index.py take_best). KEYS: agent; ARGV: state,
# reason, now, pool prefix, call prefix, waiting-set prefix.
# {1, state before, agent after, taken (taken_reply)} | {2, 'wrap_up'}: kept for after
# the wrap-up | {0, state}: busy with a call | {-1}: unknown agent
SET_STATE = LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, 'unknown'} end
if state == 'wrap_up' and (redis.call('HGET', KEYS[1], 'call_id') or '') ~= '' then
  redis.call('HSET', KEYS[1], 'after_wrap', ARGV[1], 'after_wrap_reason', ARGV[2],
             'after_wrap_by', '')
  return {2, state}
end
if state == 'ringing' or state == 'on_call' then return {0, state} end
local took = nil
if ARGV[1] == 'available' then
  go_available(KEYS[1], ARGV[3], ARGV[4])
  took = take_best(KEYS[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
else go_unavailable(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
return {1, state, redis.call('HGETALL', KEYS[1]), taken_reply(took, ARGV[5])}
"""

# No console of the agent is connected: not-ready now if available, after its call if
# busy. KEYS: agent; ARGV: reason, now, pool prefix.
# {1, agent after} | {2}: not-ready kept for after the call | {0}: nothing to do
CONSOLE_GONE = LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'available' then
  go_unavailable(KEYS[1], 'not_ready', ARGV[1], ARGV[2], ARGV[3])
  return {1, redis.call('HGETALL', KEYS[1])}
end
if (state == 'ringing' or state == 'on_call' or state == 'wrap_up')
   and (redis.call('HGET', KEYS[1], 'after_wrap') or '') == '' then
  redis.call('HSET', KEYS[1], 'after_wrap', 'not_ready', 'after_wrap_reason', ARGV[1])
  return {2}
end
return {0}
"""

# A console is back: forget the not-ready its absence kept for after the call.
# KEYS: agent; ARGV: reason.
CONSOLE_BACK = """
if redis.call('HGET', KEYS[1], 'after_wrap_reason') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'after_wrap', '', 'after_wrap_reason', '')
return 1
"""

# Where a waiting call stands and how long it will wait (routing/estimate.py: position x
# average handle time / agents serving the queue), noted on the call as announced, only
# while it waits (a call that hung up meanwhile gets no key back). Callbacks of its queue
# waiting for an agent with a better place (routing/callbacks.py) are ahead of it too.
# KEYS: call, stats, pending callbacks; ARGV: waiting prefix, pool prefix, the handle time
# to assume before any call was handled, call key prefix.
# {1, queue, position, estimated wait (s), agents serving} | {0}
# (routing/arrival.py; an offer that queues its call runs it in its own step)
QUEUED_NOTICE = QUEUED_NOTICE_LIB + """
return queued_notice(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])
"""

# A call back into a queue from the states in ARGV[1] (";"), in one step.
# KEYS: call, set of queues; ARGV: expected states, waiting prefix, queue, score, now, pool
# prefix, then call field/value pairs. 1 | 0
REQUEUE = LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local ok = false
for s in string.gmatch(ARGV[1], '[^;]+') do if s == state then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queue', ARGV[3], 'score', ARGV[4],
           'agent_id', '', 'queued_at', clock(), unpack(ARGV, 7))
local call_id = redis.call('HGET', KEYS[1], 'id')
redis.call('ZADD', ARGV[2] .. ARGV[3], ARGV[4], call_id)
index_call(KEYS[1], call_id, ARGV[5], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""
