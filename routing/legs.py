"""Transitions of a talking call that leave its agent where it is (hold, resume), as Lua
steps guarded by the call's state and its version.

The version (`v` on the call's hash) counts these steps: a caller reads the call, works
out what the step writes (the hold count, the hold time so far), and the step applies it
only if the call is still in the state *and* at the version it read, so a call that went
on hold and back meanwhile is never written with stale figures. A loser reads again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from redis.asyncio import Redis

from core.keys import Keys
from routing.store import EVENT_TTL_S, EventSeen
from routing.transitions import CALL_GUARD_LIB

# KEYS: call hash, event key; ARGV: expected states (";"), expected version ("" = any), new
# state, event value ("" = none), its TTL, then call field/value pairs.
# {1, state before, version after, write number} | {0, state now ('unknown': gone)} |
# {2, seen} | {3, state now}: the version moved on
CALL_STEP = CALL_GUARD_LIB + """
local refused, state = guard_call(KEYS[1], KEYS[2], ARGV[4], ARGV[1])
if refused then return refused end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[2] then
  return {3, state}
end
redis.call('HSET', KEYS[1], 'state', ARGV[3])
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
local seq = next_seq(KEYS[1])
mark(KEYS[2], ARGV[4], ARGV[5], seq)
return {1, state, tostring(v), seq}
"""


class LegStep(NamedTuple):
    """won; the state before (won) or now; stale: lost only because the version moved;
    the number of the call's writes the step owes (won)."""

    won: bool
    state: str
    stale: bool = False
    seq: int = 0


class LegStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._step = redis.register_script(CALL_STEP)

    async def step(self, call_id: str, expected: Iterable[str], version: str | None,
                   state: str, fields: Mapping[str, str | int | float], *,
                   event: tuple[str, bytes] | None = None) -> LegStep:
        """Move the call from one of `expected` (at `version`, None = any) to `state`,
        writing `fields`; an event's owed writes kept under its key in the same step
        (EventSeen when the event was applied before)."""
        flat = [x for pair in fields.items() for x in pair]
        result = await self._step(
            keys=[self.keys.call(call_id), event[0] if event else self.keys.call(call_id)],
            args=[";".join(expected), "" if version is None else version, state,
                  event[1] if event else "", EVENT_TTL_S if event else 0, *flat])
        code = int(result[0])
        if code == 2:
            raise EventSeen(result[1])
        return LegStep(code == 1, result[1], code == 3, int(result[3]) if code == 1 else 0)
