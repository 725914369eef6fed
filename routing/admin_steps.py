"""Administration of the live agents (admin/): an agent's pools after its skills, queues or
the center's queues changed, and a supervisor's change of an agent's state.

Each is one Lua script, like every other change of an agent's live state
(routing/transitions.py), so it cannot interleave with a reservation, a call's end or
the agent's own choice on any node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from redis.asyncio import Redis

from core.keys import Keys
from routing.staffing import REPOOL_LIB
from routing.states import AgentState
from routing.transitions import LIB

# An agent's pools (and name, extension, skills...) as the node's configuration has
# them, written only if that configuration is the latest (the version counts every
# change an admin made): a node that has not reloaded yet cannot put back old pools.
# Otherwise as REGISTER_ROUTING_AGENT (routing/staffing.py): out of its old pools' sets,
# into its new ones as its state says; an available agent keeps its idle time.
# KEYS: agent, set of live agents, configuration version; ARGV: pool prefix, agent id,
# pools (";"), the version the node loaded, then field/value pairs.
# {1, state, agent after} | {-2, version now}
ADMIN_REPOOL = REPOOL_LIB + """
local current = redis.call('GET', KEYS[3]) or '0'
if current ~= ARGV[4] then return {-2, current} end
local state = repool(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], 5)
return {1, state, redis.call('HGETALL', KEYS[1])}
"""

# A supervisor sets an agent's state. Free (not on a call): now, noting who (`by`, for the
# state that began at `by_since`). On a call (ringing, talking or wrapping up): kept for
# after it, as the agent's own choice would be, with who chose it (`after_wrap_by`).
# KEYS: agent; ARGV: state, reason, now, pool prefix, who.
# {1, state before, agent after} | {2, state, agent} (after the call) | {-1} unknown agent
SUPERVISE_STATE = LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, 'unknown'} end
local call_id = redis.call('HGET', KEYS[1], 'call_id') or ''
if (state == 'ringing' or state == 'on_call' or state == 'wrap_up') and call_id ~= '' then
  redis.call('HSET', KEYS[1], 'after_wrap', ARGV[1], 'after_wrap_reason', ARGV[2],
             'after_wrap_by', ARGV[5])
  return {2, state, redis.call('HGETALL', KEYS[1])}
end
if ARGV[1] == 'available' then go_available(KEYS[1], ARGV[3], ARGV[4])
else go_unavailable(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
redis.call('HSET', KEYS[1], 'by', ARGV[5], 'by_since', ARGV[3], 'call_id', '')
return {1, state, redis.call('HGETALL', KEYS[1])}
"""


class StaleConfig(Exception):
    """The configuration this node loaded is not the latest: reload, then try again."""

    def __init__(self, version: str) -> None:
        super().__init__(f"the center's configuration is at version {version}")
        self.version = version


class Supervised(NamedTuple):
    """1: done now; 2: kept for after the agent's call; -1: no such live agent. With the
    state before and the agent after."""

    outcome: int
    previous: str
    agent: dict[str, str]


def _pairs(flat: list[str] | None) -> dict[str, str]:
    flat = flat or []
    return dict(zip(flat[::2], flat[1::2], strict=True))


class AdminSteps:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._repool = redis.register_script(ADMIN_REPOOL)
        self._supervise = redis.register_script(SUPERVISE_STATE)

    async def version(self) -> str:
        return str(await self.redis.get(self.keys.config_version) or "0")

    async def bump(self) -> str:
        """Count a change of the configuration (after it is stored)."""
        return str(await self.redis.incr(self.keys.config_version))

    async def repool(self, agent_id: int, pools: Iterable[str], version: str,
                     fields: Mapping[str, str | int | float]) -> dict[str, str]:
        """Set an agent's pools and fields; the agent after. Raises StaleConfig."""
        args: list[Any] = [self.keys.pool(""), agent_id, ";".join(pools), version]
        for name, value in fields.items():
            args += [name, value]
        result = await self._repool(keys=[self.keys.agent(agent_id), self.keys.agents,
                                          self.keys.config_version], args=args)
        if int(result[0]) == -2:
            raise StaleConfig(str(result[1]))
        return _pairs(result[2])

    async def supervise(self, agent_id: int, state: AgentState, reason: str, by: str,
                        now: float) -> Supervised:
        result = await self._supervise(keys=[self.keys.agent(agent_id)], args=[
            state.value, reason, now, self.keys.pool(""), by])
        outcome = int(result[0])
        return Supervised(outcome, str(result[1]), _pairs(result[2] if outcome > 0 else None))
