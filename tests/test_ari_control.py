"""Desktop call control through the ARI adapter (issue 17): the agent's `call.control` on
/ws/agent -> the server's `route.control` -> the adapter's ARI requests on a fake Asterisk
-> `control.result` and the state events back -> what the agent sees.

Redis, the database and the agents' websockets are real; Asterisk is the fake of
tests/fake_ari.py, which answers with Asterisk's status codes and JSON.
"""

from __future__ import annotations

import asyncio

from tests.test_ari import _connected_call, _ready, _record_where, fake_ari, settings
from tests.waits import eventually

__all__ = ["fake_ari", "settings"]  # the fixtures, shared with tests/test_ari.py


async def test_agent_holds_and_resumes_an_asterisk_call(center, fake_ari):
    agent = await center.agent("hal", extension="1101")
    await agent.available()
    await _ready(center)
    caller, _ = await _connected_call(center, fake_ari, agent, "+8613800000101")

    held = await agent.control(caller, "hold")
    assert held["type"] == "ack" and held["command_id"]
    await agent.inbox.expect("call.held", call_id=caller)
    assert fake_ari.made("POST", f"/channels/{caller}/hold")
    assert caller in fake_ari.held

    resumed = await agent.control(caller, "resume")
    assert resumed["type"] == "ack"
    await agent.inbox.expect("call.resumed", call_id=caller)
    assert fake_ari.made("DELETE", f"/channels/{caller}/hold")
    assert caller not in fake_ari.held

    await fake_ari.hang_up(caller)
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.hold_count == 1 and record.end_cause == "caller_hangup"


async def test_agent_hangs_up_from_the_desktop(center, fake_ari):
    agent = await center.agent("ian", extension="1102")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000102")
    assert (await agent.control(caller, "hold"))["type"] == "ack"
    await agent.inbox.expect("call.held", call_id=caller)

    reply = await agent.control(caller, "hangup")

    assert reply["type"] == "ack"
    assert fake_ari.made("DELETE", f"/channels/{agent_channel}")
    await agent.inbox.expect("call.ended", call_id=caller)
    await fake_ari.wait_request("DELETE", f"/channels/{caller}")
    record = await _record_where(center, caller, lambda r: r.outcome is not None)
    assert record.end_cause == "agent_hangup"


async def test_answer_is_not_supported_over_ari(center, fake_ari):
    agent = await center.agent("joy", extension="1103")
    await agent.available()
    await _ready(center)
    caller = await fake_ari.caller_arrives("+8613800000103")
    originate = await fake_ari.wait_request("POST", "/channels")
    await agent.inbox.expect("screen_pop", call_id=caller)

    reply = await agent.control(caller, "answer")

    assert reply["type"] == "error" and reply["code"] == "not_supported", reply
    assert reply["command_id"]
    assert not fake_ari.made("POST", f"/channels/{originate.params['channelId']}/answer")
    # Nothing changed: the agent answering at the phone still connects the call.
    await fake_ari.agent_answers(originate.params["channelId"])
    await agent.inbox.expect("call.connected", call_id=caller)


async def test_asterisk_refusals_become_failed_commands_and_the_call_goes_on(
        center, fake_ari):
    agent = await center.agent("kim", extension="1104")
    await agent.available()
    await _ready(center)
    caller, _ = await _connected_call(center, fake_ari, agent, "+8613800000104")

    fake_ari.outside.add(caller)  # e.g. the dialplan took the channel back meanwhile
    refused = await agent.control(caller, "hold")
    assert refused["type"] == "error" and refused["code"] == "control_failed", refused
    assert refused["reason"] == "channel_not_in_stasis"

    fake_ari.outside.discard(caller)
    fake_ari.vanish(caller)  # hung up, and Asterisk's events for it are not here yet
    gone = await agent.control(caller, "hold")
    assert gone["type"] == "error" and gone["reason"] == "channel_not_found", gone

    await agent.inbox.nothing("call.held")
    reply = await agent.request("agent.state.set", state="not_ready", reason="break")
    assert reply["type"] in ("ack", "error")  # the agent's connection still serves


async def test_two_holds_at_once_reach_asterisk_once(center, fake_ari):
    agent = await center.agent("lea", extension="1105")
    await agent.available()
    await _ready(center)
    caller, _ = await _connected_call(center, fake_ari, agent, "+8613800000105")

    replies = await asyncio.gather(agent.control(caller, "hold"),
                                   agent.control(caller, "hold"))

    kinds = sorted(r["type"] for r in replies)
    assert kinds == ["ack", "error"], replies
    error = next(r for r in replies if r["type"] == "error")
    assert error["code"] in ("command_pending", "illegal_transition"), error
    await agent.inbox.expect("call.held", call_id=caller)
    assert len(fake_ari.made("POST", f"/channels/{caller}/hold")) == 1


async def test_a_held_call_survives_a_lost_event_socket_and_resumes(center, fake_ari):
    agent = await center.agent("max", extension="1106")
    await agent.available()
    await _ready(center)
    caller, agent_channel = await _connected_call(center, fake_ari, agent, "+8613800000106")
    assert (await agent.control(caller, "hold"))["type"] == "ack"
    await agent.inbox.expect("call.held", call_id=caller)

    await fake_ari.go_down()
    fake_ari.come_up()
    await eventually(lambda: fake_ari.connections == 2, timeout=15)
    await _ready(center)

    # Reconciliation kept the held call's legs and bridge.
    assert caller in fake_ari.channels and agent_channel in fake_ari.channels
    assert not fake_ari.made("DELETE", f"/channels/{agent_channel}")
    assert f"{caller}-bridge" in fake_ari.bridges
    assert (await agent.control(caller, "resume"))["type"] == "ack"
    await agent.inbox.expect("call.resumed", call_id=caller)
