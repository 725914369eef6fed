"""Commands to the PBX, and their outcomes.

A feature that needs the PBX to act (`route.control`: hold, transfer...; and other kinds,
such as a callback or a supervisor's monitoring) sends a frame carrying a fresh
`command_id` to the call's integration and awaits the outcome: the PBX's `control.result`,
or failure when it does not answer within `CALLCENTER_CONTROL_TIMEOUT_S`, when no
connection of the integration listens, or when the call ends first.

Each command is a hash in Redis. Registering it, checking the call it is about (its state,
its agent, no other command pending on it) and publishing the frame are one Lua step;
deciding its outcome is another, which only the first decider wins (the PBX's result, the
timeout or the call's end). The winning step publishes the outcome on the sending node's
command channel, where the waiter's future takes it; a waiter whose message was lost (a
pub/sub outage) decides the timeout itself at its deadline and is answered with whatever
won. The call's state never changes by a command: only by the PBX's events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from core.bus import Bus
from core.keys import Keys
from cti.calls import CallError

log = logging.getLogger(__name__)

# How long a decided command is remembered (a late or repeated control.result is told
# what happened to it).
KEEP_S = 3600

# KEYS: command hash, the call's pending-command key, the call's set of commands, call hash.
# ARGV: command id, frame (JSON), reply channel, integration ("" = the call's), channel
# prefix of integrations, pending-key TTL (ms), hash TTL (s), guard ("1" = check the call),
# allowed states (";"), agent the call must be with ("" = any), exclusive ("1"), call id,
# type, action, sent at, the outcome when nobody listens (JSON), who asks, a call field the
# guard looks at ("" = none), whether it must be set ("1") or blank ("0"), the call field
# naming the agent the guard checks.
# {1} sent | {0, state}: not in an allowed state ('unknown': no such call) |
# {3, agent}: another agent's call | {4, command}: a command is pending | {5}: nobody listens
# | {6, 'set' or 'blank'}: the guard's field is not as it must be
_SEND = """
local integration = ARGV[4]
if ARGV[8] == '1' then
  local state = redis.call('HGET', KEYS[4], 'state')
  if not state then return {0, 'unknown'} end
  local ok = false
  for s in string.gmatch(ARGV[9], '[^;]+') do if s == state then ok = true end end
  if not ok then return {0, state} end
  local agent = redis.call('HGET', KEYS[4], ARGV[20]) or ''
  if ARGV[10] ~= '' and agent ~= ARGV[10] then return {3, agent} end
  if ARGV[18] ~= '' then
    local value = redis.call('HGET', KEYS[4], ARGV[18]) or ''
    if (value ~= '') ~= (ARGV[19] == '1') then
      return {6, value ~= '' and 'set' or 'blank'}
    end
  end
end
if integration == '' then
  integration = redis.call('HGET', KEYS[4], 'integration') or ''
  if integration == '' then return {0, 'unknown'} end
end
if ARGV[11] == '1' then
  local pending = redis.call('GET', KEYS[2])
  if pending then return {4, pending} end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'reply', ARGV[3], 'integration', integration,
           'call_id', ARGV[12], 'type', ARGV[13], 'action', ARGV[14], 'sent_at', ARGV[15],
           'by', ARGV[17])
redis.call('EXPIRE', KEYS[1], ARGV[7])
if redis.call('PUBLISH', ARGV[5] .. integration, ARGV[2]) == 0 then
  redis.call('HSET', KEYS[1], 'outcome', ARGV[16])
  return {5}
end
if ARGV[11] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[6]) end
if ARGV[12] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
return {1}
"""

# Decide a command's outcome, once. KEYS: command hash, the call's pending-command key,
# the call's set of commands. ARGV: outcome (JSON), integration that answers ("" = any:
# the timeout, the call's end), the answering event's id ("" = none), hash TTL (s).
# {1}: decided now (and published to the sender) | {0, outcome, event}: decided before |
# {-1}: no such command (of this integration)
_DECIDE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'integration') ~= ARGV[2] then return {-1} end
local decided = redis.call('HGET', KEYS[1], 'outcome')
if decided then return {0, decided, redis.call('HGET', KEYS[1], 'event') or ''} end
redis.call('HSET', KEYS[1], 'outcome', ARGV[1], 'event', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local id = redis.call('HGET', KEYS[1], 'id')
if redis.call('GET', KEYS[2]) == id then redis.call('DEL', KEYS[2]) end
redis.call('SREM', KEYS[3], id)
redis.call('PUBLISH', redis.call('HGET', KEYS[1], 'reply'), ARGV[1])
return {1}
"""


