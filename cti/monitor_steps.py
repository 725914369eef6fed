"""A call's monitor in Redis: who monitors it and how, each change one Lua step.

One supervisor monitors a call at a time (docs/admin.md, "Live monitoring"). The hash
`monitor:<call>` holds `supervisor_id`, `supervisor` (name), `extension`, `agent_id` (the
agent on the call when it began), `mode` (listen, whisper, barge; empty until the PBX
first confirmed) and, while a change waits for the PBX, `pending` (its token) and `want`.

- claim: the call is in progress; nobody else monitors it (a monitor of the call's
  previous agent, left over from a transfer, is dropped); no change is pending. The
  winner marks its change pending, and only it sends `route.monitor`.
- settle: the PBX's outcome of the pending change: done (the mode is now `want`, or the
  monitor is gone after a stop) or not (the mode stays what it was). Only the token that
  claimed may settle; a monitor cleared meanwhile (the call ended) stays cleared.
- clear: the call ended or left its agent (transferred), or the supervisor's phone hung
  up (the ARI adapter tells): the monitor is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from core.keys import Keys

# How long a monitor is kept at most (it is cleared with its call; this only bounds a
# key whose clearing was missed, e.g. a node died between the call's end and its clear).
TTL_S = 12 * 3600

# KEYS: call hash, monitor hash. ARGV: supervisor id, name, extension, wanted mode, token,
# allowed call states (";"), TTL (s), "1" = may stop another's monitor (an admin).
# {1, mode before} claimed | {0, call state ('unknown': no such call)} |
# {2, holder id, holder name, mode} monitored by another | {3} stop, but not monitoring |
# {4} a change is pending | {5, mode} that mode already
_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'unknown'} end
local ok = false
for s in string.gmatch(ARGV[6], '[^;]+') do if s == state then ok = true end end
if not ok then return {0, state} end
local agent = redis.call('HGET', KEYS[1], 'agent_id') or ''
local m = redis.call('HMGET', KEYS[2], 'supervisor_id', 'supervisor', 'mode', 'pending',
                     'agent_id')
if m[1] and m[5] ~= agent then
  redis.call('DEL', KEYS[2])
  m = {false, false, false, false, false}
end
local want = ARGV[4]
if m[1] and m[1] ~= ARGV[1] and not (want == 'stop' and ARGV[8] == '1') then
  return {2, m[1], m[2] or '', m[3] or ''}
end
if not m[1] and want == 'stop' then return {3} end
if m[4] then return {4} end
local mode = m[3] or ''
if mode == want then return {5, mode} end
if not m[1] then
  redis.call('HSET', KEYS[2], 'supervisor_id', ARGV[1], 'supervisor', ARGV[2],
             'extension', ARGV[3], 'agent_id', agent, 'mode', '')
end
redis.call('HSET', KEYS[2], 'pending', ARGV[5], 'want', want)
redis.call('EXPIRE', KEYS[2], ARGV[7])
return {1, mode}
"""

# KEYS: monitor hash. ARGV: token, "1" = the PBX did it.
# {1, mode now ('' = stopped)} applied | {2, mode kept ('' = none)} the change failed |
# {0} not this token's (cleared meanwhile)
_SETTLE = """
local m = redis.call('HMGET', KEYS[1], 'pending', 'want', 'mode')
if m[1] ~= ARGV[1] then return {0} end
if ARGV[2] == '1' then
  if m[2] == 'stop' then
    redis.call('DEL', KEYS[1])
    return {1, ''}
  end
  redis.call('HSET', KEYS[1], 'mode', m[2])
  redis.call('HDEL', KEYS[1], 'pending', 'want')
  return {1, m[2]}
end
if (m[3] or '') == '' then
  redis.call('DEL', KEYS[1])
  return {2, ''}
end
redis.call('HDEL', KEYS[1], 'pending', 'want')
return {2, m[3]}
"""

# KEYS: monitor hash. ARGV: the agent the call left ('' = any), the supervisor whose
# monitor it must be ('' = any).
# {} nothing to clear | {supervisor id, name, mode, agent id} cleared
_CLEAR = """
local m = redis.call('HMGET', KEYS[1], 'supervisor_id', 'supervisor', 'mode', 'agent_id')
if not m[1] then return {} end
if ARGV[1] ~= '' and m[4] ~= ARGV[1] then return {} end
if ARGV[2] ~= '' and m[1] ~= ARGV[2] then return {} end
redis.call('DEL', KEYS[1])
return {m[1], m[2] or '', m[3] or '', m[4] or ''}
"""


@dataclass(frozen=True)
class Claim:
    """What a claim found: `code` as the script answers, and its details."""

    code: int
    state: str = ""  # code 0: the call's state
    mode: str = ""  # code 1, 5: the mode before; code 2: the holder's
    holder_id: int | None = None
    holder: str = ""


@dataclass(frozen=True)
class Monitor:
    supervisor_id: int
    supervisor: str
    mode: str
    agent_id: int | None = None


class MonitorSteps:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._claim = redis.register_script(_CLAIM)
        self._settle = redis.register_script(_SETTLE)
        self._clear = redis.register_script(_CLEAR)

    async def claim(self, call_id: str, supervisor_id: int, name: str, extension: str,
                    want: str, token: str, states: list[str], override: bool) -> Claim:
        answer = await self._claim(
            keys=[self.keys.call(call_id), self.keys.monitor(call_id)],
            args=[supervisor_id, name, extension, want, token, ";".join(states), TTL_S,
                  "1" if override else ""])
        code = int(answer[0])
        if code == 0:
            return Claim(0, state=_text(answer[1]))
        if code == 2:
            return Claim(2, holder_id=int(answer[1]), holder=_text(answer[2]),
                         mode=_text(answer[3]))
        return Claim(code, mode=_text(answer[1]) if len(answer) > 1 else "")

    async def settle(self, call_id: str, token: str, done: bool) -> tuple[int, str]:
        answer = await self._settle(keys=[self.keys.monitor(call_id)],
                                    args=[token, "1" if done else ""])
        return int(answer[0]), _text(answer[1]) if len(answer) > 1 else ""

    async def clear(self, call_id: str, agent_id: int | None = None,
                    supervisor_id: int | None = None) -> Monitor | None:
        answer = await self._clear(keys=[self.keys.monitor(call_id)],
                                   args=["" if agent_id is None else str(agent_id),
                                         "" if supervisor_id is None else str(supervisor_id)])
        if not answer:
            return None
        agent = _text(answer[3])
        return Monitor(int(answer[0]), _text(answer[1]), _text(answer[2]),
                       int(agent) if agent else None)

    async def current(self, call_id: str) -> dict[str, str]:
        raw: dict[Any, Any] = await self.redis.hgetall(self.keys.monitor(call_id))
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
