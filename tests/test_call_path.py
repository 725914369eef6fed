"""Whole calls through a running service: a test IVR and test agents over websockets."""

from __future__ import annotations

import pytest

from tests.clients import AgentClient, Ivr


@pytest.fixture
def database_url(any_database_url):
    """The call path runs on SQLite and on PostgreSQL."""
    return any_database_url


async def test_offered_call_is_routed_to_an_available_agent_with_a_screen_pop(center):
    await center.add_customer("C1", "张伟", "+8613800000001", tier="gold")
    agent: AgentClient = await center.agent("amy")
    await agent.available()
    ivr: Ivr = await center.ivr()

    ack = await ivr.offer("call-1", "+8613800000001", ivr={"language": "zh"})

    assert ack == {"type": "ack", "event_id": ack["event_id"], "duplicate": False}
    connect = await ivr.inbox.expect("route.connect", call_id="call-1")
    assert connect["agent_id"] == agent.agent_id and connect["extension"] == "ext-amy"
    pop = await agent.inbox.expect("screen_pop", call_id="call-1")
    assert pop["customer"]["id"] == "C1" and pop["customer"]["name"] == "张伟"
    assert pop["customer"]["tier"] == "gold"
    assert pop["ivr"] == {"language": "zh"}
    assert pop["routing_reason"]["rule"] == "queue"


async def test_call_completes_and_leaves_an_interaction_record(center):
    await center.add_customer("C2", "John Smith", "+14155550100")
    agent = await center.agent("bob")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("call-2", "+14155550100")
    await ivr.inbox.expect("route.connect", call_id="call-2")

    await ivr.event("call.answered", "call-2", agent_id=agent.agent_id)
    await agent.inbox.expect("call.connected", call_id="call-2")
    await ivr.event("call.ended", "call-2", cause="normal")
    ended = await agent.inbox.expect("call.ended", call_id="call-2")
    assert ended["wrap_up_until"] > 0
    reply = await agent.request("wrapup.done", call_id="call-2", disposition="resolved",
                                notes="refund explained")
    assert reply["type"] == "ack"
    await agent.inbox.expect("agent.state", state="available")
    await ivr.event("survey.result", "call-2", score=5)

    record = await _interaction(center, "C2")
    assert record["agent_id"] == agent.agent_id
    assert record["disposition"] == "resolved" and record["notes"] == "refund explained"
    assert record["survey_score"] == 5 and record["outcome"] == "answered"
    assert record["answered_at"] and record["ended_at"] and record["wait_s"] >= 0
    assert record["routing_reason"]["rule"] == "queue"


async def test_unknown_caller_is_a_new_caller_routed_as_default_tier(center):
    agent = await center.agent("cat")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("call-3", "+8613999999999")
    pop = await agent.inbox.expect("screen_pop", call_id="call-3")
    assert pop["new_caller"] is True and pop["customer"] is None
    assert pop["tier"] == "standard"


async def test_call_waits_in_queue_until_an_agent_becomes_available(center):
    agent = await center.agent("dan")
    ivr = await center.ivr()
    await ivr.offer("call-4", "+8613800000004")
    queued = await ivr.inbox.expect("route.queued", call_id="call-4")
    assert queued["position"] == 1 and queued["queue"] == "default"

    await agent.available()
    connect = await ivr.inbox.expect("route.connect", call_id="call-4")
    assert connect["agent_id"] == agent.agent_id


async def test_vip_caller_is_answered_before_standard_callers(center):
    await center.add_customer("V", "VIP Person", "+8613800000010", tier="vip")
    await center.add_customer("S", "Standard Person", "+8613800000011", tier="standard")
    ivr = await center.ivr()
    await ivr.offer("std-call", "+8613800000011")
    await ivr.offer("vip-call", "+8613800000010")
    agent = await center.agent("eve")
    await agent.available()
    pop = await agent.inbox.expect("screen_pop")
    assert pop["call_id"] == "vip-call"