@dataclass(frozen=True)
class Outcome:
    """How a command ended: `ok`, or not with a `reason` (the PBX's own, e.g.
    `not_supported`, or ours: `timeout`, `pbx_unavailable`, `call_ended`); `detail` holds
    any further fields of the PBX's control.result."""

    command_id: str
    ok: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return orjson.dumps({"command_id": self.command_id, "ok": self.ok,
                             "reason": self.reason, "detail": self.detail}).decode()

    @classmethod
    def loads(cls, data: str | bytes | dict[str, Any]) -> Outcome:
        value = data if isinstance(data, dict) else orjson.loads(data)
        return cls(str(value["command_id"]), bool(value["ok"]), str(value.get("reason") or ""),
                   dict(value.get("detail") or {}))


@dataclass(frozen=True)
class Guard:
    """What the call must be when the command is sent, checked in the same step: in one of
    `states`; with `agent_id` (None: any agent); and, `exclusive`, with no other exclusive
    command pending (one call-control command at a time per call); `field` (a field of
    the call's hash) set, `field_set`, or blank, not. `agent_field`: the call's field
    naming the agent (`consult_agent` for the consulted agent's own requests)."""

    states: Iterable[str]
    agent_id: int | None = None
    exclusive: bool = True
    field: str = ""
    field_set: bool = False
    agent_field: str = "agent_id"  # the call's field `agent_id` must match


class CommandError(CallError):
    code = "command_error"


class CallGone(CommandError):
    code = "unknown_call"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no live call {call_id!r}")


class NotInState(CommandError):
    code = "illegal_transition"

    def __init__(self, call_id: str, state: str, action: str) -> None:
        super().__init__(f"{action} is not allowed for call {call_id!r} in state {state}")
        self.state = state


class NotYourCall(CommandError):
    code = "not_your_call"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} is not with you")


class CommandPending(CommandError):
    code = "command_pending"

    def __init__(self, call_id: str, command_id: str) -> None:
        super().__init__(f"call {call_id!r} has a command pending ({command_id}); "
                         "wait for its outcome")
        self.command_id = command_id


class FieldNotAsGuarded(CommandError):
    """The guard's call field was not as it had to be (`is_set`: it was set)."""

    code = "field_guard"

    def __init__(self, call_id: str, action: str, is_set: bool) -> None:
        super().__init__(f"{action} is not allowed for call {call_id!r} now")
        self.is_set = is_set


class UnknownCommand(CommandError):
    code = "unknown_command"

    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command {command_id!r} was sent to this integration")


@dataclass(frozen=True)
class Decision:
    """The PBX's result as the service took it: `won` (it decided the outcome), else the
    outcome decided before, and whether that was this same event (a resend)."""

    won: bool
    outcome: Outcome | None = None
    same_event: bool = False


