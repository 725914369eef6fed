"""Consult transfer and conference through protocol v1 (issue 17): A consults B (an agent,
or a queue's longest-idle agent) while the caller holds, then completes (the caller to B,
A into wrap-up), cancels (the caller back to A, B freed) or joins all three; B not
answering is B's ring-no-answer; every bad request refused with nothing changed; a
resent `call.control` acting once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from core import appkeys
from core.models import Interaction
from tests.conftest import make_settings
from tests.waits import eventually


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    return make_settings(database_url, redis_url, redis_prefix, tmp_path, control_timeout_s=5.0,
                         ring_timeout_s=3.0)


async def _record(center, call_id: str, done=lambda r: True) -> Interaction | None:
    async with center.sessions() as session:
        record = (await session.scalars(
            select(Interaction).where(Interaction.call_id == call_id))).one()
    return record if done(record) else None


def _store(center):
    return center.server.app[appkeys.ROUTER].store


async def _states(center, call_id: str, *agents) -> tuple:
    store = _store(center)
    call = await store.call(call_id)
    return (call.get("state"), *[(await store.agent(a.agent_id))["state"] for a in agents])


async def _consulting(center, call_id: str, ani: str, notes: str = ""):
    """amy talks to a caller and consults bob, who answers: (amy, bob, ivr)."""
    amy, ivr = await center.answered_call("amy", call_id, ani)
    bob = await center.agent("bob")
    await bob.available()
    asked = asyncio.create_task(amy.control(call_id, "transfer", mode="consult",
                                            to_agent_id=bob.agent_id, notes=notes))
    command = await ivr.command(call_id=call_id)
    assert (await ivr.result(command))["type"] == "ack"
    assert (await asked)["type"] == "ack"
    await ivr.event("consult.answered", call_id, agent_id=bob.agent_id)
    await bob.inbox.expect("call.consult", call_id=call_id, state="talking")
    return amy, bob, ivr


async def test_consult_to_an_agent_pops_its_screen_and_completes_with_a_in_wrap_up(center):
    amy, ivr = await center.answered_call("amy", "k1", "+8613800000001")
    bob = await center.agent("bob")
    await bob.available()
    asked = asyncio.create_task(amy.control("k1", "transfer", mode="consult",
                                            to_agent_id=bob.agent_id, notes="wants a refund"))
    command = await ivr.command(call_id="k1")
    assert command["mode"] == "consult" and command["to_agent_id"] == bob.agent_id
    assert command["to_extension"] == "ext-bob" and command["agent_id"] == amy.agent_id
    pop = await bob.inbox.expect("screen_pop", call_id="k1")
    assert pop["consult"] == {"from_agent_id": amy.agent_id, "to": f"agent:{bob.agent_id}",
                              "notes": "wants a refund"}
    assert pop["ani"] == "+8613800000001"
    assert await _states(center, "k1", amy, bob) == ("consult_ringing", "on_call", "ringing")
    await ivr.result(command)
    assert (await asked)["type"] == "ack"
    ringing = await amy.inbox.expect("call.consult", call_id="k1", state="ringing")
    assert ringing["agent_id"] == bob.agent_id

    await ivr.event("consult.answered", "k1", agent_id=bob.agent_id)
    await amy.inbox.expect("call.consult", call_id="k1", state="talking")
    assert await _states(center, "k1", amy, bob) == ("consulting", "on_call", "on_call")

    obeying = ivr.obey()
    reply = await amy.control("k1", "consult.complete")
    assert reply["type"] == "ack", reply
    ended = await amy.inbox.expect("call.ended", call_id="k1")
    assert ended["wrap_up_until"] > 0
    await bob.inbox.expect("call.connected", call_id="k1")
    assert await _states(center, "k1", amy, bob) == ("connected", "wrap_up", "on_call")
    done = await amy.request("wrapup.done", call_id="k1", disposition="follow_up",
                             notes="handed to bob")
    assert done["type"] == "ack", done
    await amy.inbox.expect("agent.state", state="available")
    # The call is bob's now: he controls it, amy does not.
    assert (await amy.control("k1", "hold"))["code"] == "not_your_call"
    assert (await bob.control("k1", "hangup"))["type"] == "ack"
    await bob.inbox.expect("call.ended", call_id="k1")
    assert (await bob.request("wrapup.done", call_id="k1", disposition="resolved"))["type"] \
        == "ack"
    obeying.cancel()
    record = await eventually(lambda: _record(center, "k1", lambda r: r.disposition))
    assert record.agent_id == bob.agent_id and record.hold_count == 1 and record.hold_s > 0
    first, second = record.legs
    assert (first["agent_id"], first["end"], first["kind"], first["to"]) == (
        amy.agent_id, "transferred", "consult", f"agent:{bob.agent_id}")
    assert first["disposition"] == "follow_up"
    assert second["agent_id"] == bob.agent_id and second["disposition"] == "resolved"


async def test_a_cancelled_consult_gives_the_caller_back_and_frees_b(center):
    amy, bob, ivr = await _consulting(center, "k2", "+8613800000002")
    obeying = ivr.obey()
    assert (await amy.control("k2", "consult.cancel"))["type"] == "ack"
    ended = await amy.inbox.expect("call.consult", call_id="k2", state="ended")
    assert ended["cause"] == "cancelled"
    await bob.inbox.expect("call.ended", call_id="k2", reason="consult_ended")
    await bob.inbox.expect("agent.state", state="available")
    assert await _states(center, "k2", amy, bob) == ("connected", "on_call", "available")
    # The call goes on with amy: hold, and the ended hold counted with the consult's.
    assert (await amy.control("k2", "hold"))["type"] == "ack"
    await amy.inbox.expect("call.held", call_id="k2")
    await ivr.event("call.ended", "k2", cause="caller_hangup")
    obeying.cancel()
    record = await eventually(lambda: _record(center, "k2", lambda r: r.ended_at))
    assert record.hold_count == 2 and record.agent_id == amy.agent_id


async def test_a_conference_joins_all_three_and_the_record_keeps_its_time(center):
    amy, bob, ivr = await _consulting(center, "k3", "+8613800000003")
    obeying = ivr.obey()
    assert (await amy.control("k3", "conference"))["type"] == "ack"
    await amy.inbox.expect("call.consult", call_id="k3", state="conference")
    await bob.inbox.expect("call.consult", call_id="k3", state="conference")
    assert await _states(center, "k3", amy, bob) == ("conference", "on_call", "on_call")
    again = await amy.control("k3", "conference")
    assert again["code"] == "illegal_transition"
    # The caller hangs up: amy wraps up, bob is free.
    await ivr.event("call.ended", "k3", cause="caller_hangup")
    await amy.inbox.expect("call.ended", call_id="k3")
    await bob.inbox.expect("call.ended", call_id="k3")
    await bob.inbox.expect("agent.state", state="available")
    assert await _states(center, "k3", amy, bob) == ("wrap_up", "wrap_up", "available")
    obeying.cancel()
    record = await eventually(lambda: _record(center, "k3", lambda r: r.ended_at))
    assert record.conference_s is not None and record.conference_s >= 0
    assert record.hold_count == 1 and record.outcome == "answered"


async def test_leaving_a_conference_hands_the_caller_to_b(center):
    amy, bob, ivr = await _consulting(center, "k4", "+8613800000004")
    obeying = ivr.obey()
    assert (await amy.control("k4", "conference"))["type"] == "ack"
    await amy.inbox.expect("call.consult", call_id="k4", state="conference")
    assert (await amy.control("k4", "consult.complete"))["type"] == "ack"
    await amy.inbox.expect("call.ended", call_id="k4")
    assert await _states(center, "k4", amy, bob) == ("connected", "wrap_up", "on_call")
    assert (await bob.control("k4", "hangup"))["type"] == "ack"
    obeying.cancel()
    record = await eventually(lambda: _record(center, "k4", lambda r: r.ended_at))
    assert record.conference_s is not None and record.agent_id == bob.agent_id


async def test_consult_to_a_queue_reserves_its_longest_idle_agent(center):
    await center.add_queue("billing", ("billing",))
    amy, ivr = await center.answered_call("amy", "k5", "+8613800000005")
    cat = await center.agent("cat", skills=("billing",))
    bob = await center.agent("bob", skills=("billing",))
    await cat.available()
    await bob.available()
    asked = asyncio.create_task(amy.control("k5", "transfer", mode="consult",
                                            to_queue="billing"))
    command = await ivr.command(call_id="k5")
    assert command["to_queue"] == "billing" and command["to_agent_id"] == cat.agent_id
    pop = await cat.inbox.expect("screen_pop", call_id="k5")
    assert pop["consult"]["to"] == "queue:billing"
    await ivr.result(command)
    assert (await asked)["type"] == "ack"
    # Nobody else free in the queue: a second consult has no one to take it.
    await ivr.event("consult.ended", "k5", agent_id=cat.agent_id)
    await bob.not_ready()
    await cat.inbox.expect("agent.state", state="available")
    await cat.not_ready()
    reply = await amy.control("k5", "transfer", mode="consult", to_queue="billing")
    assert reply["code"] == "agent_unavailable", reply


async def test_b_not_answering_is_ring_no_answer_and_a_gets_the_caller_back(center):
    amy, ivr = await center.answered_call("amy", "k6", "+8613800000006")
    bob = await center.agent("bob")
    await bob.available()
    obeying = ivr.obey()
    assert (await amy.control("k6", "transfer", mode="consult",
                              to_agent_id=bob.agent_id))["type"] == "ack"
    await bob.inbox.expect("call.ended", call_id="k6", reason="ring_no_answer", timeout=20)
    missed = await bob.inbox.expect("agent.state", state="not_ready")
    assert missed["reason"] == "missed"
    ended = await amy.inbox.expect("call.consult", call_id="k6", state="ended")
    assert ended["cause"] == "no_answer"
    # The PBX drops the consult leg and gives the caller back to amy.
    await amy.inbox.expect("call.resumed", call_id="k6")
    assert await _states(center, "k6", amy, bob) == ("connected", "on_call", "not_ready")
    late = await ivr.send("consult.answered", "k6", agent_id=bob.agent_id)
    assert (await ivr.reply_to(late))["code"] == "illegal_transition"
    obeying.cancel()


async def test_b_answers_its_consult_from_the_console(center):
    amy, ivr = await center.answered_call("amy", "k7", "+8613800000007")
    bob = await center.agent("bob")
    cat = await center.agent("cat")
    await bob.available()
    obeying = ivr.obey()
    assert (await amy.control("k7", "transfer", mode="consult",
                              to_agent_id=bob.agent_id))["type"] == "ack"
    assert (await cat.control("k7", "answer"))["code"] == "not_your_call"
    assert (await bob.control("k7", "answer"))["type"] == "ack"
    await amy.inbox.expect("call.consult", call_id="k7", state="talking")
    assert await _states(center, "k7", amy, bob) == ("consulting", "on_call", "on_call")
    obeying.cancel()


async def test_a_pbx_that_refuses_the_consult_leaves_the_call_as_it_was(center):
    amy, ivr = await center.answered_call("amy", "k8", "+8613800000008")
    bob = await center.agent("bob")
    await bob.available()
    obeying = ivr.obey(refuse={"transfer": "not_supported"})
    reply = await amy.control("k8", "transfer", mode="consult", to_agent_id=bob.agent_id)
    assert reply["code"] == "not_supported", reply
    await bob.inbox.expect("call.ended", call_id="k8", reason="consult_failed")
    assert await _states(center, "k8", amy, bob) == ("connected", "on_call", "available")
    call = await _store(center).call("k8")
    assert call["hold_count"] == "0" and call["held_at"] == ""
    obeying.cancel()


async def test_bad_consult_requests_are_refused_and_nothing_changes(center):
    amy, ivr = await center.answered_call("amy", "k9", "+8613800000009")
    busy, _ = await center.answered_call("bea", "k10", "+8613800000010")
    gone = await center.agent("gus")
    await gone.request("agent.state.set", state="logged_out")
    nap = await center.agent("nap")
    await nap.not_ready()  # signed in, not ready
    cases = [({"to_agent_id": busy.agent_id}, "agent_unavailable"),
             ({"to_agent_id": gone.agent_id}, "agent_unavailable"),
             ({"to_agent_id": nap.agent_id}, "agent_unavailable"),
             ({"to_agent_id": 9999}, "unknown_agent"),
             ({"to_queue": "nowhere"}, "unknown_queue"),
             ({"to_number": "+8610123456"}, "invalid_message"),
             ({"to_agent_id": amy.agent_id}, "agent_unavailable")]
    for target, code in cases:
        reply = await amy.control("k9", "transfer", mode="consult", **target)
        assert reply["type"] == "error" and reply["code"] == code, (target, reply)
    for action in ("consult.complete", "consult.cancel", "conference"):
        reply = await amy.control("k9", action)
        assert reply["code"] == "illegal_transition", (action, reply)
    notes_on_hold = await amy.control("k9", "hold", notes="x")
    assert notes_on_hold["code"] == "invalid_message"
    for event in ("consult.answered", "consult.completed", "conference.started"):
        fields = {"agent_id": nap.agent_id} if event == "consult.answered" else {}
        eid = await ivr.send(event, "k9", **fields)
        assert (await ivr.reply_to(eid))["code"] == "illegal_transition", event
    await ivr.inbox.nothing("route.control")
    assert await _states(center, "k9", amy, busy, nap) == (
        "connected", "on_call", "on_call", "not_ready")
    # Commands after the caller hung up.
    await ivr.event("call.ended", "k9", cause="caller_hangup")
    for action, fields in (("transfer", {"mode": "consult", "to_agent_id": nap.agent_id}),
                           ("consult.cancel", {})):
        reply = await amy.control("k9", action, **fields)
        assert reply["code"] == "illegal_transition", reply  # in wrap-up now
    reply = await amy.control("no-such-call", "consult.complete")
    assert reply["code"] == "unknown_call"


async def test_the_consulted_leg_events_check_who_b_is(center):
    amy, bob, ivr = await _consulting(center, "k11", "+8613800000011")
    eid = await ivr.send("consult.completed", "k11", agent_id=amy.agent_id)
    assert (await ivr.reply_to(eid))["code"] == "wrong_agent"
    eid = await ivr.send("consult.ended", "k11", agent_id=amy.agent_id)
    assert (await ivr.reply_to(eid))["code"] == "wrong_agent"
    assert await _states(center, "k11", amy, bob) == ("consulting", "on_call", "on_call")
    first = await ivr.send("consult.completed", "k11", event_id="done-1",
                           agent_id=bob.agent_id)
    assert (await ivr.reply_to(first))["duplicate"] is False
    again = await ivr.send("consult.completed", "k11", event_id="done-1",
                           agent_id=bob.agent_id)
    assert (await ivr.reply_to(again))["duplicate"] is True
    assert await _states(center, "k11", amy, bob) == ("connected", "wrap_up", "on_call")


async def test_a_resent_call_control_gets_the_same_answer_and_acts_once(center):
    amy, ivr = await center.answered_call("amy", "k12", "+8613800000012")
    frame = {"call_id": "k12", "action": "hold", "event_id": "ctl-1"}
    first = asyncio.create_task(amy.request("call.control", **frame))
    command = await ivr.command(call_id="k12")
    second = asyncio.create_task(amy.request("call.control", **frame))
    await ivr.result(command)
    one, two = await asyncio.gather(first, second)
    assert one["type"] == two["type"] == "ack"
    assert one["command_id"] == two["command_id"] == command["command_id"]
    assert two["event_id"] == "ctl-1"
    third = await amy.request("call.control", **frame)
    assert third["command_id"] == command["command_id"]
    await ivr.inbox.nothing("route.control")
    # Refusals are remembered too; another event id is a new request.
    resume = {"call_id": "k12", "action": "resume", "event_id": "ctl-2"}
    assert (await amy.request("call.control", **resume))["code"] == "illegal_transition"
    await ivr.act(command)
    await amy.inbox.expect("call.held", call_id="k12")
    assert (await amy.request("call.control", **resume))["code"] == "illegal_transition"
    obeying = ivr.obey()
    assert (await amy.request("call.control", **{**resume, "event_id": "ctl-3"}))["type"] \
        == "ack"
    obeying.cancel()


async def test_consoles_that_reconnect_during_a_consult_see_it(center):
    amy, bob, ivr = await _consulting(center, "k13", "+8613800000013", notes="vip")
    bob_again = await center.login("bob")
    pop = await bob_again.inbox.expect("screen_pop", call_id="k13")
    assert pop["consult"]["from_agent_id"] == amy.agent_id and pop["consult"]["notes"] == "vip"
    await bob_again.inbox.expect("call.connected", call_id="k13")
    await bob_again.inbox.expect("call.consult", call_id="k13", state="talking")
    amy_again = await center.login("amy")
    pop = await amy_again.inbox.expect("screen_pop", call_id="k13")
    assert "consult" not in pop
    await amy_again.inbox.expect("call.consult", call_id="k13", state="talking",
                                 agent_id=bob.agent_id)


async def test_a_supervisor_consults_and_completes_over_rest(center):
    from tests.rest import request

    amy, ivr = await center.answered_call("amy", "k14", "+8613800000014")
    bob = await center.agent("bob")
    busy, _ = await center.answered_call("bea", "k15", "+8613800000015")
    token = await center.login_token("sue", "supervisor")
    path = "/api/v1/calls/k14/control"
    status, body = await request(center, "POST", path, token, json={
        "action": "transfer", "mode": "consult", "to_agent_id": busy.agent_id})
    assert status == 409 and body["error"]["code"] == "agent_unavailable"
    status, _ = await request(center, "POST", path, token, json={
        "action": "transfer", "mode": "consult", "to_number": "+8610123456"})
    assert status == 400
    await bob.available()
    obeying = ivr.obey()
    status, body = await request(center, "POST", path, token, json={
        "action": "transfer", "mode": "consult", "to_agent_id": bob.agent_id,
        "notes": "over REST"})
    assert status == 200, body
    pop = await bob.inbox.expect("screen_pop", call_id="k14")
    assert pop["consult"] == {"from_agent_id": amy.agent_id, "to": f"agent:{bob.agent_id}",
                              "notes": "over REST"}
    await ivr.event("consult.answered", "k14", agent_id=bob.agent_id)
    status, body = await request(center, "POST", path, token,
                                 json={"action": "consult.complete"})
    assert status == 200, body
    await amy.inbox.expect("call.ended", call_id="k14")
    await bob.inbox.expect("call.connected", call_id="k14")
    obeying.cancel()


async def test_a_consult_lost_with_the_live_state_leaves_the_caller_held_with_a(center):
    """Redis restarted empty mid-consult: the call is rebuilt from the records with its
    first agent, the caller held (the consult's reservation lived only in Redis); the call
    goes on from there and the PBX's late consult events are refused."""
    amy, bob, ivr = await _consulting(center, "k16", "+8613800000016")
    app = center.server.app
    redis, prefix = app[appkeys.REDIS], app[appkeys.KEYS].prefix
    await redis.delete(*[k async for k in redis.scan_iter(f"{prefix}:*")])
    await app[appkeys.RECOVERY].check()
    call = await _store(center).call("k16")
    assert (call["state"], call["agent_id"]) == ("on_hold", str(amy.agent_id))
    assert (await _store(center).agent(amy.agent_id))["state"] == "on_call"
    late = await ivr.send("consult.completed", "k16", agent_id=bob.agent_id)
    assert (await ivr.reply_to(late))["code"] == "illegal_transition"
    await ivr.event("call.resumed", "k16")
    await ivr.event("call.ended", "k16", cause="caller_hangup")
    record = await eventually(lambda: _record(center, "k16", lambda r: r.ended_at))
    assert record.agent_id == amy.agent_id and record.hold_count == 1


async def test_b_leaves_the_consult_by_hanging_up_its_own_leg(center):
    """The consulted agent hangs up from its console: its leg is hung up as a
    consult.cancel would (the PBX is told which leg), the caller goes back to A, B is
    freed. B still cannot act for A (complete the consult), nor leave a consult it is
    no longer in."""
    amy, bob, ivr = await _consulting(center, "k20", "+8613800000020")
    completed = await bob.control("k20", "consult.complete")
    assert completed["code"] == "not_your_call", completed
    asked = asyncio.create_task(bob.control("k20", "hangup"))
    command = await ivr.command(call_id="k20")
    assert command["action"] == "consult.cancel"
    assert command["consult_agent_id"] == bob.agent_id and command["agent_id"] == amy.agent_id
    await ivr.result(command)
    assert (await asked)["type"] == "ack"
    await ivr.act(command)
    await amy.inbox.expect("call.consult", call_id="k20", state="ended")
    await bob.inbox.expect("call.ended", call_id="k20", reason="consult_ended")
    await bob.inbox.expect("agent.state", state="available")
    assert await _states(center, "k20", amy, bob) == ("connected", "on_call", "available")
    again = await bob.control("k20", "hangup")
    assert again["code"] == "not_your_call", again
    await ivr.inbox.nothing("route.control")


async def test_b_leaves_a_conference_and_the_caller_stays_with_a(center):
    amy, bob, ivr = await _consulting(center, "k21", "+8613800000021")
    obeying = ivr.obey()
    assert (await amy.control("k21", "conference"))["type"] == "ack"
    await bob.inbox.expect("call.consult", call_id="k21", state="conference")
    assert (await bob.control("k21", "consult.cancel"))["type"] == "ack"
    await bob.inbox.expect("call.ended", call_id="k21", reason="consult_ended")
    await amy.inbox.expect("call.consult", call_id="k21", state="ended")
    obeying.cancel()
    assert await _states(center, "k21", amy, bob) == ("connected", "on_call", "available")
