"""Callbacks under collisions, on one node and across two (two apps on one Redis and one
database): an accepted callback is dialled once, whoever routes it, and one result
counts whoever reports it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callcenter.app import create_app
from core.appkeys import CALLBACKS, CALLS, DIRECTORY
from core.models import Callback
from core.settings import Settings
from core.timers import Timer
from cti.calls import CallError
from cti.schemas import CallbackRequested, CallbackResult, CallOffered
from cti.service import CallService
from routing.service import RoutingError
from routing.states import AgentState
from tests.conftest import Center

PBX = "pbx-1"
ROUNDS = 20


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


class Pair:
    def __init__(self, a: Any, b: Any, center: Center) -> None:
        self.a: CallService = a.app[CALLS]
        self.b: CallService = b.app[CALLS]
        self.app = a.app
        self.center = center
        self.notes: Counter[tuple[str, str]] = Counter()

    async def observe(self, name: str, data: dict[str, Any]) -> None:
        key = data.get("callback_id") or data.get("id") or data.get("call_id")
        self.notes[name, str(key)] += 1

    async def agent(self, name: str) -> int:
        agent_id = await self.center.add_agent(name)
        await self.app[DIRECTORY].ensure_registered(agent_id)
        return agent_id

    async def callback(self, call_id: str) -> str:
        """A waiting call converted to a callback (no agent free): the callback's id."""
        await self.a.handle(CallOffered(type="call.offered", event_id=f"o-{call_id}",
                                        call_id=call_id, ani="+8613900000001"), PBX)
        outcome = await self.a.handle(CallbackRequested(
            type="callback.requested", event_id=f"cb-{call_id}", call_id=call_id), PBX)
        return str(outcome.replies[0]["callback_id"])

    async def result(self, side: CallService, callback_id: str, outcome: str,
                     event_id: str) -> bool:
        with contextlib.suppress(CallError, RoutingError):
            await side.handle(CallbackResult(
                type="callback.result", event_id=event_id, callback_id=callback_id,
                call_id=callback_id, outcome=outcome), PBX)
            return True
        return False

    async def available(self, side: CallService, agent_id: int) -> None:
        with contextlib.suppress(RoutingError):
            await side.set_agent_state(agent_id, AgentState.available, "")


@pytest.fixture(params=["one_node", "two_nodes"])
async def pair(request: pytest.FixtureRequest, aiohttp_server: Any, settings: Settings,
               sessions: Any) -> AsyncIterator[Pair]:
    a = await aiohttp_server(create_app(settings))
    b = a
    if request.param == "two_nodes":
        b = await aiohttp_server(create_app(settings.model_copy(update={"node_id": "b"})))
    pair = Pair(a, b, Center(a, sessions, settings))
    for calls in {id(pair.a): pair.a, id(pair.b): pair.b}.values():
        calls.observers.append(pair.observe)
    yield pair


async def test_each_callback_is_dialled_once_whichever_node_routes_it(pair: Pair) -> None:
    agents = [await pair.agent(f"agent{n}") for n in range(4)]
    for n in range(ROUNDS):
        ids = [await pair.callback(f"r{n}-{k}") for k in range(3)]
        sides = [pair.a, pair.b]
        await asyncio.gather(
            *(pair.available(sides[i % 2], a) for i, a in enumerate(agents)),
            *(sides[i % 2].on_timer(Timer("widen", c)) for i, c in enumerate(ids)),
            *(sides[i % 2].on_timer(Timer("cbdue", c)) for i, c in enumerate(ids)))
        holders = Counter()
        for callback_id in ids:
            live = await pair.a.callbacks.get(callback_id)
            assert live["state"] == "ringing", live
            assert pair.notes["call.routed", callback_id] == 1, callback_id
            holders[live["agent_id"]] += 1
            agent = await pair.a.store.agent(int(live["agent_id"]))
            assert (agent["state"], agent["call_id"]) == ("ringing", callback_id)
        assert all(count == 1 for count in holders.values()), holders
        for callback_id in ids:  # the attempts fail for good: the agents are free again
            live = await pair.a.callbacks.get(callback_id)
            for _ in range(pair.a.callback_attempts):
                assert await pair.result(pair.a, callback_id, "failed", f"f-{callback_id}-"
                                         f"{live.get('attempts')}")
                await pair.a.on_timer(Timer("cbdue", callback_id))
                live = await pair.a.callbacks.get(callback_id) or live
        for agent_id in agents:  # busy again, so the next round's calls wait
            await pair.a.set_agent_state(agent_id, AgentState.not_ready, "break")


