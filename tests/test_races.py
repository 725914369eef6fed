"""Colliding transitions of the call path, driven from two sides at once.

The later features' transitions (hold, the recording's PCI pause, a supervisor setting
an agent's state) are raced against the call path's the same way at the end.

Each pair runs for many rounds, on one node (both sides on the same CallService) and on
two nodes (two apps sharing one Redis and one database), against SQLite and PostgreSQL.
After every round the invariants hold whatever the interleaving: each call completed at
most once and exactly when its record says it ended, no agent holds two calls, no call is
in two places, no key of a finished call is left behind, and the wallboard's totals equal
the records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.app import create_app
from core.appkeys import CALLS, DIRECTORY, RECOVERY, WALLBOARD
from core.keys import Keys
from core.models import Call, Interaction
from core.settings import Settings
from core.timers import Timer
from cti.calls import CallError
from cti.schemas import (
    CallAnswered,
    CallEnded,
    CallHeld,
    CallOffered,
    CallTransferred,
    RecordingPaused,
    RecordingReady,
)
from cti.service import CallService, Outcome
from routing.service import RoutingError
from routing.states import AgentState
from routing.store import RoutingStore
from tests.conftest import Center
from tests.waits import eventually

ROUNDS = 50
# Talking calls written back at once in each round of the live state's rebuild.
REBUILT_CALLS = 4
PBX = "pbx-1"
ANI = "+8613900000001"


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


@dataclass
class Side:
    calls: CallService
    app: Any


@dataclass
class Race:
    a: Side
    b: Side
    center: Center
    notes: Counter[tuple[str, str]] = field(default_factory=Counter)
    offered: int = 0

    @property
    def store(self) -> RoutingStore:
        return self.a.calls.store

    @property
    def keys(self) -> Keys:
        return self.a.calls.keys

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        self.notes[name, str(data.get("call_id") or data.get("id"))] += 1

    async def new_agent(self, name: str) -> int:
        agent_id = await self.center.add_agent(name)
        await self.a.app[DIRECTORY].ensure_registered(agent_id)
        return agent_id

    async def event(self, side: Side, frame: Any) -> Outcome | None:
        """The event applied, or None when it lost (refused on what the call is now)."""
        try:
            return await side.calls.handle(frame, PBX)
        except (CallError, RoutingError):
            return None

    async def offer(self, side: Side, call_id: str) -> Outcome | None:
        self.offered += 1
        return await self.event(side, CallOffered(type="call.offered", event_id=f"o-{call_id}",
                                                  call_id=call_id, ani=ANI))

    async def answer(self, side: Side, call_id: str, agent_id: int) -> Outcome | None:
        return await self.event(side, CallAnswered(
            type="call.answered", event_id=f"a-{call_id}", call_id=call_id, agent_id=agent_id))

    async def end(self, side: Side, call_id: str) -> Outcome | None:
        return await self.event(side, CallEnded(type="call.ended", event_id=f"e-{call_id}",
                                                call_id=call_id, cause="caller_hangup"))

    async def transfer(self, side: Side, call_id: str) -> Outcome | None:
        return await self.event(side, CallTransferred(
            type="call.transferred", event_id=f"t-{call_id}", call_id=call_id,
            to_queue="default"))

    async def hold(self, side: Side, call_id: str) -> Outcome | None:
        return await self.event(side, CallHeld(type="call.held", event_id=f"h-{call_id}",
                                               call_id=call_id))

    async def pause(self, side: Side, call_id: str) -> Outcome | None:
        return await self.event(side, RecordingPaused(
            type="recording.paused", event_id=f"p-{call_id}", call_id=call_id))

    async def interaction(self, call_id: str) -> Interaction:
        async with self.center.sessions() as session:  # type: ignore[operator]
            row = await session.scalar(select(Interaction).where(Interaction.call_id == call_id))
        assert row is not None, call_id
        return row

    async def state(self, side: Side, agent_id: int, state: AgentState,
                    reason: str = "") -> None:
        with contextlib.suppress(RoutingError):
            await side.calls.set_agent_state(agent_id, state, reason)

    async def wrapup_done(self, side: Side, agent_id: int, call_id: str) -> None:
        with contextlib.suppress(CallError):
            await side.calls.wrapup_done(agent_id, call_id, "resolved", "")

    async def ringing(self, call_id: str, agent_id: int) -> None:
        await self.state(self.a, agent_id, AgentState.available)
        await self.offer(self.a, call_id)
        assert (await self.store.call(call_id))["agent_id"] == str(agent_id)

    async def connected(self, call_id: str, agent_id: int) -> None:
        await self.ringing(call_id, agent_id)
        assert await self.answer(self.a, call_id, agent_id) is not None

    async def wrapping(self, call_id: str, agent_id: int) -> None:
        await self.connected(call_id, agent_id)
        assert await self.end(self.a, call_id) is not None

    async def finish(self, call_id: str, agent_id: int) -> None:
        """Whatever the race left: hang the call up and end its agent's wrap-up."""
        await self.end(self.a, call_id)
        await self.a.calls.on_timer(Timer("wrapup", str(agent_id), call_id))
        agent = await self.store.agent(agent_id)
        assert agent["call_id"] == "", agent

    async def both(self, first: Awaitable[Any], second: Awaitable[Any]) -> None:
        await asyncio.gather(first, second)

    async def check(self, call_ids: list[str]) -> None:
        await self.check_calls(call_ids)
        await self._wallboard_equals_records()

    async def check_calls(self, call_ids: list[str]) -> None:
        """The invariants but the wallboard's (its counters are live state too)."""
        await self._one_place_each()
        await self._no_leftovers()
        await self._completed_once(call_ids)

    async def lose_live_state(self) -> None:
        """Redis restarted empty: every key of the center gone."""
        keys = [k async for k in self.store.redis.scan_iter(f"{self.keys.prefix}:*")]
        await self.store.redis.delete(*keys)

    async def rebuilt(self) -> bool:
        """A node wrote the live state back (cti/recovery.py) and let go of it."""
        redis, prefix = self.store.redis, self.keys.prefix
        return bool(await redis.exists(f"{prefix}:epoch")
                    and not await redis.exists(f"{prefix}:lock:rebuild"))

    async def _one_place_each(self) -> None:
        live = await self.store.live_calls()
        live_ids = {c["id"] for c in live}
        assert live_ids == set(await self.store.redis.smembers(self.keys.calls))
        for queue in await self.store.queue_names():
            for call_id in await self.store.redis.zrange(self.keys.waiting(queue), 0, -1):
                call = await self.store.call(call_id)
                assert (call.get("state"), call.get("queue")) == ("queued", queue), call
        holders = Counter()
        for call in live:
            if call["state"] == "queued":
                assert await self.store.redis.zscore(self.keys.waiting(call["queue"]),
                                                     call["id"]) is not None, call
            if call["state"] in ("ringing", "connected"):
                holders[call["agent_id"]] += 1
                agent = await self.store.agent(int(call["agent_id"]))
                assert agent["call_id"] == call["id"], (call, agent)
        assert all(n == 1 for n in holders.values()), holders
        await self._held_calls_wait_nowhere({c["id"] for c in live
                                             if c["state"] != "queued"})
        timers = self.a.calls.timers.key
        for agent in await self.store.agents():
            if agent["state"] in ("ringing", "on_call"):
                assert agent.get("call_id") in live_ids, agent
            elif agent.get("call_id") and agent["call_id"] not in live_ids:
                # Wrapping up a call that went on without it (transferred, then ended):
                # its wrap-up timer still ends it.
                timer = Timer("wrapup", agent["id"], agent["call_id"]).member
                assert agent["state"] == "wrap_up", agent
                assert await self.store.redis.zscore(timers, timer) is not None, agent

    async def _held_calls_wait_nowhere(self, held: set[str]) -> None:
        """A call an agent holds (or that ended) is in no queue's index of waiting calls
        (routing/queue_index.py)."""
        async for key in self.store.redis.scan_iter(self.keys.pool_waiting("*")):
            waiting = set(await self.store.redis.zrange(key, 0, -1))
            assert not waiting & held, (key, waiting & held)

    async def _no_leftovers(self) -> None:
        """Every key of a call (its hash, monitor, pending commands) belongs to a live call
        or expires; every event key and command expires."""
        live = set(await self.store.redis.smembers(self.keys.calls))
        per_call = [self.keys.call, self.keys.monitor, self.keys.call_command,
                    self.keys.calls_commands]
        for key_of in [*per_call, self.keys.event, self.keys.command]:
            prefix = key_of("")
            async for key in self.store.redis.scan_iter(f"{prefix}*", count=1000):
                owner = key.removeprefix(prefix)
                ttl = await self.store.redis.ttl(key)
                assert (key_of in per_call and owner in live) or ttl > 0, \
                    f"{key} left behind (ttl {ttl})"

    async def _completed_once(self, call_ids: list[str]) -> None:
        async with self.center.sessions() as session:  # type: ignore[operator]
            states = dict((await session.execute(
                select(Call.id, Call.state).where(Call.id.in_(call_ids)))).all())
        for call_id in call_ids:
            completed = self.notes["call.completed", call_id]
            assert completed == (states.get(call_id) == "ended"), (call_id, states, completed)

    async def _wallboard_equals_records(self) -> None:
        for side in (self.a, self.b):
            await side.app[WALLBOARD].flush()
        totals: Counter[str] = Counter()
        async for key in self.store.redis.scan_iter(f"{self.keys.stats}:*"):
            for name in ("all|handled", "all|offered"):
                totals[name] += int(float(await self.store.redis.hget(key, name) or 0))
        async with self.center.sessions() as session:  # type: ignore[operator]
            ended = await session.scalar(select(func.count()).where(Call.state == "ended"))
        assert totals["all|handled"] == ended == sum(
            n for (name, _), n in self.notes.items() if name == "call.completed")
        assert totals["all|offered"] == self.offered


