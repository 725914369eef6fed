"""Live routing state in Redis: agents, pools of available agents, waiting calls.

Every change that must not race between nodes is one Lua script, so no agent
is ever given two calls and no call two agents, whichever node routes. Time is
always passed in (``now``), never read here, so a simulator can drive the same
code on a virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from core.keys import Keys
from core.tickbatch import TickBatch
from core.tickpipe import TickPipe
from routing import arrival
from routing import transitions as lua
from routing.engine import Ring, WaitingCall, decode_rings, encode_rings
from routing.estimate import DEFAULT_AHT_S
from routing.queue_index import INDEX_LIB, QueueIndex, Taken, taken
from routing.staffing import REGISTER_ROUTING_AGENT, STAFF_LIB, Staffing
from routing.states import AgentState

# KEYS: agent hash, ARGV: now, pool key prefix, force ("1": the call left, e.g. the caller
# hung up while the phone rang). Adds the agent to its pools.
_MAKE_AVAILABLE = STAFF_LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if (state == 'ringing' or state == 'on_call') and ARGV[3] ~= '1' then return {0, state} end
if not state then return {0, 'unknown'} end
local pools = redis.call('HGET', KEYS[1], 'pools') or ''
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'state', 'available', 'reason', '', 'since', ARGV[1],
           'idle_since', ARGV[1], 'call_id', '', 'after_wrap', '')
for pool in string.gmatch(pools, '[^;]+') do
  redis.call('ZADD', ARGV[2] .. pool, ARGV[1], id)
end
staffing(KEYS[1], ARGV[2], 'available', '')
return {1, state, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: agent hash; ARGV: new state, reason, now, pool prefix, force ("1" to leave a call),
# then field/value pairs to set as well.
_MAKE_UNAVAILABLE = STAFF_LIB + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'unknown'} end
if (state == 'ringing' or state == 'on_call') and ARGV[5] ~= '1' then return {0, state} end
local pools = redis.call('HGET', KEYS[1], 'pools') or ''
local id = redis.call('HGET', KEYS[1], 'id')
for pool in string.gmatch(pools, '[^;]+') do
  redis.call('ZREM', ARGV[4] .. pool, id)
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'since', ARGV[3])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
staffing(KEYS[1], ARGV[4], ARGV[1], ARGV[2])
return {1, state, redis.call('HGETALL', KEYS[1])}
"""

# Ring a reserved agent: note on the call why it was chosen, start the ring-no-answer
# clock, log the agent's change and publish its messages, unless the call moved on since
# the reservation (the caller hung up: the hang-up has freed the agent and told it) --
# then nothing.
# KEYS: call hash, timers, agent state log; ARGV: agent id, deadline, timer member, the
# number of call field/value pairs, of log entry field/value pairs, the log's length
# cap, then those pairs, then channel/message pairs to publish.
_RING = """
if redis.call('HGET', KEYS[1], 'state') ~= 'ringing'
   or redis.call('HGET', KEYS[1], 'agent_id') ~= ARGV[1] then return 0 end
local entry = 7 + 2 * tonumber(ARGV[4])
local messages = entry + 2 * tonumber(ARGV[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 7, entry - 1))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, entry, messages - 1))
for i = messages, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return 1
"""

# A call is over: out of its queue, the live calls and Redis. With a handle time, it also
# moves the average handle time, exponentially weighted so recent calls count most for
# queue wait estimates. KEYS: waiting set, set of live calls, call hash, stats hash;
# ARGV: call id, handle time in seconds ("" = none), pool key prefix.
_DROP_CALL = INDEX_LIB + """
redis.call('ZREM', KEYS[1], ARGV[1])
unindex_call(KEYS[3], ARGV[1], ARGV[3])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if ARGV[2] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[4], 'aht') or ARGV[2])
  redis.call('HSET', KEYS[4], 'aht',
             string.format('%.2f', 0.9 * old + 0.1 * tonumber(ARGV[2])))
end
"""

