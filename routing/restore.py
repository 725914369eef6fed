"""An answered call written back into the live state after Redis lost it
(cti/recovery.py), in one step with its agent.

The rebuild runs while the node serves: the PBX's events go on arriving, agents whose
consoles reconnect register and go available. Whatever reached the live state first
wins: the call is written back only if no live state of it exists (an event or another
rebuild came first), and its agent is taken for it only if the agent holds no other
call (it was given one meanwhile). Call, set of live calls, agent (out of its pools, on
the call or wrapping it up) and wrap-up timer change together, so no event sees a call
restored without its agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from redis.asyncio import Redis

from core.keys import Keys
from routing.states import AgentState
from routing.transitions import LIB

# KEYS: call hash, set of live calls, agent hash (the call hash again when none), timers;
# ARGV: call id, now, pool prefix, agent state ("" = no agent), wrap-up end ("" = none),
# wrap-up timer member, then the call's field/value pairs.
# 'restored' | 'live' (the call's live state exists) | 'agent_busy' (its agent holds another
# call) | 'no_agent' (the agent has no live record)
RESTORE_ANSWERED = LIB + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'live' end
if ARGV[4] ~= '' then
  if not redis.call('HGET', KEYS[3], 'state') then return 'no_agent' end
  local holding = redis.call('HGET', KEYS[3], 'call_id') or ''
  if holding ~= '' and holding ~= ARGV[1] then return 'agent_busy' end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[4] == '' then return 'restored' end
go_unavailable(KEYS[3], ARGV[4], '', ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'call_id', ARGV[1])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'wrap_until', ARGV[5],
             'wrap_agent', redis.call('HGET', KEYS[3], 'id'))
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
end
return 'restored'
"""


class LiveRestore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.keys = keys
        self._restore = redis.register_script(RESTORE_ANSWERED)

    async def answered(self, call_id: str, fields: Mapping[str, str | int | float], *,
                       agent_id: int | None, agent_state: AgentState | None, now: float,
                       timers: str, wrap: tuple[float, str] | None = None) -> str:
        """Write an answered call back with its agent (`agent_state`: on_call, or wrap_up
        with `wrap`: its end and timer member); what happened (RESTORE_ANSWERED above)."""
        call_key = self.keys.call(call_id)
        agent_key = call_key if agent_id is None else self.keys.agent(agent_id)
        until, timer = wrap if wrap is not None else ("", "")
        args: list[str | int | float] = [
            call_id, now, self.keys.pool(""), agent_state.value if agent_state else "",
            until, timer]
        for name, value in fields.items():
            args += [name, value]
        return cast(str, await self._restore(keys=[call_key, self.keys.calls, agent_key, timers],
                                             args=args))