async def test_returning_caller_goes_back_to_the_agent_who_served_them(center):
    await center.add_customer("R", "Returning", "+8613800000020")
    first = await center.agent("fay")
    other = await center.agent("gus")
    await other.available()
    ivr = await center.ivr()
    await _complete_call(ivr, other, "old-call", "+8613800000020")
    # Both free; the longest-idle agent would be `first`, but history wins.
    await first.available()
    await ivr.offer("new-call", "+8613800000020")
    pop = await other.inbox.expect("screen_pop", call_id="new-call")
    assert pop["routing_reason"]["rule"] == "sticky_agent"


async def test_open_complaint_goes_to_a_complaint_handler(center):
    from core import db
    from core.models import Complaint

    await center.add_customer("K", "Unhappy", "+8613800000030")
    async with db.session_scope(center.sessions) as session:
        session.add(Complaint(customer_id="K", category="delivery", state="received"))
    plain = await center.agent("hal")
    handler = await center.agent("ivy", skills=("complaints",))
    await plain.available()
    await handler.available()
    ivr = await center.ivr()
    await ivr.offer("complaint-call", "+8613800000030")
    pop = await handler.inbox.expect("screen_pop", call_id="complaint-call")
    assert pop["routing_reason"]["rule"] == "open_complaint"
    assert [c["category"] for c in pop["customer"]["open_complaints"]] == ["delivery"]
    await plain.inbox.nothing("screen_pop")


async def test_ivr_intent_routes_to_the_matching_skill(center):
    plain = await center.agent("jon")
    billing = await center.agent("kim", skills=("billing",))
    await plain.available()
    await billing.available()
    ivr = await center.ivr()
    await ivr.offer("intent-call", "+8613800000040", ivr={"intent": "billing"})
    pop = await billing.inbox.expect("screen_pop", call_id="intent-call")
    assert pop["routing_reason"]["rule"] == "ivr_intent"


async def test_longest_idle_agent_gets_the_call_among_equals(center):
    first = await center.agent("lea")
    second = await center.agent("max")
    await first.available()
    await second.available()
    ivr = await center.ivr()
    await ivr.offer("idle-call", "+8613800000050")
    pop = await first.inbox.expect("screen_pop", call_id="idle-call")
    assert pop["call_id"] == "idle-call"


async def test_caller_hanging_up_while_queued_is_abandoned(center):
    ivr = await center.ivr()
    await ivr.offer("gone", "+8613800000060")
    await ivr.inbox.expect("route.queued", call_id="gone")
    await ivr.event("call.ended", "gone", cause="caller_hangup")
    agent = await center.agent("ned")
    await agent.available()
    await agent.inbox.nothing("screen_pop")
    async with center.sessions() as session:
        from sqlalchemy import select

        from core.models import Interaction

        record = await session.scalar(select(Interaction).where(Interaction.call_id == "gone"))
    assert record.outcome == "abandoned" and record.answered_at is None


async def test_duplicate_event_is_acked_as_duplicate_and_not_applied_twice(center):
    agent = await center.agent("ola")
    await agent.available()
    ivr = await center.ivr()
    await ivr.send("call.offered", "dup", event_id="e-dup", ani="+8613800000070")
    assert (await ivr.reply_to("e-dup"))["duplicate"] is False
    await ivr.send("call.offered", "dup", event_id="e-dup", ani="+8613800000070")
    assert (await ivr.reply_to("e-dup"))["duplicate"] is True
    await agent.inbox.expect("screen_pop", call_id="dup")
    await agent.inbox.nothing("screen_pop", call_id="dup")


async def test_every_call_event_resent_after_its_ack_is_a_duplicate(center):
    from core.appkeys import ROUTER

    agent = await center.agent("oli")
    await agent.available()
    ivr = await center.ivr()
    steps = [("call.offered", {"ani": "+8613800000071"}),
             ("call.answered", {"agent_id": agent.agent_id}),
             ("call.transferred", {"to_queue": "default"}),
             ("call.ended", {"cause": "caller_hangup"})]
    for type_, fields in steps:
        event_id = await ivr.send(type_, "dup-all", **fields)
        assert (await ivr.reply_to(event_id))["duplicate"] is False
        before = await center.server.app[ROUTER].store.call("dup-all")
        await ivr.send(type_, "dup-all", event_id=event_id, **fields)
        assert (await ivr.reply_to(event_id))["duplicate"] is True, type_
        assert await center.server.app[ROUTER].store.call("dup-all") == before, type_


