# ruff: noqa: F811 - the `race` fixture is imported from test_races and named by its tests
"""Colliding consult transitions, driven from two sides at once on one node and on two
(tests/test_races.py's Race: two apps sharing one Redis and one database), against SQLite
and PostgreSQL: the consult's completion against the caller hanging up, its cancel against
its completion, the consulted agent's ring-no-answer against its answer, two calls
consulting one agent at once, and a consult starting as the caller hangs up. After every
round one side won, nobody is left holding the call wrongly, and the shared invariants of
test_races hold."""

from __future__ import annotations

import asyncio
from typing import Any

from core.timers import Timer
from cti.calls import CallError
from cti.consult import consult_timer
from cti.schemas import ConsultAnswered, ConsultCompleted, ConsultEnded
from routing.states import AgentState
from tests.test_races import Race, Side, database_url, race  # noqa: F401 - fixtures

ROUNDS = 25


async def _answered(race: Race, side: Side, call_id: str, b: int) -> Any:
    return await race.event(side, ConsultAnswered(
        type="consult.answered", event_id=f"ca-{call_id}", call_id=call_id, agent_id=b))


async def _completed(race: Race, side: Side, call_id: str) -> Any:
    return await race.event(side, ConsultCompleted(
        type="consult.completed", event_id=f"cc-{call_id}", call_id=call_id))


async def _cancelled(race: Race, side: Side, call_id: str) -> Any:
    return await race.event(side, ConsultEnded(
        type="consult.ended", event_id=f"ce-{call_id}", call_id=call_id))


async def _consult(race: Race, call_id: str, a: int, b: int, answered: bool) -> None:
    """A talks to a caller and consults B (answered or still ringing)."""
    await race.state(race.a, b, AgentState.not_ready, "break")
    await race.connected(call_id, a)
    await race.state(race.a, b, AgentState.available)
    reserved = await race.a.calls.consult_start(call_id, a, to_agent_id=b, to_queue=None,
                                                notes="")
    assert reserved.agent_id == b
    if answered:
        assert await _answered(race, race.a, call_id, b) is not None


async def _finish(race: Race, call_id: str, *agents: int) -> None:
    """End the call and every wrap-up the round left."""
    await race.end(race.a, call_id)
    for agent in agents:
        await race.a.calls.on_timer(Timer("wrapup", str(agent), call_id))
    for agent in agents:
        assert (await race.store.agent(agent))["call_id"] == "", agent
    await race.check([call_id])


async def _agent(race: Race, agent_id: int) -> tuple[str, str]:
    agent = await race.store.agent(agent_id)
    return agent["state"], agent["call_id"]


async def test_consult_completed_against_caller_hang_up(race: Race) -> None:
    a, b = await race.new_agent("ann"), await race.new_agent("bo")
    for n in range(ROUNDS):
        call_id = f"cvh-{n}"
        await _consult(race, call_id, a, b, answered=True)
        await race.both(_completed(race, race.a, call_id), race.end(race.b, call_id))
        call = await race.store.call(call_id)
        assert call["state"] == "wrap_up", call
        assert await _agent(race, a) == ("wrap_up", call_id)
        # B took the call and wraps it up, or was freed by the hang-up.
        assert await _agent(race, b) in (("wrap_up", call_id), ("available", "")), n
        assert (call["wrap_agent"] == str(b)) == (await _agent(race, b) == ("wrap_up", call_id))
        await race.check([call_id])
        await _finish(race, call_id, a, b)


