"""Blind transfer from the desktop (issue 17): to a queue, an agent or a number, through
`call.control` -> `route.control` -> the PBX's `call.transferred`; the transferring
agent's wrap-up of its own leg (it used to be refused with illegal_transition), the legs on
the record, bad targets, and a transfer racing the caller's hang-up."""

from __future__ import annotations

import asyncio
import functools

import pytest
from sqlalchemy import select

from core import appkeys
from core.models import Interaction
from tests.conftest import make_settings
from tests.rest import request
from tests.waits import eventually


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path, control_timeout_s=5.0)


async def _record(center, call_id: str, done=lambda r: True) -> Interaction | None:
    async with center.sessions() as session:
        record = (await session.scalars(
            select(Interaction).where(Interaction.call_id == call_id))).one()
    return record if done(record) else None


async def _store(center):
    return center.server.app[appkeys.ROUTER].store


async def test_blind_transfer_to_a_queue_reaches_another_agent_and_frees_the_first(center):
    await center.add_queue("billing", ("billing",))
    amy, ivr = await center.answered_call("amy", "t1", "+8613800000001")
    bob = await center.agent("bob", skills=("billing",))
    await bob.available()
    obeying = ivr.obey()
    reply = await amy.control("t1", "transfer", to_queue="billing")
    assert reply["type"] == "ack", reply
    pop = await bob.inbox.expect("screen_pop", call_id="t1")
    assert pop["queue"] == "billing" and pop["ani"] == "+8613800000001"
    ended = await amy.inbox.expect("call.ended", call_id="t1")
    assert ended["wrap_up_until"] > 0
    # The transferring agent finishes its own wrap-up while the call goes on with bob.
    done = await amy.request("wrapup.done", call_id="t1", disposition="follow_up",
                             notes="billing question")
    assert done["type"] == "ack", done
    await amy.inbox.expect("agent.state", state="available")
    await ivr.event("call.answered", "t1", agent_id=bob.agent_id)
    assert (await bob.control("t1", "hangup"))["type"] == "ack"
    await bob.inbox.expect("call.ended", call_id="t1")
    assert (await bob.request("wrapup.done", call_id="t1", disposition="resolved"))["type"] \
        == "ack"
    obeying.cancel()
    record = await eventually(lambda: _record(center, "t1", lambda r: r.disposition))
    assert record.agent_id == bob.agent_id and record.disposition == "resolved"
    first, second = record.legs
    assert first["agent_id"] == amy.agent_id and first["end"] == "transferred"
    assert first["to"] == "queue:billing" and first["kind"] == "blind"
    assert first["disposition"] == "follow_up" and first["notes"] == "billing question"
    assert second["agent_id"] == bob.agent_id and second["end"] == "agent_hangup"
    assert second["disposition"] == "resolved"


async def test_the_pbx_own_transfer_also_lets_the_first_agent_wrap_up(center):
    """The bug of the issue, with the PBX transferring on its own (protocol v1)."""
    amy, ivr = await center.answered_call("amy", "t2", "+8613800000002")
    bob = await center.agent("bob")
    await bob.available()
    await ivr.event("call.transferred", "t2", to_agent_id=bob.agent_id)
    await ivr.inbox.expect("route.connect", call_id="t2", agent_id=bob.agent_id)
    await ivr.event("call.answered", "t2", agent_id=bob.agent_id)
    done = await amy.request("wrapup.done", call_id="t2", disposition="resolved")
    assert done["type"] == "ack", done
    store = await _store(center)
    assert (await store.agent(amy.agent_id))["state"] == "available"
    assert (await store.call("t2"))["state"] == "connected"
    assert (await store.agent(bob.agent_id))["state"] == "on_call"


async def test_blind_transfer_to_an_agent_rings_that_agent(center):
    amy, ivr = await center.answered_call("amy", "t3", "+8613800000003")
    cat = await center.agent("cat")
    bob = await center.agent("bob")
    await cat.available()
    await bob.available()  # cat is longer idle, but the transfer names bob
    obeying = ivr.obey()
    command_seen = asyncio.create_task(amy.control("t3", "transfer", to_agent_id=bob.agent_id))
    assert (await command_seen)["type"] == "ack"
    await bob.inbox.expect("screen_pop", call_id="t3")
    obeying.cancel()


async def test_blind_transfer_to_a_number_ends_the_call_for_the_center(center):
    amy, ivr = await center.answered_call("amy", "t4", "+8613800000004")
    asked = asyncio.create_task(amy.control("t4", "transfer", to_number="+8610123456"))
    command = await ivr.command(call_id="t4")
    assert command["action"] == "transfer" and command["to_number"] == "+8610123456"
    assert command["mode"] == "blind"
    await ivr.result(command)
    assert (await asked)["type"] == "ack"
    await ivr.event("call.transferred", "t4", to_number="+8610123456")
    await amy.inbox.expect("call.ended", call_id="t4")
    assert (await amy.request("wrapup.done", call_id="t4", disposition="resolved"))["type"] \
        == "ack"
    record = await eventually(lambda: _record(center, "t4", lambda r: r.disposition))
    assert record.end_cause == "transferred" and record.outcome == "answered"
    assert record.legs[0]["to"] == "number:+8610123456"