@pytest.mark.parametrize(("frame", "code"), [
    ("not json", "bad_json"),
    ('{"type": "call.exploded", "event_id": "x", "call_id": "c"}', "unknown_type"),
    ('{"type": "call.offered", "event_id": "x", "call_id": "c"}', "invalid_field"),
    ('{"type": "call.answered", "event_id": "x", "call_id": "c", "agent_id": "7"}',
     "invalid_field"),
    ('{"type": "call.answered", "event_id": "x", "call_id": "nope", "agent_id": 7}',
     "unknown_call"),
    ('[1, 2, 3]', "bad_frame"),
    ('{"event_id": "x", "call_id": "c"}', "unknown_type"),
])
async def test_bad_frame_gets_an_error_and_the_connection_keeps_serving(center, frame, code):
    ivr = await center.ivr()
    await ivr.send_raw(frame)
    error = await ivr.inbox.expect("error")
    assert error["code"] == code, error
    assert error["message"]
    agent = await center.agent("pat")
    await agent.available()
    await ivr.offer("after-bad", "+8613800000080")
    await ivr.inbox.expect("route.connect", call_id="after-bad")


async def test_out_of_order_event_is_rejected_as_illegal_transition(center):
    ivr = await center.ivr()
    await ivr.offer("ooo", "+8613800000090")
    event_id = await ivr.send("survey.result", "ooo", score=4)
    error = await ivr.reply_to(event_id)
    assert error["type"] == "error" and error["code"] == "illegal_transition"
    event_id = await ivr.send("call.answered", "ooo", agent_id=99)
    assert (await ivr.reply_to(event_id))["code"] == "illegal_transition"


async def test_oversized_frame_closes_the_connection_cleanly(center):
    ivr = await center.ivr()
    await ivr.send_raw('{"type": "call.offered", "pad": "' + "x" * 200_000 + '"}')
    await ivr._reader
    assert ivr.ws.close_code == 1009
    again = await center.ivr()
    agent = await center.agent("quinn")
    await agent.available()
    await again.offer("after-big", "+8613800000100")
    await again.inbox.expect("route.connect", call_id="after-big")


async def _complete_call(ivr, agent, call_id: str, ani: str) -> None:
    await ivr.offer(call_id, ani)
    await agent.inbox.expect("screen_pop", call_id=call_id)
    await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
    await ivr.event("call.ended", call_id, cause="normal")
    await agent.inbox.expect("call.ended", call_id=call_id)
    reply = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
    assert reply["type"] == "ack"


async def _interaction(center, customer_id: str) -> dict:
    import aiohttp

    token = (await center.login_token("supervisor-x"))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{center.url}/api/v1/interactions",
                            params={"customer_id": customer_id},
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            return (await resp.json())["interactions"][0]


async def test_caller_hanging_up_while_ringing_frees_the_agent_for_the_next_call(center):
    agent, ivr = await center.ringing_call("rae", "short", "+8613800000110")
    await agent.inbox.expect("screen_pop", call_id="short")
    await ivr.event("call.ended", "short", cause="caller_hangup")
    ended = await agent.inbox.expect("call.ended", call_id="short")
    assert ended["reason"] == "caller_hangup"
    await agent.inbox.expect("agent.state", state="available")
    await ivr.offer("next", "+8613800000111")
    await agent.inbox.expect("screen_pop", call_id="next")


async def test_queued_caller_hears_a_new_position_when_it_moves_up(center):
    ivr = await center.ivr()
    await ivr.offer("ahead", "+8613800000120")
    await ivr.offer("behind", "+8613800000121")
    assert (await ivr.inbox.expect("route.queued", call_id="behind"))["position"] == 2
    agent = await center.agent("sam")
    await agent.available()
    await ivr.inbox.expect("route.connect", call_id="ahead")
    update = await ivr.inbox.expect("route.queued", call_id="behind", timeout=10)
    assert update["position"] == 1 and update["estimated_wait_s"] >= 0
