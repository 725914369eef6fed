"""Consult transfers and conferences as Lua steps: each moves the call, its agent (A) and
the consulted agent (B) together, guarded by the call's state, its version and who the
consulted agent is, and answers whether it won.

One script serves every consult transition; what it does to each party is named by the
caller (`b` and `a` below), so each transition stays one atomic step:

- b `reserve`: take B (the agent named, or the longest-idle available agent of a pool)
  from available to ringing on this call, noted on the call as `consult_agent`;
- b `answer`: B ringing -> on_call; b `free`: B leaves the call (available or its state
  for after the call); b `missed`: B -> not_ready `missed` (ring-no-answer);
  b `take`: B becomes the call's agent (the consult was completed);
- a `wrap`: A leaves the call into wrap-up (its wrap-up timer set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

from redis.asyncio import Redis

from core.keys import Keys
from routing.store import EVENT_TTL_S, EventSeen, _pairs
from routing.transitions import LIB

BAction = Literal["reserve", "answer", "free", "missed", "take", ""]
AAction = Literal["wrap", ""]

# How many members of a pool a consult to a queue looks at for an available agent.
_POOL_LOOK = 20

# KEYS: call, event key (or the call), A's agent hash, timers.
# ARGV: 1 expected states (";"), 2 expected version ("" = any), 3 expected consult agent
# ("*" = any, "" = none), 4 new state, 5 b action, 6 a action, 7 now, 8 pool prefix,
# 9 agent key prefix, 10 agent to reserve ("" = from the pool), 11 pool to reserve from,
# 12 timer to set ("" = none; on a reservation, B's id is added to it), 13 its due time,
# 14 timer to cancel ("" = none),
# 15 event value ("" = none), 16 its TTL, 17 A's wrap-up timer, 18 its due time, 19 the
# expected agent A, 20 how many members of the pool to look at, then call field/value
# pairs.
# {1, state before, B, A after, B after, write number (0: no event)} |
# {0, state now ('unknown': gone)} | {2, seen} | {3, state now}: the version moved on |
# {4, why}: no agent to consult ('busy', 'logged_out', 'not_ready', 'no_agent', ...)
CONSULT = LIB + """
local refused, state = guard_call(KEYS[1], KEYS[2], ARGV[15], ARGV[1])
if refused then return refused end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[2] then
  return {3, state}
end
local a = redis.call('HGET', KEYS[1], 'agent_id') or ''
local b = redis.call('HGET', KEYS[1], 'consult_agent') or ''
if a ~= ARGV[19] then return {0, state} end
if ARGV[3] ~= '*' and b ~= ARGV[3] then return {0, state} end
local call_id = redis.call('HGET', KEYS[1], 'id')
local now, prefix = ARGV[7], ARGV[8]
if ARGV[5] == 'reserve' then
  b = ARGV[10]
  if b == '' then
    local heads = redis.call('ZRANGE', prefix .. ARGV[11], 0, tonumber(ARGV[20]) - 1)
    for _, id in ipairs(heads) do
      if id ~= a and redis.call('HGET', ARGV[9] .. id, 'state') == 'available' then
        b = id
        break
      end
    end
    if b == '' then return {4, 'no_agent'} end
  end
  local bstate = redis.call('HGET', ARGV[9] .. b, 'state') or 'unknown'
  if bstate ~= 'available' then return {4, bstate} end
  go_unavailable(ARGV[9] .. b, 'ringing', '', now, prefix)
  redis.call('HSET', ARGV[9] .. b, 'call_id', call_id)
  redis.call('HSET', KEYS[1], 'consult_agent', b)
end
local bkey = ARGV[9] .. b
local b_holds = b ~= '' and holds(bkey, call_id)
if ARGV[5] == 'answer' and b_holds then go_unavailable(bkey, 'on_call', '', now, prefix) end
if ARGV[5] == 'free' and b_holds then after_call(bkey, now, prefix) end
if ARGV[5] == 'missed' and b_holds then
  go_unavailable(bkey, 'not_ready', 'missed', now, prefix)
  redis.call('HSET', bkey, 'call_id', '')