async def test_bad_transfer_targets_are_refused_and_nothing_is_sent(center):
    amy, ivr = await center.answered_call("amy", "t5", "+8613800000005")
    gone = await center.agent("gus")  # signed in, then logged out
    await gone.request("agent.state.set", state="logged_out")
    cases = [({"to_queue": "nowhere"}, "unknown_queue"),
             ({"to_agent_id": 9999}, "unknown_agent"),
             ({"to_agent_id": gone.agent_id}, "agent_unavailable"),
             ({"to_agent_id": amy.agent_id}, "agent_unavailable"),
             ({"to_number": "call me"}, "invalid_message"),
             ({}, "invalid_message"),
             ({"to_queue": "default", "to_number": "+861"}, "invalid_message"),
             ({"to_queue": "default", "mode": "sideways"}, "invalid_message")]
    for target, code in cases:
        reply = await amy.control("t5", "transfer", **target)
        assert reply["type"] == "error" and reply["code"] == code, (target, reply)
    hold_with_target = await amy.control("t5", "hold", to_queue="default")
    assert hold_with_target["code"] == "invalid_message"
    await ivr.inbox.nothing("route.control")
    assert (await (await _store(center)).call("t5"))["state"] == "connected"


async def test_transfer_over_rest_checks_its_target(center):
    amy, ivr = await center.answered_call("amy", "t6", "+8613800000006")
    from tests.rest import request

    token = await center.login_token("sue", "supervisor")
    status, body = await request(center, "POST", "/api/v1/calls/t6/control", token,
                                 json={"action": "transfer", "to_queue": "nowhere"})
    assert status == 400 and body["error"]["code"] == "unknown_queue"
    status, _ = await request(center, "POST", "/api/v1/calls/t6/control", token,
                              json={"action": "transfer"})
    assert status == 400
    obeying = ivr.obey(confirm_first=False)
    status, body = await request(center, "POST", "/api/v1/calls/t6/control", token,
                                 json={"action": "transfer", "to_queue": "default"})
    assert status == 200, body
    await amy.inbox.expect("call.ended", call_id="t6")
    obeying.cancel()


async def test_transfer_racing_the_hang_up_leaves_no_agent_stuck(center):
    """call.transferred and call.ended for one call from two PBX connections at once, many
    rounds: whichever wins, the first agent is in wrap-up of the call, no agent is left
    ringing or talking on it, and the call is in wrap-up or gone."""
    amy = await center.agent("amy")
    bob = await center.agent("bob")
    ivr, second = await center.ivr(), await center.ivr()
    store = await _store(center)
    for n in range(8):
        call_id = f"race-{n}"
        await amy.available()
        await ivr.offer(call_id, "+8613800000030")
        connect = await ivr.inbox.expect("route.connect", call_id=call_id)
        first = amy if connect["agent_id"] == amy.agent_id else bob
        other = bob if first is amy else amy
        await other.available()
        await ivr.event("call.answered", call_id, agent_id=first.agent_id)
        ids = await asyncio.gather(ivr.send("call.transferred", call_id, to_queue="default"),
                                   second.send("call.ended", call_id, cause="caller_hangup"))
        replies = await asyncio.gather(ivr.reply_to(ids[0]), second.reply_to(ids[1]))
        assert any(r["type"] == "ack" for r in replies), replies
        await first.inbox.expect("call.ended", call_id=call_id)
        call = await store.call(call_id)
        assert call.get("state") in (None, "wrap_up"), call
        first_state = await store.agent(first.agent_id)
        assert first_state["state"] == "wrap_up" and first_state["call_id"] == call_id
        await eventually(functools.partial(_not_on, store, other.agent_id, call_id))
        reply = await first.request("wrapup.done", call_id=call_id, disposition="resolved")
        assert reply["type"] == "ack", reply
        await eventually(lambda: _idle(store, amy.agent_id, bob.agent_id))
        await amy.not_ready()
        await bob.not_ready()


async def _not_on(store, agent_id: int, call_id: str) -> bool:
    agent = await store.agent(agent_id)
    return not (agent.get("call_id") == call_id and agent["state"] in ("ringing", "on_call"))


async def _idle(store, *agent_ids: int) -> bool:
    states = [(await store.agent(a))["state"] for a in agent_ids]
    return all(s in ("available", "not_ready", "wrap_up") for s in states)


async def test_transfer_targets_list_queues_and_colleagues_available_first(center):
    """GET /api/v1/transfer-targets: queues with their waiting callers and available
    agents (bob lacks the billing skill); logged-in colleagues (not the asker, not logged
    out), available first."""
    await center.add_queue("billing", ("billing",))
    cy = await center.agent("cy")
    await cy.available()
    await cy.not_ready()
    await center.add_agent("dan")  # never logged in
    amy, ivr = await center.answered_call("amy", "t9", "+8613800000009")
    bob = await center.agent("bob")
    await bob.available()
    await ivr.offer("t10", "+8613800000010", queue="billing")  # nobody has the skill
    await ivr.inbox.expect("route.queued", call_id="t10")
    status, body = await request(center, "GET", "/api/v1/transfer-targets", amy.token)
    assert status == 200, body
    assert body["queues"] == [
        {"name": "billing", "display_name": "billing", "waiting": 1, "available": 0},
        {"name": "default", "display_name": "default", "waiting": 0, "available": 1}]
    assert [(a["name"], a["state"]) for a in body["agents"]] == [
        ("Bob", "available"), ("Cy", "not_ready")]
    status, _ = await request(center, "GET", "/api/v1/transfer-targets")
    assert status == 401