@pytest.fixture(params=["one_node", "two_nodes"])
async def race(request: pytest.FixtureRequest, aiohttp_server: Any, settings: Settings,
               sessions: Any) -> AsyncIterator[Race]:
    server = await aiohttp_server(create_app(settings))
    a = Side(server.app[CALLS], server.app)
    b = a
    if request.param == "two_nodes":
        other = await aiohttp_server(create_app(settings.model_copy(update={"node_id": "b"})))
        b = Side(other.app[CALLS], other.app)
    race = Race(a, b, Center(server, sessions, settings))
    for side in {id(a): a, id(b): b}.values():
        side.calls.observers.append(race.observe)
    yield race


async def test_answer_against_ring_no_answer(race: Race) -> None:
    agent = await race.new_agent("ann")
    for n in range(ROUNDS):
        call_id = f"rona-{n}"
        await race.ringing(call_id, agent)
        await race.both(race.answer(race.a, call_id, agent), race.b.calls.on_timer(
            Timer("rona", call_id, str(agent))))
        call = await race.store.call(call_id)
        assert call["state"] in ("connected", "queued"), call
        await race.check([call_id])
        await race.finish(call_id, agent)
        await race.check([call_id])


async def test_hang_up_against_reservation(race: Race) -> None:
    agent = await race.new_agent("ben")
    for n in range(ROUNDS):
        call_id = f"res-{n}"
        await race.state(race.a, agent, AgentState.not_ready, "break")
        await race.offer(race.a, call_id)
        await race.both(race.end(race.a, call_id),
                        race.state(race.b, agent, AgentState.available))
        assert await race.store.call(call_id) == {}
        ben = await race.store.agent(agent)
        assert (ben["state"], ben["call_id"]) == ("available", ""), ben
        await race.check([call_id])