end
if ARGV[5] == 'free' or ARGV[5] == 'missed' then
  redis.call('HSET', KEYS[1], 'consult_agent', '')
end
if ARGV[5] == 'take' then redis.call('HSET', KEYS[1], 'agent_id', b, 'consult_agent', '') end
if ARGV[6] == 'wrap' and holds(KEYS[3], call_id) then
  go_unavailable(KEYS[3], 'wrap_up', '', now, prefix)
  redis.call('ZADD', KEYS[4], ARGV[18], ARGV[17])
  redis.call('HSET', KEYS[1], 'wrap_until', ARGV[18], 'wrap_agent', a)
end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
if #ARGV > 20 then redis.call('HSET', KEYS[1], unpack(ARGV, 21)) end
redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[12] ~= '' then
  local timer = ARGV[12]
  if ARGV[5] == 'reserve' then timer = timer .. b end
  redis.call('ZADD', KEYS[4], ARGV[13], timer)
end
if ARGV[14] ~= '' then redis.call('ZREM', KEYS[4], ARGV[14]) end
local seq = 0
if ARGV[15] ~= '' then seq = next_seq(KEYS[1]) end
mark(KEYS[2], ARGV[15], ARGV[16], seq)
local b_after = {}
if b ~= '' then b_after = agent_of(bkey) end
return {1, state, b, agent_of(KEYS[3]), b_after, seq}
"""


class ConsultStep(NamedTuple):
    """won; the state before (won) or now; the consulted agent; A and B after (won);
    `stale`: lost only because the version moved; `refused`: why no agent was reserved."""

    won: bool
    state: str
    b: int | None = None
    a_after: dict[str, str] = {}  # noqa: RUF012 - never mutated
    b_after: dict[str, str] = {}  # noqa: RUF012 - never mutated
    stale: bool = False
    refused: str = ""
    seq: int = 0  # the number of the writes the step owes (core/sequenced.py)


class Move(NamedTuple):
    """One consult transition: from which states (at which version) to which, and what
    happens to B and A."""

    expected: tuple[str, ...]
    version: str | None
    consulted: str  # "*" any, "" none, else B's id
    state: str
    b: BAction = ""
    a: AAction = ""


class ConsultStore:
    def __init__(self, redis: Redis, keys: Keys, timers: str) -> None:
        self.redis, self.keys, self.timers = redis, keys, timers
        self._step = redis.register_script(CONSULT)

    async def step(self, call_id: str, agent_id: int, move: Move, now: float,
                   fields: Mapping[str, str | int | float], *,
                   reserve: tuple[int | None, str] = (None, ""),
                   timer: tuple[str, float] = ("", 0.0), cancel: str = "",
                   wrap: tuple[str, float] = ("", 0.0),
                   event: tuple[str, bytes] | None = None) -> ConsultStep:
        """Apply `move` to the call whose agent is `agent_id`; `reserve` names B (or the
        pool to take B from), `timer` a timer to set, `cancel` one to remove, `wrap` A's
        wrap-up timer. EventSeen when `event` was applied before."""
        flat = [x for pair in fields.items() for x in pair]
        result = await self._step(
            keys=[self.keys.call(call_id), event[0] if event else self.keys.call(call_id),
                  self.keys.agent(agent_id), self.timers],
            args=[";".join(move.expected), move.version or "", move.consulted, move.state,
                  move.b, move.a, repr(now), self.keys.pool(""), self.keys.agent(""),
                  "" if reserve[0] is None else reserve[0], reserve[1], timer[0],
                  repr(timer[1]), cancel, event[1] if event else "",
                  EVENT_TTL_S if event else 0, wrap[0], repr(wrap[1]), agent_id,
                  _POOL_LOOK, *flat])
        code = int(result[0])
        if code == 2:
            raise EventSeen(result[1])
        if code == 4:
            return ConsultStep(False, "", refused=str(result[1]))
        if code != 1:
            return ConsultStep(False, str(result[1]), stale=code == 3)
        b = int(result[2]) if result[2] else None
        return ConsultStep(True, str(result[1]), b, _pairs(result[3]), _pairs(result[4]),
                           seq=int(result[5]))
