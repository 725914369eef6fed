"""Call control from the desktop through protocol v1 (issue 17): hold, resume, hang-up and
answer as `call.control` -> `route.control` -> `control.result`, the PBX's hold events, the
REST endpoint, every refusal, and the races between a command's result, its timeout and
the call's end."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from callcenter.app import create_app
from core import appkeys
from core.models import Interaction
from tests.clients import AgentClient
from tests.conftest import Center, make_settings
from tests.rest import request
from tests.waits import eventually


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path):
    # A short command timeout, so the timeout's own tests are quick; the others never wait
    # for it (their fake PBX answers).
    return make_settings(database_url, redis_url, redis_prefix, tmp_path, control_timeout_s=2.0)


async def _state(center, call_id: str) -> str | None:
    call = await center.server.app[appkeys.ROUTER].store.call(call_id)
    return call.get("state")


async def _record(center, call_id: str) -> Interaction:
    async with center.sessions() as session:
        return (await session.scalars(
            select(Interaction).where(Interaction.call_id == call_id))).one()


async def _ended(center, call_id: str) -> Interaction | None:
    record = await _record(center, call_id)
    return record if record.ended_at is not None else None


async def test_agent_holds_and_resumes_and_the_record_keeps_the_hold(center):
    agent, ivr = await center.answered_call("amy", "c1", "+8613800000001")
    asked = asyncio.create_task(agent.control("c1", "hold"))
    command = await ivr.command(call_id="c1")
    assert command["action"] == "hold" and command["agent_id"] == agent.agent_id
    assert command["extension"] == "ext-amy" and command["command_id"]
    assert (await ivr.result(command))["type"] == "ack"
    ack = await asked
    assert ack["type"] == "ack" and ack["command_id"] == command["command_id"]
    assert await _state(center, "c1") == "connected"  # the command alone changes nothing
    await ivr.act(command)
    await agent.inbox.expect("call.held", call_id="c1")
    assert await _state(center, "c1") == "on_hold"

    obeying = ivr.obey()
    assert (await agent.control("c1", "resume"))["type"] == "ack"
    await agent.inbox.expect("call.resumed", call_id="c1")
    assert (await agent.control("c1", "hold"))["type"] == "ack"
    await agent.inbox.expect("call.held", call_id="c1")
    assert (await agent.control("c1", "hangup"))["type"] == "ack"
    ended = await agent.inbox.expect("call.ended", call_id="c1")
    assert ended["wrap_up_until"] > 0
    obeying.cancel()
    record = await eventually(lambda: _ended(center, "c1"))
    assert record.hold_count == 2 and record.hold_s > 0
    assert record.end_cause == "agent_hangup" and record.talk_s >= record.hold_s


async def test_a_pbx_that_cannot_answer_says_so_and_the_call_keeps_ringing(center):
    agent, ivr = await center.ringing_call("bob", "c2", "+8613800000002")
    obeying = ivr.obey(refuse={"answer": "not_supported"})
    reply = await agent.control("c2", "answer")
    assert reply["type"] == "error" and reply["code"] == "not_supported"
    assert reply["reason"] == "not_supported" and reply["command_id"]
    assert await _state(center, "c2") == "ringing"
    obeying.cancel()

    obeying = ivr.obey()
    assert (await agent.control("c2", "answer"))["type"] == "ack"
    await agent.inbox.expect("call.connected", call_id="c2")
    obeying.cancel()


async def test_agent_controls_only_its_own_call_and_a_supervisor_any(center):
    amy, ivr = await center.answered_call("amy", "c3", "+8613800000003")
    bob = await center.agent("bob")
    reply = await bob.control("c3", "hold")
    assert reply["type"] == "error" and reply["code"] == "not_your_call"
    await ivr.inbox.nothing("route.control")

    sue = await center.agent("sue", role="supervisor")
    obeying = ivr.obey()
    assert (await sue.control("c3", "hold"))["type"] == "ack"
    await amy.inbox.expect("call.held", call_id="c3")
    obeying.cancel()


async def test_illegal_or_unknown_requests_are_refused_and_nothing_is_sent(center):
    agent, ivr = await center.answered_call("amy", "c4", "+8613800000004")
    resume = await agent.control("c4", "resume")
    assert resume["type"] == "error" and resume["code"] == "illegal_transition"
    unknown = await agent.control("no-such-call", "hold")
    assert unknown["type"] == "error" and unknown["code"] == "unknown_call"
    await ivr.offer("c5", "+8613800000005")  # queued: amy is busy
    queued = await agent.control("c5", "hold")
    assert queued["code"] in ("illegal_transition", "not_your_call")
    bad = await agent.control("c4", "explode")
    assert bad["type"] == "error" and bad["code"] == "invalid_message"
    await ivr.inbox.nothing("route.control")
    # The connection and the call go on.
    obeying = ivr.obey()
    assert (await agent.control("c4", "hold"))["type"] == "ack"
    obeying.cancel()


async def test_an_unconfirmed_command_fails_and_a_late_result_is_told_so(center):
    agent, ivr = await center.answered_call("amy", "c6", "+8613800000006")
    asked = asyncio.create_task(agent.control("c6", "hold"))
    command = await ivr.command(call_id="c6")
    reply = await asked  # the PBX never answered
    assert reply["type"] == "error" and reply["code"] == "control_timeout"
    late = await ivr.result(command)
    assert late["type"] == "error" and late["code"] == "command_expired"
    assert await _state(center, "c6") == "connected"
    # The call takes the next command.
    obeying = ivr.obey()
    assert (await agent.control("c6", "hold"))["type"] == "ack"
    obeying.cancel()


async def test_a_command_with_no_pbx_connected_fails_at_once(center):
    agent, ivr = await center.answered_call("amy", "c7", "+8613800000007")
    await ivr.close()
    reply = await eventually(lambda: _fails(agent, "c7"), timeout=20)
    assert reply["code"] == "pbx_unavailable"


async def _fails(agent: AgentClient, call_id: str) -> dict | None:
    reply = await agent.control(call_id, "hold")
    return reply if reply.get("code") == "pbx_unavailable" else None


async def test_two_controls_at_once_one_is_sent_the_other_waits_its_turn(center):
    agent, ivr = await center.answered_call("amy", "c8", "+8613800000008")
    both = asyncio.gather(agent.control("c8", "hold"), agent.control("c8", "hangup"))
    command = await ivr.command(call_id="c8")
    await ivr.result(command)
    replies = await both
    codes = sorted(r.get("code", "ack") for r in replies)
    assert codes == ["ack", "command_pending"], replies
    await ivr.inbox.nothing("route.control")


async def test_the_caller_hanging_up_fails_the_pending_command_at_once(center):
    agent, ivr = await center.answered_call("amy", "c9", "+8613800000009")
    asked = asyncio.create_task(agent.control("c9", "hold"))
    command = await ivr.command(call_id="c9")
    await ivr.event("call.ended", "c9", cause="caller_hangup")
    reply = await asked
    assert reply["type"] == "error" and reply["code"] == "call_ended"
    late = await ivr.result(command)
    assert late["code"] == "command_expired"
    await agent.inbox.expect("call.ended", call_id="c9")


async def test_result_against_timeout_has_one_winner(center):
    """The PBX's result and the timeout race for many commands: each ends one way, and the
    PBX's answer agrees with what the agent was told."""
    commands = center.server.app[appkeys.COMMANDS]
    agent, ivr = await center.answered_call("amy", "c10", "+8613800000010")
    seen = set()
    for _ in range(12):
        sent = asyncio.create_task(commands.send("route.control", {"action": "noop"},
                                                 call_id="c10", timeout_s=0.2))
        command = await ivr.command(call_id="c10")
        outcome, pbx = await asyncio.gather(sent, ivr.result(command))
        if outcome.ok:
            assert pbx["type"] == "ack" and pbx["duplicate"] is False
        else:
            assert outcome.reason == "timeout"
            assert pbx["type"] == "error" and pbx["code"] == "command_expired"
        seen.add(outcome.ok)
    assert seen  # both ways may occur; each round had exactly one