async def test_wrap_up_done_against_wrap_up_timer(race: Race) -> None:
    agent = await race.new_agent("cat")
    for n in range(ROUNDS):
        call_id = f"wrap-{n}"
        await race.wrapping(call_id, agent)
        await race.both(race.wrapup_done(race.a, agent, call_id),
                        race.b.calls.on_timer(Timer("wrapup", str(agent), call_id)))
        assert race.notes["call.completed", call_id] == 1
        await race.check([call_id])


async def test_hang_up_against_queue_position_announcement(race: Race) -> None:
    for n in range(ROUNDS):
        call_id = f"ann-{n}"
        await race.offer(race.a, call_id)  # nobody is available: it waits
        await race.both(race.end(race.a, call_id), race.b.calls._queued_notice(call_id))
        assert not await race.store.redis.exists(race.keys.call(call_id))
        # A later event for the call is applied on what its record says (abandoned).
        late = await race.event(race.a, RecordingReady(
            type="recording.ready", event_id=f"rec-{call_id}", call_id=call_id,
            path=f"/r/{call_id}.wav"))
        assert late is not None and late.ack["type"] == "ack"
        await race.check([call_id])


async def test_transfer_against_hang_up(race: Race) -> None:
    agent = await race.new_agent("dan")
    for n in range(ROUNDS):
        call_id = f"xfer-{n}"
        await race.connected(call_id, agent)
        await race.both(race.transfer(race.a, call_id), race.end(race.b, call_id))
        dan = await race.store.agent(agent)
        assert (dan["state"], dan["call_id"]) == ("wrap_up", call_id), dan
        await race.check([call_id])
        await race.finish(call_id, agent)
        await race.check([call_id])