# How many agent state changes the log keeps before the oldest go (they are stored in
# the database within seconds; the cap only bounds a database outage).
AGENT_LOG_MAXLEN = 1_000_000

# How long an event id is remembered, in seconds: far longer than any PBX retries.
EVENT_TTL_S = 86400

# The heads of waiting queues with their fields, in one round trip, and when they were
# read by Redis's clock (last). KEYS: waiting sets; ARGV: depth, call key prefix.
_HEADS = """
local out = {}
for i, key in ipairs(KEYS) do
  local heads = redis.call('ZRANGE', key, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
  for j = 1, #heads, 2 do
    local f = redis.call('HMGET', ARGV[2] .. heads[j], 'offered_at', 'rings')
    if f[1] and f[2] then table.insert(out, {heads[j], heads[j + 1], f[1], f[2], i}) end
  end
end
local t = redis.call('TIME')
table.insert(out, string.format('%d.%06d', t[1], t[2]))
return out
"""


class CustomerErasing(Exception):
    """The call's customer is being erased (privacy/): offer it as a new caller."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id} is being erased")
        self.customer_id = customer_id


class EventSeen(Exception):
    """The event was applied before: its key holds `value` (what it still owes the
    database, or that it is stored)."""

    def __init__(self, value: str) -> None:
        super().__init__("event applied before")
        self.value = value


@dataclass(frozen=True)
class Reservation:
    agent_id: int
    pool: str
    agent: dict[str, str]
    call: dict[str, str]  # both after the reservation


# The state a lost step answers when it lost only because the call moved on since it was
# read (its version): decide again on a fresh read.
STALE = "stale"


class Step(NamedTuple):
    """The outcome of a transition of a call and its agent: whether this caller won, the
    call's state before (or now, when it lost), its agent after (empty when the step
    left no agent changed), and the number of the call's writes it owes."""

    won: bool
    state: str
    agent: dict[str, str]
    seq: int = 0  # the number of the writes the step owes (core/sequenced.py)
    # A consulted agent the step freed too (call.ended during a consult), after.
    other: dict[str, str] = {}  # noqa: RUF012 - never mutated
    # Whether one of the keys the step was asked about exists (hang_up's `watched`);
    # True when it was not asked.
    watched: bool = True


class WrapUpEnd(NamedTuple):
    """The end of a wrap-up: whether this caller ended it, the call as it was when it
    ended with it (empty when the call had moved on), the agent after leaving it, and the
    waiting call the agent took in the same step (None: none)."""

    won: bool
    call: dict[str, str]
    agent: dict[str, str]
    took: Taken | None = None


class QueuedAt(NamedTuple):
    queue: str
    position: int
    wait_s: int  # estimated (routing/estimate.py)
    serving: int  # agents serving the queue


Args = list[str | int | float | bytes]
# What redis-py's annotations want of a mapping (its client here decodes to str).
_Mapping = dict[Any, Any]


class AgentChange(NamedTuple):
    """The outcome of a state change: done or not, the state before, the agent after."""

    ok: bool
    previous: str
    agent: dict[str, str]


def _event_args(event: tuple[str, bytes] | None) -> list[str | int | bytes]:
    return [event[1], EVENT_TTL_S] if event else ["", 0]


def _flat(fields: Mapping[str, str | int | float]) -> Args:
    return [x for pair in fields.items() for x in pair]


