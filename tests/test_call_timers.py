"""Timed behaviour of the call path: ring-no-answer, wrap-up, ring widening, transfer."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings


@pytest.fixture
def database_url(any_database_url):
    """The call path runs on SQLite and on PostgreSQL."""
    return any_database_url


@pytest.fixture
def timers() -> tuple[float, float]:
    """(ring timeout, wrap-up) in seconds: long, so that a loaded machine answers and
    finishes in time in the tests that are not about the timers running out."""
    return 30.0, 30.0


# The tests about a timer running out shorten it, to keep the suite quick.
short_timers = pytest.mark.parametrize("timers", [(2.0, 1.0)], ids=["short-timers"])


@pytest.fixture
def settings(database_url, redis_url, redis_prefix, tmp_path, timers):
    ring_timeout_s, wrap_up_s = timers
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         ring_timeout_s=ring_timeout_s, wrap_up_s=wrap_up_s)


@short_timers
async def test_ring_no_answer_reroutes_to_next_agent_and_marks_first_missed(center):
    first = await center.agent("amy")
    second = await center.agent("bob")
    await first.available()
    await second.available()
    ivr = await center.ivr()
    await ivr.offer("rona", "+8613800000001")
    await first.inbox.expect("screen_pop", call_id="rona")

    ended = await first.inbox.expect("call.ended", call_id="rona", timeout=6)
    assert ended["reason"] == "ring_no_answer"
    await first.inbox.expect("agent.state", state="not_ready", reason="missed")
    pop = await second.inbox.expect("screen_pop", call_id="rona", timeout=6)
    assert pop["call_id"] == "rona"
    connects = [await ivr.inbox.expect("route.connect", call_id="rona") for _ in range(2)]
    assert [c["agent_id"] for c in connects] == [first.agent_id, second.agent_id]


@short_timers
async def test_answered_call_is_not_rerouted_after_the_ring_timeout(center):
    await center.answered_call("cat", "quick", "+8613800000002")
    other = await center.agent("dan")
    await other.available()
    await other.inbox.nothing("screen_pop", wait=2.5)


@short_timers
async def test_wrap_up_ends_by_itself_and_agent_becomes_available(center):
    agent, ivr = await center.answered_call("eve", "wrap", "+8613800000003")
    await ivr.event("call.ended", "wrap", cause="agent_hangup")
    await agent.inbox.expect("agent.state", state="wrap_up")
    await agent.inbox.expect("agent.state", state="available", timeout=6)


async def test_state_chosen_during_wrap_up_applies_after_it(center):
    agent, ivr = await center.answered_call("fay", "lunch", "+8613800000004")
    await ivr.event("call.ended", "lunch")
    await agent.inbox.expect("agent.state", state="wrap_up")
    await agent.not_ready("lunch")
    reply = await agent.request("wrapup.done", call_id="lunch", disposition="resolved")
    assert reply["type"] == "ack"
    await agent.inbox.expect("agent.state", state="not_ready", reason="lunch")


async def test_transfer_to_a_queue_reenters_routing(center):
    await center.add_queue("billing", skills=("billing",))
    agent = await center.agent("gus")
    biller = await center.agent("hal", skills=("billing",))
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("xfer", "+8613800000005")
    await ivr.inbox.expect("route.connect", call_id="xfer")
    await ivr.event("call.answered", "xfer", agent_id=agent.agent_id)
    await biller.available()
    await ivr.event("call.transferred", "xfer", to_queue="billing")
    connect = await ivr.inbox.expect("route.connect", call_id="xfer")
    assert connect["agent_id"] == biller.agent_id
    await agent.inbox.expect("agent.state", state="wrap_up")


async def test_transfer_to_a_named_agent_rings_that_agent(center):
    agent = await center.agent("ida")
    target = await center.agent("jon")
    bystander = await center.agent("kim")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("named", "+8613800000006")
    await ivr.inbox.expect("route.connect", call_id="named")
    await ivr.event("call.answered", "named", agent_id=agent.agent_id)
    await bystander.available()
    await target.available()
    await ivr.event("call.transferred", "named", to_agent_id=target.agent_id)
    pop = await target.inbox.expect("screen_pop", call_id="named")
    assert pop["routing_reason"]["rule"] == "sticky_agent"


async def test_reconnecting_agent_gets_its_state_and_current_call_at_once(center):
    await center.add_customer("C9", "李娜", "+8613800000009", tier="vip")
    agent = await center.agent("lea")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("back", "+8613800000009")
    await agent.inbox.expect("screen_pop", call_id="back")
    await ivr.event("call.answered", "back", agent_id=agent.agent_id)
    await agent.close()

    again = await center.login("lea")
    pop = await again.inbox.expect("screen_pop", call_id="back")
    assert pop["customer"]["name"] == "李娜"
    await again.inbox.expect("call.connected", call_id="back")


async def test_not_ready_needs_a_configured_reason(center):
    agent = await center.agent("max")
    reply = await agent.request("agent.state.set", state="not_ready", reason="nap")
    assert reply["type"] == "error" and "break" in reply["message"]
    await agent.not_ready("training")
    await agent.inbox.expect("agent.state", state="not_ready", reason="training")


async def test_agent_on_a_call_cannot_log_out_mid_call(center):
    agent, ivr = await center.answered_call("ned", "busy", "+8613800000010")
    reply = await agent.request("agent.state.set", state="logged_out")
    assert reply["type"] == "error" and reply["code"] == "agent_busy"


async def test_state_sync_reports_the_integrations_live_calls(center):
    agent = await center.agent("ola")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("s1", "+8613800000011")
    await ivr.offer("s2", "+8613800000012")
    await ivr.send_raw('{"type": "state.sync"}')
    snapshot = await ivr.inbox.expect("state.snapshot")
    states = {c["call_id"]: c["state"] for c in snapshot["calls"]}
    assert states == {"s1": "ringing", "s2": "queued"}
    other = await center.ivr("pbx-2")
    await other.send_raw('{"type": "state.sync"}')
    assert (await other.inbox.expect("state.snapshot"))["calls"] == []


async def test_wrong_agent_answering_is_rejected(center):
    agent = await center.agent("pia")
    other = await center.agent("quy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("wrong", "+8613800000013")
    await ivr.inbox.expect("route.connect", call_id="wrong")
    event_id = await ivr.send("call.answered", "wrong", agent_id=other.agent_id)
    assert (await ivr.reply_to(event_id))["code"] == "wrong_agent"