async def test_one_result_counts_against_another_and_the_attempts_timeout(pair: Pair) -> None:
    agent_id = await pair.agent("ann")
    for n in range(ROUNDS):
        callback_id = await pair.callback(f"res-{n}")
        await pair.available(pair.a, agent_id)
        live = await pair.a.callbacks.get(callback_id)
        assert live["state"] == "ringing", live
        won = await asyncio.gather(
            pair.result(pair.a, callback_id, "connected", f"c-{n}"),
            pair.result(pair.b, callback_id, "no_answer", f"n-{n}"),
            pair.b.on_timer(Timer("cbtry", callback_id, str(agent_id))))
        assert won[:2].count(True) <= 1, won  # the loser was refused
        after = await pair.a.callbacks.get(callback_id)
        async with pair.center.sessions() as session:  # type: ignore[operator]
            row = await session.get(Callback, callback_id)
        assert row is not None and row.attempts == 1, (won, after)
        decided = [name for name in ("callback.connected", "callback.retry")
                   if pair.notes[name, callback_id]]
        assert len(decided) == 1 and pair.notes[decided[0], callback_id] == 1, pair.notes
        if decided == ["callback.connected"]:
            assert won[0] and not won[1] and row.state == "connected"
            assert after["state"] == "connected"
            await pair.a.store.drop_call(callback_id, "default")
            await pair.a.store.make_available(agent_id, 0.0, force=True)
        else:
            assert not won[0] and row.state == "pending" and after["state"] == "scheduled"
            await pair.a.callbacks.withdraw(callback_id, Timer("cbdue", callback_id).member)
            agent = await pair.a.store.agent(agent_id)
            assert agent["call_id"] == "", agent
        await pair.a.set_agent_state(agent_id, AgentState.not_ready, "break")


async def test_a_cancel_against_an_agent_taking_the_callback_has_one_winner(pair: Pair) -> None:
    from cti.callback_desk import CallbackDialling

    agent_id = await pair.agent("cal")
    desk = pair.app[CALLBACKS]
    for n in range(ROUNDS):
        callback_id = await pair.callback(f"cancel-{n}")

        async def cancel(callback_id: str) -> bool:
            try:
                await desk.cancel(callback_id, None)
            except CallbackDialling:
                return False
            return True

        cancelled, _ = await asyncio.gather(cancel(callback_id),
                                            pair.available(pair.b, agent_id))
        live = await pair.a.callbacks.get(callback_id)
        dialled = pair.notes["call.routed", callback_id]
        async with pair.center.sessions() as session:  # type: ignore[operator]
            row = await session.get(Callback, callback_id)
        assert row is not None
        if cancelled:  # never dialled, nothing left of it
            assert (dialled, live, row.state) == (0, {}, "cancelled")
            agent = await pair.a.store.agent(agent_id)
            assert agent["call_id"] == "", agent
        else:  # the agent took it first: it is dialled once, and stays pending
            assert (dialled, live["state"], row.state) == (1, "ringing", "pending")
            assert await pair.result(pair.a, callback_id, "connected", f"c-{n}")
            await pair.a.store.drop_call(callback_id, "default")
            await pair.a.store.make_available(agent_id, 0.0, force=True)
        await pair.a.set_agent_state(agent_id, AgentState.not_ready, "break")