def _pairs(flat: list[str] | None) -> dict[str, str]:
    flat = flat or []
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RoutingStore:
    def __init__(self, redis: Redis, keys: Keys, pipe: TickPipe | None = None) -> None:
        """`pipe`: the call path's scripts and reads pipelined by loop turn
        (core/tickpipe.py) instead of through redis-py."""
        self.redis = redis
        self.keys = keys
        self._pipe = pipe
        scripts: Redis | TickPipe = pipe or redis
        # Marks written after records are stored ("stored" on event keys), batched per
        # loop turn.
        self.marks = TickBatch(redis, pipe)
        self._make_available = scripts.register_script(_MAKE_AVAILABLE)
        self._make_unavailable = scripts.register_script(_MAKE_UNAVAILABLE)
        self._reserve = scripts.register_script(arrival.RESERVE)
        self._ring = scripts.register_script(_RING)
        self._enqueue = scripts.register_script(arrival.ENQUEUE)
        self._offer = scripts.register_script(arrival.OFFER)
        self._drop_call = scripts.register_script(_DROP_CALL)
        self._heads = scripts.register_script(_HEADS)
        self._answer = scripts.register_script(lua.ANSWER)
        self._ring_no_answer = scripts.register_script(lua.RING_NO_ANSWER)
        self._hang_up = scripts.register_script(lua.HANG_UP)
        self._transfer = scripts.register_script(lua.TRANSFER)
        self._end_wrap_up = scripts.register_script(lua.END_WRAP_UP)
        self._set_state = scripts.register_script(lua.SET_STATE)
        self._console_gone = scripts.register_script(lua.CONSOLE_GONE)
        self._console_back = scripts.register_script(lua.CONSOLE_BACK)
        self._queued_notice = scripts.register_script(lua.QUEUED_NOTICE)
        self._requeue = scripts.register_script(lua.REQUEUE)
        self.index = QueueIndex(redis, keys)
        self.staffing = Staffing(redis, keys)
        self._register_agent = redis.register_script(REGISTER_ROUTING_AGENT)

    @property
    def _agent_prefix(self) -> str:
        return self.keys.agent("")

    @property
    def _pool_prefix(self) -> str:
        return self.keys.pool("")

    # Agents -------------------------------------------------------------

    async def register_agent(self, agent_id: int, pools: Iterable[str],
                             fields: Mapping[str, str | int | float]) -> None:
        """Create or refresh an agent's live record, in one step (its pools may have
        changed); a new agent starts logged out."""
        await self._register_agent(keys=[self.keys.agent(agent_id), self.keys.agents], args=[
            self._pool_prefix, agent_id, ";".join(pools), *_flat(fields)])

    async def agent(self, agent_id: int) -> dict[str, str]:
        return await self._hgetall(self.keys.agent(agent_id))

    async def agents(self) -> list[dict[str, str]]:
        ids = cast(set[str], await self.redis.smembers(self.keys.agents))
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(self.keys.agent(agent_id))
            rows = await pipe.execute()
        return [row for row in rows if row]

    async def make_available(self, agent_id: int, now: float, *,
                             force: bool = False) -> AgentChange:
        result = await self._make_available(
            keys=[self.keys.agent(agent_id)], args=[now, self._pool_prefix, "1" if force else "0"])
        return AgentChange(bool(result[0]), result[1], _pairs(result[2:3] and result[2]))

    async def make_unavailable(self, agent_id: int, state: AgentState, reason: str,
                               now: float, *, force: bool = False,
                               **fields: str | int | float) -> AgentChange:
        args: list[str | int | float] = [state.value, reason, now, self._pool_prefix,
                                         "1" if force else "0"]
        for name, value in fields.items():
            args += [name, value]
        result = await self._make_unavailable(keys=[self.keys.agent(agent_id)], args=args)
        return AgentChange(bool(result[0]), result[1], _pairs(result[2:3] and result[2]))

    async def pool_size(self, pool: str) -> int:
        return await self.redis.zcard(self.keys.pool(pool))

    # Calls --------------------------------------------------------------

    async def enqueue(self, call_id: str, queue: str, score: float, rings: list[Ring],
                      fields: Mapping[str, str | int | float], *, now: float,
                      event: tuple[str, bytes] | None = None) -> bool:
        """Queue a new call (its rings open as of `now`); False when a call with this id is
        live already. Raises EventSeen when `event` was applied before."""
        args, keys = self._arrival(call_id, queue, score, rings, fields, now, event)
        result = await self._enqueue(keys=keys, args=args)
        if isinstance(result, list):
            raise EventSeen(result[1])
        if result == 3:
            raise CustomerErasing(str(fields["customer_id"]))
        return bool(result)

    async def offer(self, call_id: str, queue: str, score: float, rings: list[Ring],
                    fields: Mapping[str, str | int | float], *, now: float,
                    pools: Iterable[str], event: tuple[str, bytes] | None = None,
                    notice: bool = False,
                    ) -> tuple[bool, Reservation | None, QueuedAt | None]:
        """Queue a new call and, in the same step, reserve the first available agent of
        `pools` (its open rings' pools, innermost first): (False, None, None) when a call
        with this id is live already, else (True, the reservation or None, and with
        `notice` for a call left waiting, where it stands as `queued_notice` notes it).
        Raises EventSeen when `event` was applied before, CustomerErasing when its
        customer is being erased."""
        args, keys = self._arrival(call_id, queue, score, rings, fields, now, event)
        result = await self._offer(
            keys=[*keys, self.keys.stats, self.keys.callbacks,
                  *(self.keys.pool(p) for p in pools)],
            args=[*args[:7], self._agent_prefix, self.keys.waiting("") if notice else "",
                  DEFAULT_AHT_S, self.keys.call(""), *args[7:]])
        code = int(result[0])
        if code == 2:
            raise EventSeen(result[1])
        if code == 3:
            raise CustomerErasing(str(fields["customer_id"]))
        if code == 4:
            return False, None, None
        reservation = self._reservation(result)
        if reservation is not None or len(result) < 3:
            return True, reservation, None
        return True, None, _queued_at(result[2])

    def _arrival(self, call_id: str, queue: str, score: float, rings: list[Ring],
                 fields: Mapping[str, str | int | float], now: float,
                 event: tuple[str, bytes] | None) -> tuple[Args, list[str]]:
        """The ARGV and KEYS of a call joining its queue (routing/arrival.py enqueue)."""
        args: Args = [call_id, score, queue, *_event_args(event), now, self._pool_prefix]
        for name, value in {"id": call_id, "queue": queue, "score": score,
                            "rings": encode_rings(rings), "state": "queued", **fields}.items():
            args += [name, value]
        keys = [self.keys.call(call_id), self.keys.waiting(queue), self.keys.calls,
                self.keys.queues, event[0] if event else self.keys.call(call_id),
                self.keys.erasing(str(fields.get("customer_id") or ""))]
        return args, keys

    async def ring_facts(self, agent_id: int | None,
                         pools: list[str]) -> tuple[str | None, frozenset[str]]:
        """What a call's rings depend on, in one round trip: the state of its sticky
        agent (`agent_id`; None when there is none or it is not logged in to routing),
        and which of `pools` nobody is signed in to (routing/staffing.py)."""
        commands: list[tuple[str | int, ...]] = [("SCARD", self.keys.pool_staff(p))
                                                 for p in pools]
        if agent_id is not None:
            commands.append(("HGET", self.keys.agent(agent_id), "state"))
        if not commands:
            return None, frozenset()
        if self._pipe is not None:
            replies = await self._pipe.execute_many(commands)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute()
        empty = frozenset(p for p, n in zip(pools, replies, strict=False) if int(n) == 0)
        return (replies[-1] if agent_id is not None else None), empty

    async def requeue(self, call_id: str, queue: str, score: float, rings: list[Ring] | None,
                      expected: Iterable[str], now: float, **fields: str | int | float) -> bool:
        """Put a ringing or connected call back in a queue, in one step."""
        extra: dict[str, str | int | float] = dict(fields)
        if rings is not None:
            extra["rings"] = encode_rings(rings)
        args: Args = [";".join(expected), self.keys.waiting(""), queue, score, now,
                      self._pool_prefix, *_flat(extra)]
        return bool(await self._requeue(keys=[self.keys.call(call_id), self.keys.queues],
                                        args=args))

    async def call(self, call_id: str) -> dict[str, str]:
        return await self._hgetall(self.keys.call(call_id))

    async def _hgetall(self, key: str) -> dict[str, str]:
        if self._pipe is None:
            return cast(dict[str, str], await self.redis.hgetall(key))
        return _pairs(await self._pipe.execute("HGETALL", key))

    async def drop_call(self, call_id: str, queue: str, *,
                        handle_s: float | None = None) -> None:
        """The call is over; with `handle_s`, it also moves the average handle time."""
        keys = [self.keys.waiting(queue), self.keys.calls, self.keys.call(call_id),
                self.keys.stats]
        await self._drop_call(keys=keys, args=[call_id, "" if handle_s is None else handle_s,
                                               self._pool_prefix])

    async def reserve(self, call_id: str, queue: str, now: float, *,
                      pools: Iterable[str] = (), agent_id: int | None = None,
                      ) -> Reservation | None:
        keys = [self.keys.call(call_id), self.keys.waiting(queue)]
        keys += [self.keys.pool(p) for p in pools]
        result = await self._reserve(keys=keys, args=[
            now, self._agent_prefix, self._pool_prefix, "" if agent_id is None else agent_id])
        return self._reservation(result)

    def _reservation(self, result: list) -> Reservation | None:  # type: ignore[type-arg]
        if not int(result[0]):
            return None
        pool = result[2].removeprefix(self._pool_prefix) if result[2] else f"agent:{result[1]}"
        return Reservation(int(result[1]), pool, _pairs(result[3]), _pairs(result[4]))

    async def ring(self, call_id: str, agent_id: int, fields: Mapping[str, str], *,
                   timers: str, timer: str, deadline: float,
                   messages: Iterable[tuple[str, bytes]],
                   log: Mapping[str, str | int | float]) -> bool:
        """After a reservation, in one step: keep `fields` on the call, add `timer` to the
        sorted set `timers` due at `deadline`, add `log` to the agent state log and publish
        `messages` (channel, payload), only if the call still rings this agent. False when
        it moved on."""
        args: list[str | int | float | bytes] = [agent_id, deadline, timer, len(fields),
                                                 len(log), AGENT_LOG_MAXLEN]
        for pairs in (fields.items(), log.items(), messages):
            for name, value in pairs:
                args += [name, value]
        keys = [self.keys.call(call_id), timers, self.keys.agent_log]
        return bool(await self._ring(keys=keys, args=args))

    async def tell_agent(self, channel: str, payloads: Iterable[bytes],
                         log: Mapping[str, str | int | float]) -> None:
        """Publish `payloads` on an agent's channel, in order, and add `log` to the agent
        state log, in one round trip."""
        if self._pipe is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.publish(channel, payload)
                self.log_agent_state(pipe, log)
                await pipe.execute()
            return
        await self._pipe.execute_many([
            *(("PUBLISH", channel, payload) for payload in payloads),
            ("XADD", self.keys.agent_log, "MAXLEN", "~", AGENT_LOG_MAXLEN, "*", *_flat(log))])

    def log_agent_state(self, pipe: Pipeline, fields: Mapping[str, str | int | float]) -> None:
        """Add an agent state change to the log that reports are built from (stored in the
        database in batches, cti/agent_log.py)."""
        entry: _Mapping = dict(fields)
        pipe.xadd(self.keys.agent_log, entry, maxlen=AGENT_LOG_MAXLEN, approximate=True)

    async def position(self, call_id: str, queue: str) -> int | None:
        rank = cast(int | None, await self.redis.zrank(self.keys.waiting(queue), call_id))
        return None if rank is None else rank + 1

    async def waiting_count(self, queue: str) -> int:
        return await self.redis.zcard(self.keys.waiting(queue))

    async def queue_names(self) -> set[str]:
        return cast(set[str], await self.redis.smembers(self.keys.queues))

    async def waiting_heads(self, queues: Iterable[str], depth: int) -> list[WaitingCall]:
        """The first ``depth`` calls of each queue, with what routing needs of them."""
        return (await self.waiting_heads_at(queues, depth))[0]

    async def waiting_heads_at(self, queues: Iterable[str],
                               depth: int) -> tuple[list[WaitingCall], float | None]:
        """The waiting heads, and when Redis read them (None: no queue to read)."""
        queues = list(queues)
        if not queues:
            return [], None
        *rows, seen = await self._heads(keys=[self.keys.waiting(q) for q in queues],
                                        args=[depth, self.keys.call("")])
        return [WaitingCall(call_id, float(score), float(offered), decode_rings(rings),
                            queues[int(index) - 1])
                for call_id, score, offered, rings, index in rows], float(seen)

    async def live_calls(self) -> list[dict[str, str]]:
        ids = cast(set[str], await self.redis.smembers(self.keys.calls))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hgetall(self.keys.call(call_id))
            rows = await pipe.execute()
        return [row for row in rows if row]

    # Transitions of a call and its agent together (routing/transitions.py) ------------

    async def answer(self, call_id: str, agent_id: int, now: float, *, timers: str,
                     rona: str, event: tuple[str, bytes] | None = None,
                     **fields: str | int | float) -> Step:
        """Ringing -> connected, the agent on the call, its ring timer gone. A call that
        rings another agent answers (False, "wrong_agent:<id>")."""
        keys = [self.keys.call(call_id), self._event_key(call_id, event),
                self.keys.agent(agent_id), timers]
        result = await self._answer(keys=keys, args=[
            agent_id, *_event_args(event), now, rona, self._pool_prefix, *_flat(fields)])
        return self._step(result, wrong_agent=True)

    async def ring_no_answer(self, call_id: str, agent_id: int,
                             now: float) -> tuple[dict[str, str], dict[str, str]] | None:
        """Ringing this agent -> queued, the agent not-ready 'missed'. The call and the
        agent after, or None when the call moved on."""
        keys = [self.keys.call(call_id), self.keys.agent(agent_id), self.keys.queues]
        result = await self._ring_no_answer(keys=keys, args=[
            agent_id, now, self._pool_prefix, self.keys.waiting("")])
        if not result[0]:
            return None
        return _pairs(result[1]), _pairs(result[2])

    async def hang_up(self, call_id: str, expected: str, agent_id: int | None, now: float, *,
                      timers: str, wrap_until: float, wrap_timer: str, rona: str,
                      event: tuple[str, bytes] | None = None, consulted: int | None = None,
                      watched: Iterable[str] = (), **fields: str | int | float) -> Step:
        """call.ended on a call in state `expected` ringing or talking to `agent_id`:
        connected (held, consulting) -> wrap_up with the agent, the `consulted` agent
        freed; else abandoned (out of Redis, agent freed). The step also says whether any
        key of `watched` exists (Step.watched)."""
        keys = [self.keys.call(call_id), self._event_key(call_id, event),
                self.keys.agent("" if agent_id is None else agent_id), timers, self.keys.calls,
                self.keys.call(call_id) if consulted is None else self.keys.agent(consulted),
                *watched]
        result = await self._hang_up(keys=keys, args=[
            expected, "" if agent_id is None else agent_id, *_event_args(event), now,
            self._pool_prefix, self.keys.waiting(""), wrap_until, wrap_timer, rona,
            *_flat(fields)])
        return self._step(result)

    async def transfer(self, call_id: str, agent_id: int | None, queue: str, score: float,
                       now: float, *, timers: str, wrap_until: float, wrap_timer: str,
                       event: tuple[str, bytes] | None = None, version: str | None = None,
                       **fields: str | int | float) -> Step:
        """Connected to `agent_id` -> queued in `queue`, the agent into wrap-up; only at
        `version` when given (else lost with state "stale": the call moved on)."""
        keys = [self.keys.call(call_id), self._event_key(call_id, event),
                self.keys.agent("" if agent_id is None else agent_id), timers, self.keys.queues]
        result = await self._transfer(keys=keys, args=[
            "" if agent_id is None else agent_id, *_event_args(event), now, self._pool_prefix,
            self.keys.waiting(""), queue, score, wrap_until, wrap_timer,
            "" if version is None else version, *_flat(fields)])
        if int(result[0]) == 3:
            return Step(False, STALE, {})
        return self._step(result)

    async def end_wrap_up(self, agent_id: int, call_id: str, now: float, *, timers: str,
                          wrap_timer: str, strict: bool = False) -> WrapUpEnd:
        """wrapup.done or its timer: the call ends (if it is still in this agent's wrap-up)
        and the agent leaves it, taking the best waiting call if it goes available, unless
        another caller did it first (won False). `strict`: only if the call is still in this
        agent's wrap-up; else nothing changes (won False)."""
        keys = [self.keys.agent(agent_id), self.keys.call(call_id), timers, self.keys.calls,
                self.keys.stats]
        result = await self._end_wrap_up(keys=keys, args=[
            call_id, now, self._pool_prefix, self.keys.waiting(""), wrap_timer, agent_id,
            self.keys.call(""), "1" if strict else "0"])
        if not result[0]:
            return WrapUpEnd(False, {}, {})
        return WrapUpEnd(True, _pairs(result[1]), _pairs(result[2]),
                         taken(result[4], result[3]))

    async def set_state(self, agent_id: int, state: AgentState, reason: str,
                        now: float) -> tuple[int, str, dict[str, str], Taken | None]:
        """An agent's own choice: 1 done, 2 kept for after its wrap-up, 0 busy, -1 unknown;
        with the state before, the agent after (when done) and the waiting call it took in
        the same step, going available."""
        result = await self._set_state(keys=[self.keys.agent(agent_id)], args=[
            state.value, reason, now, self._pool_prefix, self.keys.call(""),
            self.keys.waiting("")])
        if len(result) < 3:
            return int(result[0]), result[1], {}, None
        return int(result[0]), result[1], _pairs(result[2]), taken(result[2], result[3])

    async def console_gone(self, agent_id: int, reason: str,
                           now: float) -> tuple[int, dict[str, str]]:
        """1 and the agent after: it went not-ready; 2: not-ready kept for after its call;
        0: nothing to do."""
        result = await self._console_gone(keys=[self.keys.agent(agent_id)], args=[
            reason, now, self._pool_prefix])
        return int(result[0]), _pairs(result[1] if len(result) > 1 else None)

    async def console_back(self, agent_id: int, reason: str) -> bool:
        return bool(await self._console_back(keys=[self.keys.agent(agent_id)], args=[reason]))

    async def queued_notice(self, call_id: str) -> QueuedAt | None:
        """Where a waiting call stands and its estimated wait, noted on it as announced;
        None when it no longer waits."""
        result = await self._queued_notice(
            keys=[self.keys.call(call_id), self.keys.stats, self.keys.callbacks],
            args=[self.keys.waiting(""), self._pool_prefix, DEFAULT_AHT_S, self.keys.call("")])
        return _queued_at(result)

    async def average_handle_s(self) -> float | None:
        """The recent average handle time (talk and wrap-up), None before any call."""
        aht = await self.redis.hget(self.keys.stats, "aht")
        return None if aht is None else float(aht)

    def _event_key(self, call_id: str, event: tuple[str, bytes] | None) -> str:
        return event[0] if event else self.keys.call(call_id)

    @staticmethod
    def _step(result: list, *, wrong_agent: bool = False) -> Step:  # type: ignore[type-arg]
        code = int(result[0])
        if code == 2:
            raise EventSeen(result[1])
        if code == 3 and wrong_agent:
            return Step(False, f"wrong_agent:{result[1]}", {})
        if code != 1:
            return Step(False, result[1], {})
        other = _pairs(result[4]) if len(result) > 4 else {}
        watched = bool(int(result[5])) if len(result) > 5 else True
        return Step(True, result[1], _pairs(result[2]), int(result[3]), other, watched)


def _queued_at(result: list) -> QueuedAt | None:  # type: ignore[type-arg]
    if not result[0]:
        return None
    return QueuedAt(result[1], int(result[2]), int(result[3]), int(result[4]))