async def test_agent_state_change_against_reservation(race: Race) -> None:
    agent = await race.new_agent("eve")
    for n in range(ROUNDS):
        call_id = f"state-{n}"
        await race.state(race.a, agent, AgentState.available)
        await race.both(race.offer(race.a, call_id),
                        race.state(race.b, agent, AgentState.not_ready, "lunch"))
        eve, call = await race.store.agent(agent), await race.store.call(call_id)
        if eve["state"] == "ringing":
            assert (call["state"], call["agent_id"]) == ("ringing", str(agent))
        else:
            assert (eve["state"], call["state"]) == ("not_ready", "queued"), (eve, call)
        await race.check([call_id])
        await race.end(race.a, call_id)
        await race.check([call_id])


async def test_console_gone_against_call_offered(race: Race) -> None:
    agent = await race.new_agent("fay")
    for n in range(ROUNDS):
        call_id = f"gone-{n}"
        await race.state(race.a, agent, AgentState.available)
        await race.both(race.offer(race.a, call_id),
                        race.b.calls.console_gone(agent, race.b.calls.clock()))
        fay, call = await race.store.agent(agent), await race.store.call(call_id)
        if fay["state"] == "ringing":
            assert (fay["after_wrap"], call["agent_id"]) == ("not_ready", str(agent))
        else:
            assert (fay["state"], fay["reason"], call["state"]) == (
                "not_ready", "disconnected", "queued"), (fay, call)
        await race.end(race.a, call_id)
        fay = await race.store.agent(agent)
        assert (fay["state"], fay["reason"], fay["call_id"]) == (
            "not_ready", "disconnected", ""), fay
        await race.check([call_id])


async def test_ring_no_answer_against_reservation_by_another_agent(race: Race) -> None:
    """The ring times out (the call back in its queue, then routed again) while another
    agent goes available (and takes the best waiting call): whichever comes first, the
    other agent ends up ringing with the call, once."""

    async def ring_no_answer(call_id: str, agent_id: int) -> None:
        await race.a.calls.on_timer(Timer("rona", call_id, str(agent_id)))

    await _requeue_against_reservation(race, "rona", ring_no_answer, routes_again=True)