async def test_a_resent_result_is_a_duplicate_and_bad_results_are_refused(center):
    agent, ivr = await center.answered_call("amy", "c11", "+8613800000011")
    asked = asyncio.create_task(agent.control("c11", "hold"))
    command = await ivr.command(call_id="c11")
    event_id = "res-1"
    frame = json.dumps({"type": "control.result", "event_id": event_id,
                        "command_id": command["command_id"], "ok": True})
    await ivr.send_raw(frame)
    assert (await ivr.reply_to(event_id))["duplicate"] is False
    await ivr.send_raw(frame)
    assert (await ivr.reply_to(event_id))["duplicate"] is True
    assert (await asked)["type"] == "ack"
    other = await ivr.result(command, ok=False, reason="busy")
    assert other["code"] == "command_decided"
    unknown = await ivr.result({"command_id": "nope"})
    assert unknown["type"] == "error" and unknown["code"] == "unknown_command"
    await ivr.send_raw('{"type":"control.result","event_id":"x1","command_id":"a"}')
    assert (await ivr.reply_to("x1"))["code"] == "invalid_field"
    # Another integration cannot answer this integration's command.
    other_pbx = await center.ivr("pbx-2")
    assert (await other_pbx.result(command))["code"] == "unknown_command"


async def test_hold_events_follow_the_call_state_machine(center):
    agent, ivr = await center.answered_call("amy", "c12", "+8613800000012")
    await ivr.offer("c13", "+8613800000013")
    eid = await ivr.send("call.held", "c13")
    assert (await ivr.reply_to(eid))["code"] == "illegal_transition"
    eid = await ivr.send("call.resumed", "c12")
    assert (await ivr.reply_to(eid))["code"] == "illegal_transition"
    held = await ivr.send("call.held", "c12", event_id="h-1")
    assert (await ivr.reply_to(held))["duplicate"] is False
    again = await ivr.send("call.held", "c12", event_id="h-1")
    assert (await ivr.reply_to(again))["duplicate"] is True
    # A console that connects again learns the call is on hold.
    again_amy = await center.login("amy")
    await again_amy.inbox.expect("call.connected", call_id="c12")
    await again_amy.inbox.expect("call.held", call_id="c12")
    # Hanging up while held ends the hold: wrap-up, the hold counted.
    await ivr.event("call.ended", "c12", cause="caller_hangup")
    await agent.inbox.expect("call.ended", call_id="c12")
    record = await eventually(lambda: _ended(center, "c12"))
    assert record.hold_count == 1 and record.hold_s >= 0
    assert record.outcome == "answered"


