"""Routing rules without I/O: priority, rings, eligibility, and queue announcements."""

from __future__ import annotations

from cti.announce import material
from routing import engine
from routing.engine import AgentProfile, CallProfile, Ring, RoutingPolicy, WaitingCall

POLICY = RoutingPolicy()


def test_higher_tier_scores_as_if_it_arrived_earlier():
    assert engine.priority_score(1000.0, "vip", POLICY) == 1000.0 - 120.0
    assert engine.priority_score(1000.0, "low", POLICY) == 1000.0 + 30.0
    assert engine.priority_score(1000.0, "unknown-tier", POLICY) == 1000.0


def test_a_waiting_low_tier_call_is_overtaken_only_for_a_bounded_time():
    low = engine.priority_score(0.0, "low", POLICY)
    # A VIP arriving within 150 s (boost gap) goes first; one arriving later does not.
    assert engine.priority_score(149.0, "vip", POLICY) < low
    assert engine.priority_score(151.0, "vip", POLICY) > low


def test_rings_widen_from_sticky_agent_to_complaints_to_intent_to_queue():
    call = CallProfile("c", "sales", "vip", sticky_agent_id=7, sticky_agent_working=True,
                       open_complaint=True, intent_skill="billing")
    rings = engine.rings_for(call, POLICY)
    assert [(r.pool, r.opens_after_s, r.rule) for r in rings] == [
        ("agent:7", 0.0, "sticky_agent"),
        ("complaints", 10.0, "open_complaint"),
        ("skill:billing", 55.0, "ivr_intent"),
        ("queue:sales", 70.0, "queue"),
    ]


def test_sticky_ring_is_skipped_when_that_agent_is_not_working():
    call = CallProfile("c", "default", "vip", sticky_agent_id=7, sticky_agent_working=False)
    assert [r.rule for r in engine.rings_for(call, POLICY)] == ["queue"]


def test_open_rings_stay_open_as_the_bullseye_widens():
    rings = engine.rings_for(CallProfile("c", "q", intent_skill="zh"), POLICY)
    assert [r.pool for r in engine.open_rings(rings, 0.0)] == ["skill:zh"]
    assert [r.pool for r in engine.open_rings(rings, 15.0)] == ["skill:zh", "queue:q"]
    assert engine.next_widening_s(rings, 3.0) == 15.0
    assert engine.next_widening_s(rings, 15.0) is None


def test_a_ring_is_open_at_exactly_its_opening_time_despite_rounding():
    rings = [Ring("skill:x", 0.0, "ivr_intent"), Ring("queue:q", 15.0, "queue")]
    offered = 1795380456.7238967
    now = offered + 15.0
    assert len(engine.open_rings(rings, now - offered)) == 2


def test_agent_pools_follow_skills_level_and_queue_skills():
    queues = {"default": (), "billing": ("billing",), "vip": ("vip", "billing")}
    senior = AgentProfile(3, frozenset({"billing"}), level=3)
    pools = engine.pools_of(senior, queues, POLICY)
    assert pools == ["agent:3", "skill:billing", "complaints", "queue:billing",
                     "queue:default"]
    junior = AgentProfile(4, frozenset({"complaints"}), level=1)
    assert "complaints" in engine.pools_of(junior, queues, POLICY)
    assert "queue:vip" not in engine.pools_of(junior, queues, POLICY)


def test_free_agent_takes_the_first_call_in_priority_order_it_may_serve():
    queue_ring = (Ring("queue:q", 0.0, "queue"),)
    held = (Ring("agent:9", 0.0, "sticky_agent"), Ring("queue:q", 10.0, "queue"))
    waiting = [WaitingCall("held-for-9", 10.0, 100.0, held, "q"),
               WaitingCall("later", 50.0, 101.0, queue_ring, "q"),
               WaitingCall("first", 20.0, 99.0, queue_ring, "q")]
    call, ring = engine.best_call_for(["agent:1", "queue:q"], waiting, now=105.0)
    assert call.call_id == "first" and ring.rule == "queue"
    # Once the held call's queue ring opens, its better score wins.
    call, _ = engine.best_call_for(["agent:1", "queue:q"], waiting, now=111.0)
    assert call.call_id == "held-for-9"
    # The sticky agent gets it at once.
    call, ring = engine.best_call_for(["agent:9", "queue:q"], waiting, now=105.0)
    assert call.call_id == "held-for-9" and ring.rule == "sticky_agent"


def test_no_call_for_an_agent_outside_every_open_ring():
    waiting = [WaitingCall("c", 1.0, 100.0, (Ring("skill:zh", 0.0, "ivr_intent"),), "q")]
    assert engine.best_call_for(["queue:q"], waiting, now=101.0) is None


def test_rings_survive_their_redis_encoding():
    rings = engine.rings_for(CallProfile("c", "q", "gold", 5, True, True, "sales"), POLICY)
    assert list(engine.decode_rings(engine.encode_rings(rings))) == rings


def test_queue_position_is_announced_only_when_it_moves_materially():
    assert material(5, 1)            # next in line
    assert material(10, 8)           # two places and 20%
    assert not material(10, 9)       # one place
    assert not material(40, 35)      # five places but under 20%
    assert material(40, 32)
    assert not material(3, 3)


async def test_a_timer_claimed_by_a_node_that_died_fires_again_after_its_lease(redis_url,
                                                                             redis_prefix):
    from redis.asyncio import Redis

    from core.timers import LEASE_S, Timer, Timers

    redis = Redis.from_url(redis_url, decode_responses=True)
    timers = Timers(redis, f"{redis_prefix}:timers")
    timer = Timer("wrapup", "7", "c-1")
    await timers.schedule(timer, 100.0)
    assert await timers.claim_due(200.0) == [timer]  # ...and that node died
    assert await timers.claim_due(200.0 + LEASE_S - 1) == []  # still leased
    assert await timers.claim_due(200.0 + LEASE_S + 1) == [timer]  # another node
    await timers.done(timer, 200.0 + LEASE_S + 1)
    assert await timers.claim_due(10_000.0) == []
    # A handler that schedules its timer again keeps the new schedule.
    await timers.schedule(timer, 300.0)
    assert await timers.claim_due(300.0) == [timer]
    await timers.schedule(timer, 400.0)
    await timers.done(timer, 300.0)
    assert await timers.claim_due(400.0) == [timer]
    await redis.aclose()