async def test_requeue_against_reservation_by_another_agent(race: Race) -> None:
    """The simulator's and benches' requeue (`REQUEUE`: the agent did not take the call)
    raced with another agent going available: the call is reserved only once it is back
    in its queue, never left in a waiting set or index while it rings."""

    async def requeue(call_id: str, agent_id: int) -> None:
        call, now = await race.store.call(call_id), race.a.calls.clock()
        if await race.store.requeue(call_id, call["queue"], float(call["score"]), None,
                                    ["ringing"], now):
            await race.store.make_unavailable(agent_id, AgentState.not_ready, "missed", now,
                                              force=True, call_id="")

    await _requeue_against_reservation(race, "requeue", requeue, routes_again=False)


async def _requeue_against_reservation(
        race: Race, name: str, requeue: Callable[[str, int], Awaitable[None]], *,
        routes_again: bool) -> None:
    ringing, other = await race.new_agent(f"{name}-a"), await race.new_agent(f"{name}-b")
    for n in range(ROUNDS):
        call_id = f"{name}-{n}"
        await race.state(race.a, other, AgentState.not_ready, "break")
        await race.ringing(call_id, ringing)
        await race.both(requeue(call_id, ringing),
                        race.state(race.b, other, AgentState.available))
        missed, taker = await race.store.agent(ringing), await race.store.agent(other)
        call = await race.store.call(call_id)
        assert (missed["state"], missed["reason"], missed["call_id"]) == (
            "not_ready", "missed", ""), missed
        if taker["state"] == "ringing":
            assert (call["state"], call["agent_id"], taker["call_id"]) == (
                "ringing", str(other), call_id), (call, taker)
        else:  # went available before the call was back: nothing waited then
            assert not routes_again, (call, taker)
            assert (taker["state"], call["state"]) == ("available", "queued"), (call, taker)
        await race.check([call_id])
        await race.end(race.a, call_id)
        await race.check([call_id])