async def test_hang_up_against_hold_from_two_connections_ends_in_wrap_up(center):
    """call.held and call.ended for one call race from two connections of the PBX: the
    call always ends in wrap-up with its agent, whichever was first."""
    agent, ivr = await center.answered_call("amy", "r0", "+8613800000020")
    second = await center.ivr()
    for n in range(8):
        call_id = f"r{n}"
        if n:
            await agent.request("wrapup.done", call_id=f"r{n - 1}", disposition="resolved")
            await agent.inbox.expect("agent.state", state="available")
            await ivr.offer(call_id, "+8613800000020")
            await ivr.inbox.expect("route.connect", call_id=call_id)
            await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
        held_id, ended_id = await asyncio.gather(
            ivr.send("call.held", call_id), second.send("call.ended", call_id))
        held, ended = await asyncio.gather(ivr.reply_to(held_id), second.reply_to(ended_id))
        assert ended["type"] == "ack"
        assert held["type"] == "ack" or held["code"] == "illegal_transition"
        await agent.inbox.expect("call.ended", call_id=call_id)
        store = center.server.app[appkeys.ROUTER].store
        assert (await store.call(call_id))["state"] == "wrap_up"
        assert (await store.agent(agent.agent_id))["state"] == "wrap_up"


async def test_supervisors_control_calls_over_rest(center):
    agent, ivr = await center.answered_call("amy", "c14", "+8613800000014")
    token = await center.login_token("sue", "supervisor")
    obeying = ivr.obey()
    status, body = await request(center, "POST", "/api/v1/calls/c14/control", token,
                                 json={"action": "hold"})
    assert status == 200 and body["ok"] is True and body["command_id"]
    await agent.inbox.expect("call.held", call_id="c14")
    status, body = await request(center, "POST", "/api/v1/calls/c14/control", token,
                                 json={"action": "hold"})
    assert status == 409 and body["error"]["code"] == "illegal_transition"
    status, body = await request(center, "POST", "/api/v1/calls/nope/control", token,
                                 json={"action": "hold"})
    assert status == 404 and body["error"]["code"] == "unknown_call"
    status, body = await request(center, "POST", "/api/v1/calls/c14/control", token,
                                 json={"action": "fly"})
    assert status == 400
    obeying.cancel()
    bob_token = await center.login_token("bob", "agent")
    status, body = await request(center, "POST", "/api/v1/calls/c14/control", bob_token,
                                 json={"action": "resume"})
    assert status == 403 and body["error"]["code"] == "not_your_call"
    status, body = await request(center, "POST", "/api/v1/calls/c14/control", token,
                                 json={"action": "resume"})
    assert status == 504 and body["error"]["code"] == "control_timeout"


