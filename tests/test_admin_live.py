"""Administration applied live on every node (docs/admin.md): a change made on one node
routes calls on another at once, with no restart; a supervisor's state change races the
agent's own as one step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callcenter.app import create_app
from core.appkeys import CALLS, CODES, DIRECTORY, ROUTER, WALLBOARD
from core.settings import Settings
from routing.states import AgentState
from tests.conftest import Center
from tests.rest import request
from tests.waits import eventually


@pytest.fixture
async def two(aiohttp_server: Any, app: Any, sessions: Any,
              settings: Settings) -> Any:
    """Two nodes on one Redis and one database: (center on node a, center on node b)."""
    a = Center(await aiohttp_server(app), sessions, settings)
    other = settings.model_copy(update={"node_id": "b"})
    b = Center(await aiohttp_server(create_app(other)), sessions, other)
    yield a, b
    await a.close()
    await b.close()


async def test_an_agents_new_skill_gets_the_matching_call_on_another_node(two: Any) -> None:
    a, b = two
    admin = await a.login_token("ada", "admin")
    status, _ = await request(a, "PUT", "/api/v1/admin/skills", admin,
                              json={"skills": ["billing"]})
    assert status == 200
    status, _ = await request(a, "POST", "/api/v1/admin/queues", admin,
                              json={"name": "billing", "skills": ["billing"]})
    assert status == 201
    agent = await b.agent("bob")  # its console is on node b
    await agent.available()
    ivr = await a.ivr()
    await ivr.offer("c-1", "+8613800000001", queue="billing")
    await ivr.inbox.expect("route.queued", call_id="c-1")  # nobody has the skill yet

    status, body = await request(a, "PATCH", f"/api/v1/admin/agents/{agent.agent_id}", admin,
                                 json={"skills": ["billing"]})
    assert status == 200 and body["skills"] == ["billing"]
    connect = await ivr.inbox.expect("route.connect", call_id="c-1")
    assert connect["agent_id"] == agent.agent_id
    await agent.inbox.expect("screen_pop", call_id="c-1")


async def test_a_queue_change_on_one_node_is_loaded_by_the_other(two: Any) -> None:
    a, b = two
    admin = await a.login_token("ada", "admin")
    await request(a, "PUT", "/api/v1/admin/skills", admin, json={"skills": ["vip"]})
    status, _ = await request(a, "POST", "/api/v1/admin/queues", admin, json={
        "name": "vip", "skills": ["vip"], "wrap_up_s": 5, "tier_boost_s": {"gold": 300}})
    assert status == 201
    other = b.server.app
    await eventually(lambda: other[ROUTER].queues.get("vip") == ("vip",), 20,
                     what="node b knows the new queue")
    assert other[ROUTER].policy_for("vip").tier_boost_s["gold"] == 300
    assert other[CALLS].wrap_up_by_queue["vip"] == 5
    assert other[DIRECTORY].version == a.server.app[DIRECTORY].version
    # The wallboard's service level there: threshold and target (0 is a target too).
    status, _ = await request(a, "PATCH", "/api/v1/admin/queues/vip", admin,
                              json={"sl_threshold_s": 15, "sl_target": 0})
    assert status == 200
    await eventually(lambda: _sl(other, "vip") == (15, 0), 20,
                     what="node b's wallboard has the new service-level target")

    status, _ = await request(a, "PUT", "/api/v1/admin/codes/not_ready", admin,
                              json={"codes": [{"code": "coaching", "label": "Coaching"}]})
    assert status == 200
    await eventually(lambda: other[CODES].not_ready_reasons == ("coaching",), 20,
                     what="node b has the new not-ready reasons")
    agent = await b.agent("cy")
    assert (await agent.request("agent.state.set", state="not_ready",
                                reason="break"))["type"] == "error"
    assert (await agent.request("agent.state.set", state="not_ready",
                                reason="coaching"))["type"] == "ack"

    status, _ = await request(a, "PUT", "/api/v1/admin/routing-policy", admin,
                              json={"intent_wait_s": 4, "sticky_wait_s": {"vip": 2}})
    assert status == 200
    await eventually(lambda: other[ROUTER].policy.intent_wait_s == 4, 20)
    assert other[ROUTER].policy.sticky_wait_s == {"vip": 2, "gold": 6.0, "standard": 3.0,
                                                  "low": 0.0}


async def test_a_node_that_missed_the_announcement_catches_up(two: Any) -> None:
    a, b = two
    other = b.server.app
    # A change made behind both nodes' backs, counted but never announced:
    await a.add_queue("late", ())
    await other[DIRECTORY].admin_steps.bump()
    await eventually(lambda: "late" in other[ROUTER].queues, 30,
                     what="node b reloads on the version alone")


async def test_supervisor_state_change_races_the_agents_own(two: Any) -> None:
    a, b = two
    sup = await a.login_token("sue", "supervisor")
    agent = await b.agent("dan")
    calls_a, calls_b = a.server.app[CALLS], b.server.app[CALLS]
    store = a.server.app[ROUTER].store
    pool = a.server.app[ROUTER].store.keys.pool("queue:default")
    for n in range(15):
        own = AgentState.available if n % 2 else AgentState.not_ready
        forced = AgentState.logged_out if n % 3 else AgentState.not_ready
        await asyncio.gather(
            calls_b.set_agent_state(agent.agent_id, own, "break" if own.value == "not_ready"
                                    else ""),
            calls_a.supervise_state(agent.agent_id, forced, "lunch", "sue"))
        live = await store.agent(agent.agent_id)
        assert (live["state"], live["reason"]) in (
            (own.value, "break" if own.value == "not_ready" else ""),
            (forced.value, "lunch")), live
        in_pool = await store.redis.zscore(pool, str(agent.agent_id)) is not None
        assert in_pool == (live["state"] == "available"), (live, in_pool)
        by_sue = live.get("by") == "sue" and live.get("by_since") == live["since"]
        assert by_sue == (live["reason"] == "lunch"), live  # whoever came last is named
    # Over REST, with who did it on the agent's console:
    status, body = await request(a, "POST", f"/api/v1/admin/agents/{agent.agent_id}/state", sup,
                                 json={"state": "not_ready", "reason": "meeting"})
    assert status == 200 and body["applied"] == "now", body
    frame = await agent.inbox.expect("agent.state", state="not_ready", reason="meeting")
    assert frame["changed_by"] == "sue"


async def test_a_forced_sign_out_of_an_agent_on_a_call_applies_after_it(two: Any) -> None:
    a, b = two
    sup = await a.login_token("sue", "supervisor")
    agent, ivr = await b.answered_call("eve", "c-9", "+8613800000009")
    status, body = await request(a, "POST", f"/api/v1/admin/agents/{agent.agent_id}/sign-out",
                                 sup, json={"reason": ""})
    assert status == 200 and body["applied"] == "after_call", body
    await agent.inbox.expect("agent.state", state="on_call", pending={
        "state": "logged_out", "reason": None, "changed_by": "sue"})
    await ivr.event("call.ended", "c-9", cause="normal")
    await agent.inbox.expect("agent.state", state="wrap_up")
    await a.server.app[CALLS].wrapup_done(agent.agent_id, "c-9", "resolved", "")
    await eventually(lambda: _state(a, agent.agent_id, "logged_out"), 20)
    live = await a.server.app[ROUTER].store.agent(agent.agent_id)
    assert live["by"] == "sue" and live["by_since"] == live["since"]
    assert (await request(b, "GET", "/api/v1/me", agent.token))[0] == 401  # tokens revoked


def _sl(app: Any, queue: str) -> tuple[float, float]:
    target = app[WALLBOARD].target(queue)
    return target.threshold_s, target.target


async def _state(center: Center, agent_id: int, state: str) -> bool:
    return (await center.server.app[ROUTER].store.agent(agent_id)).get("state") == state


async def test_a_queues_wrap_up_time_set_on_one_node_is_the_wrap_up_on_another(
        two: Any) -> None:
    a, b = two
    admin = await a.login_token("ada", "admin")
    await request(a, "PUT", "/api/v1/admin/skills", admin, json={"skills": ["vip"]})
    status, _ = await request(a, "POST", "/api/v1/admin/queues", admin,
                              json={"name": "vip", "skills": ["vip"], "wrap_up_s": 5})
    assert status == 201
    other = b.server.app
    await eventually(lambda: other[CALLS].wrap_up_by_queue.get("vip") == 5, 20)
    agent = await b.agent("fay", skills=("vip",))  # its console on node b
    await agent.available()
    ivr = await b.ivr()  # the call's events handled on node b
    await ivr.offer("c-w", "+8613800000010", queue="vip")
    await ivr.inbox.expect("route.connect", call_id="c-w")
    await ivr.event("call.answered", "c-w", agent_id=agent.agent_id)
    await ivr.event("call.ended", "c-w", cause="normal")
    ended = await agent.inbox.expect("call.ended", call_id="c-w")
    live = await other[ROUTER].store.agent(agent.agent_id)
    # 5 s after the agent went to wrap-up, not the center's 30 s
    assert abs(ended["wrap_up_until"] - float(live["since"]) - 5) < 1, (ended, live)