async def test_live_state_rebuild_against_the_calls_events(race: Race) -> None:
    """Redis lost the live state. While a node writes it back from the records, the PBX's
    hang-ups of those calls arrive: refused while their call is not back (the PBX sends
    them again), applied once it is. Whichever reaches a call first, a talking call is
    ended once with its agent, a waiting one abandoned, and nothing is left behind."""
    agents = [await race.new_agent(f"reb{i}") for i in range(REBUILT_CALLS)]
    for n in range(ROUNDS // 2):
        talking = [f"reb-{n}-{i}" for i in range(len(agents))]
        for agent in agents:  # each call rings the agent meant for it
            await race.state(race.a, agent, AgentState.not_ready, "break")
        for call_id, agent in zip(talking, agents, strict=True):
            await race.connected(call_id, agent)
        waiting = f"reb-{n}-w"
        await race.offer(race.a, waiting)  # everybody is busy: it waits
        await race.lose_live_state()
        await race.both(race.a.app[RECOVERY].check(), asyncio.gather(*(
            eventually(lambda c=call_id: race.end(race.b, c), 60, interval=0.02,
                       what=f"{call_id} ended")
            for call_id in [*talking, waiting])))
        await eventually(race.rebuilt, 60, what="the live state rebuilt")
        for call_id, agent in zip(talking, agents, strict=True):
            held_by, call = await race.store.agent(agent), await race.store.call(call_id)
            assert (held_by["state"], held_by["call_id"], call["state"]) == (
                "wrap_up", call_id, "wrap_up"), (held_by, call)
        assert await race.store.call(waiting) == {}
        await race.check_calls([*talking, waiting])
        for call_id, agent in zip(talking, agents, strict=True):
            await race.finish(call_id, agent)
        await race.check_calls([*talking, waiting])
        async with race.center.sessions() as session:  # type: ignore[operator]
            assert await session.scalar(select(Call.state).where(Call.id == waiting)) == \
                "abandoned"


async def test_a_recording_whose_transcription_could_not_be_queued_is_queued_on_resend(
        race: Race) -> None:
    agent = await race.new_agent("gus")
    await race.wrapping("rec-1", agent)
    queued: list[str] = []

    async def enqueue_fails_once(call_id: str, path: str, _agent: int | None) -> str:
        if not queued:
            queued.append("failed")
            raise ConnectionError("redis away")
        queued.append(path)
        return "1-0"

    race.a.calls.on_recording = enqueue_fails_once
    frame = RecordingReady(type="recording.ready", event_id="rec-ev-1", call_id="rec-1",
                           path="/r/rec-1.wav")
    with pytest.raises(ConnectionError):
        await race.a.calls.handle(frame, PBX)
    outcome = await race.a.calls.handle(frame, PBX)  # the PBX sends it again

    assert outcome.ack["duplicate"] is False
    assert queued == ["failed", "/r/rec-1.wav"]
    again = await race.a.calls.handle(frame, PBX)
    assert again.ack["duplicate"] is True and len(queued) == 2


async def test_hold_against_hang_up(race: Race) -> None:
    await _call_step_against_hang_up(race, "hal", race.hold, lambda r: r.hold_count)


async def test_recording_pause_against_hang_up(race: Race) -> None:
    await _call_step_against_hang_up(race, "ivy", race.pause,
                                     lambda r: len(r.recording_pauses or []))


async def _call_step_against_hang_up(race: Race, name: str,
                                     step: Callable[[Side, str], Awaitable[Outcome | None]],
                                     counted: Callable[[Interaction], int]) -> None:
    """A step of a talking call (hold, the recording's pause) raced with its hang-up: the
    hang-up always ends the call (closing what the step opened), and the record counts
    the step exactly when it won."""
    agent = await race.new_agent(name)
    for n in range(ROUNDS):
        call_id = f"{name}-{n}"
        await race.connected(call_id, agent)
        stepped, ended = await asyncio.gather(step(race.a, call_id), race.end(race.b, call_id))
        assert ended is not None
        held_by, call = await race.store.agent(agent), await race.store.call(call_id)
        assert (held_by["state"], held_by["call_id"], call["state"],
                call.get("rec_paused_at") or "") == ("wrap_up", call_id, "wrap_up", ""), call
        await race.check([call_id])
        await race.finish(call_id, agent)
        await race.check([call_id])
        record = await race.interaction(call_id)
        assert counted(record) == (stepped is not None), (call_id, record, stepped)


async def test_supervisor_state_against_reservation(race: Race) -> None:
    agent = await race.new_agent("jon")
    for n in range(ROUNDS):
        call_id = f"sup-{n}"
        await race.state(race.a, agent, AgentState.available)
        await race.both(race.offer(race.a, call_id), race.b.calls.supervise_state(
            agent, AgentState.not_ready, "meeting", "supervisor:sue"))
        jon, call = await race.store.agent(agent), await race.store.call(call_id)
        if jon["state"] == "ringing":  # reserved first: the supervisor's state waits
            assert (call["agent_id"], jon["after_wrap"], jon["after_wrap_by"]) == (
                str(agent), "not_ready", "supervisor:sue"), (jon, call)
        else:
            assert (jon["state"], jon["reason"], call["state"]) == (
                "not_ready", "meeting", "queued"), (jon, call)
        await race.check([call_id])
        await race.end(race.a, call_id)
        jon = await race.store.agent(agent)
        assert (jon["state"], jon["reason"], jon["call_id"]) == ("not_ready", "meeting", ""), jon
        await race.check([call_id])


async def test_console_back_against_wrap_up_done(race: Race) -> None:
    agent = await race.new_agent("kim")
    for n in range(ROUNDS):
        call_id = f"back-{n}"
        await race.wrapping(call_id, agent)
        await race.a.calls.console_gone(agent, race.a.calls.clock())  # not ready after it
        await race.both(race.wrapup_done(race.a, agent, call_id),
                        race.b.calls.console_back(agent))
        kim = await race.store.agent(agent)
        # Back first: the wrap-up frees the agent; wrap-up first: the absence applied.
        assert (kim["state"], kim["reason"]) in (("available", ""),
                                                 ("not_ready", "disconnected")), kim
        assert kim["call_id"] == "" and race.notes["call.completed", call_id] == 1, kim
        await race.check([call_id])
        await race.state(race.a, agent, AgentState.available)