async def test_commands_of_other_kinds_go_through_the_same_machinery(center):
    """What callbacks and monitoring reuse: any frame type, any fields, no guard."""
    agent, ivr = await center.answered_call("amy", "c15", "+8613800000015")
    commands = center.server.app[appkeys.COMMANDS]
    sent = asyncio.create_task(commands.send("route.monitor", {"supervisor_extension": "9"},
                                             call_id="c15"))
    command = await ivr.command(type_="route.monitor", call_id="c15")
    assert command["supervisor_extension"] == "9"
    await ivr.result(command, leg="L-1")
    outcome = await sent
    assert outcome.ok and outcome.detail == {"leg": "L-1"}
    callback = asyncio.create_task(commands.send("route.callback", {"number": "+861"},
                                                 integration="pbx-1"))
    command = await ivr.command(type_="route.callback")
    assert "call_id" not in command
    await ivr.result(command, ok=False, reason="busy")
    assert (await callback).reason == "busy"


async def test_a_control_request_does_not_hold_up_the_console(center):
    agent, ivr = await center.answered_call("amy", "c16", "+8613800000016")
    asked = asyncio.create_task(agent.control("c16", "hold"))
    await ivr.command(call_id="c16")
    # While the PBX has not answered, the console is still served.
    reply = await agent.request("ping")
    assert reply["type"] == "ack"
    assert (await asked)["code"] == "control_timeout"



async def test_a_held_call_survives_redis_losing_the_live_state(center):
    """Redis restarted empty: the live state is rebuilt from the records, the call still on
    hold with its holds counted, and the hold goes on to its end."""
    agent, ivr = await center.answered_call("amy", "c17", "+8613800000017")
    await ivr.event("call.held", "c17")
    await eventually(lambda: _held_in_record(center, "c17"))
    app = center.server.app
    redis, prefix = app[appkeys.REDIS], app[appkeys.KEYS].prefix
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    await redis.delete(*keys)
    await app[appkeys.RECOVERY].check()
    call = await app[appkeys.ROUTER].store.call("c17")
    assert call["state"] == "on_hold" and call["hold_count"] == "1"
    await ivr.event("call.resumed", "c17")
    await ivr.event("call.ended", "c17", cause="normal")
    record = await eventually(lambda: _ended(center, "c17"))
    assert record.hold_count == 1 and record.hold_s >= 0


async def _held_in_record(center, call_id: str) -> bool:
    return (await _record(center, call_id)).hold_count == 1


async def test_a_call_control_sent_to_two_nodes_at_once_acts_once(center, aiohttp_server):
    """A console that lost its connection resends `call.control` to another node while the
    first node still works on it: both answers are the first's, the PBX gets one command.
    Node b is a second app on the same Redis and database."""
    other = await aiohttp_server(create_app(center.settings.model_copy(
        update={"node_id": "b"})))
    amy, ivr = await center.answered_call("amy", "n2", "+8613800000042")
    amy_b = await Center(other, center.sessions, center.settings).login("amy")
    try:
        for n, action in enumerate(("hold", "resume", "hold")):
            frame = {"call_id": "n2", "action": action, "event_id": f"two-{n}"}
            first = asyncio.create_task(amy.request("call.control", **frame))
            second = asyncio.create_task(amy_b.request("call.control", **frame))
            command = await ivr.command(call_id="n2", action=action)
            await ivr.result(command)
            one, two = await asyncio.gather(first, second)
            assert one["type"] == two["type"] == "ack", (one, two)
            assert one["command_id"] == two["command_id"] == command["command_id"]
            again = await amy_b.request("call.control", **frame)
            assert again["command_id"] == command["command_id"]
            await ivr.inbox.nothing("route.control")
            await ivr.act(command)
            await amy.inbox.expect(f"call.{'held' if action == 'hold' else 'resumed'}",
                                   call_id="n2")
        assert await _state(center, "n2") == "on_hold"
    finally:
        await amy_b.close()
