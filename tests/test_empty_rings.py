"""Rings whose pool has nobody signed in are skipped at once (RoutingPolicy.skip_empty_rings),
and an agent of such a pool who signs in later still takes the calls waiting on it."""

from __future__ import annotations

from dataclasses import replace

from core import db
from core.models import Complaint
from routing import engine
from routing.engine import CallProfile, Ring
from routing.states import AgentState
from tests.routers import offer, sign_in


def test_an_empty_ring_holds_for_nothing_and_the_later_rings_open_sooner():
    rings = [Ring("agent:7", 0.0, "sticky_agent"), Ring("complaints", 10.0, "open_complaint"),
             Ring("skill:billing", 55.0, "ivr_intent"), Ring("queue:q", 70.0, "queue")]
    skipped = engine.skip_empty(rings, {"complaints", "skill:billing"})
    assert [(r.pool, r.opens_after_s) for r in skipped] == [
        ("agent:7", 0.0), ("complaints", 10.0), ("skill:billing", 10.0), ("queue:q", 10.0)]
    assert engine.skip_empty(rings, set()) == rings


async def billing_rings(router) -> list[tuple[str, float]]:
    rings, _, _ = await router.offer(CallProfile("probe", "default", intent_skill="billing"),
                                  100.0, 100.0)
    await router.store.drop_call("probe", "default")
    return [(r.pool, r.opens_after_s) for r in rings]


async def test_a_ring_is_skipped_only_while_nobody_of_its_pool_is_signed_in(routers):
    router = routers[0]
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 0.0)]
    # Signed in but on a break (or busy): the ring holds, that agent may be back soon.
    await sign_in(router, 1, {"billing"}, 0.0, available=False)
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 15.0)]
    await router.store.make_unavailable(1, AgentState.on_call, "", 1.0, force=True)
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 15.0)]
    # Its console went away (not-ready "disconnected"), or it logged out: skipped again.
    await router.store.make_unavailable(1, AgentState.not_ready, "disconnected", 2.0,
                                        force=True)
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 0.0)]
    await router.set_state(1, AgentState.available, "", 3.0)
    await router.set_state(1, AgentState.logged_out, "", 4.0)
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 0.0)]


async def test_holding_for_empty_rings_is_what_the_policy_switch_restores(routers):
    router = routers[0]
    router.policy = replace(router.policy, skip_empty_rings=False)
    assert await billing_rings(router) == [("skill:billing", 0.0), ("queue:default", 15.0)]


async def test_an_agent_who_signs_in_to_a_skipped_pool_takes_the_calls_waiting_on_it(routers):
    router = routers[0]
    await sign_in(router, 1, set(), 0.0, available=False)
    await router.store.make_unavailable(1, AgentState.on_call, "", 1.0, force=True)
    assert await offer(router, "billing-call", 100.0, intent="billing") is None
    await sign_in(router, 2, {"billing"}, 0.0, available=False)
    assignment = await router.set_state(2, AgentState.available, "", 101.0)
    assert assignment is not None and assignment.call_id == "billing-call"
    assert assignment.rule == "ivr_intent"


async def test_an_agent_whose_skills_change_leaves_its_old_pools(routers):
    router = routers[0]
    await sign_in(router, 1, {"billing"}, 0.0)
    await sign_in(router, 1, set(), 1.0)  # registered again without the skill
    staff = await router.store.staffing.signed_in(["skill:billing", "queue:default"])
    assert staff == {"skill:billing": 0, "queue:default": 1}
    assert await router.store.pool_size("skill:billing") == 0


async def test_a_caller_asking_for_a_skill_nobody_has_reaches_the_idle_agent_at_once(center):
    """The issue's case: a known customer with an open complaint asks the IVR for billing;
    the only agent, available, has neither skill. Before, the complaint and intent rings
    held the call 60 s."""
    await center.add_customer("K", "Waiting", "+8613800000090")
    async with db.session_scope(center.sessions) as session:
        session.add(Complaint(customer_id="K", category="billing", state="received"))
    agent = await center.agent("only")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("billing-call", "+8613800000090", ivr={"intent": "billing"})
    pop = await agent.inbox.expect("screen_pop", call_id="billing-call")
    assert pop["routing_reason"]["rule"] == "queue"
    assert pop["routing_reason"]["waited_s"] < 1.0
    await ivr.inbox.expect("route.connect", call_id="billing-call")
    await ivr.inbox.nothing("route.queued", call_id="billing-call")