class PbxCommands:
    def __init__(self, redis: Redis, keys: Keys, bus: Bus, node_id: str, timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis, self.keys, self.bus = redis, keys, bus
        self.timeout_s = timeout_s
        self.clock = clock
        self._reply = keys.command_channel(node_id)
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._send = redis.register_script(_SEND)
        self._decide = redis.register_script(_DECIDE)

    async def start(self) -> None:
        """Listen for the outcomes of this node's commands."""
        await self.bus.subscribe(self._reply, self._on_outcome)

    async def stop(self) -> None:
        await self.bus.unsubscribe(self._reply, self._on_outcome)

    async def send(self, type_: str, fields: dict[str, Any], *, call_id: str = "",
                   integration: str = "", guard: Guard | None = None,
                   timeout_s: float | None = None, by: str = "") -> Outcome:
        """Send `{type, command_id, call_id?, **fields}` to the integration (the call's
        when not given) and wait for its outcome. Raises a CommandError when the guard
        refuses (nothing is sent then). `by`: who asks, kept with the command."""
        command_id = uuid.uuid4().hex
        frame: dict[str, Any] = {"type": type_, "command_id": command_id}
        if call_id:
            frame["call_id"] = call_id
        frame.update(fields)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        try:
            await self._register(command_id, frame, call_id, integration, guard, timeout, by)
            return await self._wait(command_id, call_id, future, timeout)
        finally:
            self._waiting.pop(command_id, None)

    async def _register(self, command_id: str, frame: dict[str, Any], call_id: str,
                        integration: str, guard: Guard | None, timeout: float,
                        by: str) -> None:
        unheard = Outcome(command_id, False, "pbx_unavailable")
        keep = int(timeout) + KEEP_S
        action = str(frame.get("action", ""))
        answer = await self._send(
            keys=[self.keys.command(command_id), self.keys.call_command(call_id),
                  self.keys.calls_commands(call_id), self.keys.call(call_id)],
            args=[command_id, orjson.dumps(frame), self._reply, integration,
                  self.keys.telephony_channel(""), int(timeout * 1000) + 2000, keep,
                  "1" if guard else "", ";".join(guard.states) if guard else "",
                  "" if guard is None or guard.agent_id is None else str(guard.agent_id),
                  "1" if guard and guard.exclusive else "", call_id, frame["type"], action,
                  repr(self.clock()), unheard.dumps(), by, guard.field if guard else "",
                  "1" if guard and guard.field_set else "0",
                  guard.agent_field if guard else "agent_id"])
        code = int(answer[0])
        if code == 0:
            if answer[1] == "unknown":
                raise CallGone(call_id)
            raise NotInState(call_id, answer[1], action or frame["type"])
        if code == 3:
            raise NotYourCall(call_id)
        if code == 4:
            raise CommandPending(call_id, answer[1])
        if code == 6:
            raise FieldNotAsGuarded(call_id, action or frame["type"], answer[1] == "set")
        if code == 5:
            log.info("%s %s: no connection of the integration listens", frame["type"], action)
            self._settle(unheard)

    async def _wait(self, command_id: str, call_id: str, future: asyncio.Future[Outcome],
                    timeout: float) -> Outcome:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            pass
        decision = await self.decide(Outcome(command_id, False, "timeout"), call_id=call_id)
        if decision.won or decision.outcome is None:
            return Outcome(command_id, False, "timeout")
        return decision.outcome

    async def decide(self, outcome: Outcome, *, call_id: str | None = None,
                     integration: str = "", event_id: str = "") -> Decision:
        """Decide a command's outcome unless something decided it first. `integration`
        set: only a command sent to that integration (else UnknownCommand)."""
        if call_id is None:
            call_id = cast(str | None, await self.redis.hget(
                self.keys.command(outcome.command_id), "call_id")) or ""
        answer = await self._decide(
            keys=[self.keys.command(outcome.command_id), self.keys.call_command(call_id),
                  self.keys.calls_commands(call_id)],
            args=[outcome.dumps(), integration, event_id, KEEP_S])
        code = int(answer[0])
        if code == -1:
            raise UnknownCommand(outcome.command_id)
        if code == 1:
            return Decision(True)
        return Decision(False, Outcome.loads(answer[1]), bool(event_id) and answer[2] == event_id)

    async def call_gone(self, call_id: str) -> None:
        """The call ended (or left its agents): its pending commands fail with `call_ended`."""
        for member in await self.redis.smembers(self.keys.calls_commands(call_id)):
            command_id = member if isinstance(member, str) else member.decode()
            try:
                await self.decide(Outcome(command_id, False, "call_ended"), call_id=call_id)
            except UnknownCommand:
                log.debug("command %s of call %s expired", command_id, call_id)

    def _on_outcome(self, message: dict[str, Any]) -> None:
        try:
            outcome = Outcome.loads(message)
        except (KeyError, TypeError, ValueError):
            log.warning("dropped a malformed command outcome: %r", message)
            return
        self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        future = self._waiting.get(outcome.command_id)
        if future is not None and not future.done():
            future.set_result(outcome)