async def test_consult_cancel_against_completion(race: Race) -> None:
    a, b = await race.new_agent("cat"), await race.new_agent("di")
    for n in range(ROUNDS):
        call_id = f"cvc-{n}"
        await _consult(race, call_id, a, b, answered=True)
        results = [r is not None for r in await _both(
            race, _cancelled(race, race.a, call_id), _completed(race, race.b, call_id))]
        assert results.count(True) == 1, results
        call = await race.store.call(call_id)
        assert call["state"] == "connected" and call["consult_agent"] == ""
        if results[0]:  # cancelled: the caller back with A, B free
            assert call["agent_id"] == str(a) and await _agent(race, b) == ("available", "")
            assert await _agent(race, a) == ("on_call", call_id)
        else:  # completed: the caller with B, A wrapping up
            assert call["agent_id"] == str(b) and await _agent(race, b) == ("on_call", call_id)
            assert await _agent(race, a) == ("wrap_up", call_id)
        await race.check([call_id])
        await _finish(race, call_id, a, b)


async def test_consult_ring_no_answer_against_answer(race: Race) -> None:
    a, b = await race.new_agent("eve"), await race.new_agent("fu")
    for n in range(ROUNDS):
        call_id = f"rva-{n}"
        await _consult(race, call_id, a, b, answered=False)
        results = await _both(race, _answered(race, race.a, call_id, b),
                              race.b.calls.on_timer(consult_timer(call_id, b)))
        call = await race.store.call(call_id)
        if results[0] is not None:  # answered first: the timer found nothing to do
            assert call["state"] == "consulting", call
            assert await _agent(race, b) == ("on_call", call_id)
        else:
            assert (call["state"], call["consult_agent"]) == ("on_hold", ""), call
            agent = await race.store.agent(b)
            assert (agent["state"], agent["reason"], agent["call_id"]) == (
                "not_ready", "missed", "")
        assert await _agent(race, a) == ("on_call", call_id)
        await race.check([call_id])
        await _finish(race, call_id, a, b)


async def _both(race: Race, first: Any, second: Any) -> list[Any]:
    return list(await asyncio.gather(first, second))


async def _start(race: Race, side: Side, call_id: str, a: int, b: int) -> bool:
    """A consult of `b` started from `side`; False when refused (B taken, the call over)."""
    try:
        await side.calls.consult_start(call_id, a, to_agent_id=b, to_queue=None, notes="")
    except CallError:
        return False
    return True


async def test_two_calls_consulting_one_agent_reserve_it_once(race: Race) -> None:
    a1, a2 = await race.new_agent("gil"), await race.new_agent("hal")
    b = await race.new_agent("ida")
    for n in range(ROUNDS):
        first, second = f"two-a-{n}", f"two-b-{n}"
        for idle in (b, a2):
            await race.state(race.a, idle, AgentState.not_ready, "break")
        await race.connected(first, a1)
        await race.connected(second, a2)
        await race.state(race.a, b, AgentState.available)
        won = await _both(race, _start(race, race.a, first, a1, b),
                          _start(race, race.b, second, a2, b))
        assert won.count(True) == 1, won
        winner = first if won[0] else second
        states = [(await race.store.call(c))["state"] for c in (first, second)]
        assert sorted(states) == ["connected", "consult_ringing"], states
        assert await _agent(race, b) == ("ringing", winner)
        await race.check([first, second])
        loser = second if won[0] else first
        await _finish(race, winner, a1 if won[0] else a2, b)
        await _finish(race, loser, a2 if won[0] else a1)


async def test_consult_start_against_caller_hang_up(race: Race) -> None:
    a, b = await race.new_agent("jo"), await race.new_agent("ken")
    for n in range(ROUNDS):
        call_id = f"svh-{n}"
        await race.state(race.a, b, AgentState.not_ready, "break")
        await race.connected(call_id, a)
        await race.state(race.a, b, AgentState.available)
        await _both(race, _start(race, race.a, call_id, a, b), race.end(race.b, call_id))
        call = await race.store.call(call_id)
        assert call["state"] == "wrap_up", call
        # Whichever went first, B is not left holding a call that ended.
        assert await _agent(race, b) == ("available", "")
        assert await _agent(race, a) == ("wrap_up", call_id)
        await race.check([call_id])
        await _finish(race, call_id, a, b)
