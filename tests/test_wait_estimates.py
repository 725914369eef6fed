"""Honest wait estimates in route.queued: position x recent average handle time / agents
serving the queue, re-sent when they move materially (routing/estimate.py)."""

from __future__ import annotations

from core import appkeys
from core.keys import Keys
from cti.announce import due
from routing.estimate import DEFAULT_AHT_S, estimated_wait_s, wait_moved
from routing.scenario import one_queue
from routing.simulate import simulate
from routing.states import AgentState
from tests.routers import offer, sign_in


def test_a_caller_waits_for_as_many_calls_to_end_as_are_ahead_among_the_agents_serving():
    assert estimated_wait_s(1, 240.0, 4) == 60
    assert estimated_wait_s(3, 240.0, 4) == 180
    assert estimated_wait_s(2, None, 0) == 2 * DEFAULT_AHT_S  # nobody serving: one agent


def test_an_estimate_is_re_sent_only_when_it_moves_thirty_seconds_and_a_quarter():
    assert not wait_moved(100.0, 125.0)  # 25 s
    assert not wait_moved(200.0, 240.0)  # 40 s but 20%
    assert wait_moved(200.0, 250.0) and wait_moved(200.0, 150.0)
    assert due(("2", "200"), 2, 250) and not due(("2", "200"), 2, 240)
    assert due(("3", "200"), 1, 200)  # next in line
    assert not due((None, None), 1, 999)  # never announced: its first notice is on its way


async def test_the_notice_estimate_is_the_estimate_formula(routers, redis_prefix):
    router = routers[0]
    await router.store.redis.hset(Keys(redis_prefix).stats, "aht", "250.00")
    for agent_id in (1, 2, 3):  # three agents on calls, one on a break
        await sign_in(router, agent_id, set(), 0.0)
        await router.store.make_unavailable(agent_id, AgentState.on_call, "", 1.0, force=True)
    await sign_in(router, 4, set(), 0.0, available=False)
    for n in range(5):
        assert await offer(router, f"w{n}", 100.0 + n) is None
    notice = await router.store.queued_notice("w4")
    assert notice is not None and notice.position == 5 and notice.serving == 3
    assert notice.wait_s == estimated_wait_s(5, 250.0, 3) == 417


async def test_simulated_estimates_are_within_half_the_median_wait(redis_url, redis_prefix):
    """An hour of a queue at about 85% occupancy: the median error of what route.queued
    told the callers who waited is bounded (docs/simulator.md has longer runs)."""
    from core.redisconn import client_from_url

    scenario = one_queue(10, 170.0, 180.0, calls=170, warmup_calls=100, seed=5)
    redis = client_from_url(redis_url)
    try:
        report = await simulate(scenario, redis, redis_prefix)
    finally:
        await redis.aclose()
    assert report.estimates is not None and report.estimates.calls >= 30
    assert report.estimates.median_error_s <= 0.5 * report.estimates.median_wait_s


async def test_a_waiting_caller_hears_a_new_estimate_when_fewer_agents_serve(center):
    """Four agents on calls, a fifth caller waits; three of them go not-ready after their
    wrap-up: that caller's estimate grows, and the PBX is told again."""
    agents, ivrs = [], []
    for n in range(4):
        agent, ivr = await center.answered_call(f"est{n}", f"busy-{n}", f"+861380000{n:04d}")
        agents.append(agent)
        ivrs.append(ivr)
    redis = center.server.app[appkeys.REDIS]
    await redis.hset(Keys(center.settings.redis_prefix).stats, "aht", "600.00")
    waiting = await center.ivr()
    await waiting.offer("waiting", "+8613800009999")
    first = await waiting.inbox.expect("route.queued", call_id="waiting")
    assert first["position"] == 1 and first["estimated_wait_s"] == 150  # 600 s / 4
    for n in (1, 2, 3):
        await ivrs[n].event("call.ended", f"busy-{n}", cause="normal")
        await agents[n].inbox.expect("call.ended", call_id=f"busy-{n}")
        await agents[n].not_ready()  # for after the wrap-up
        await agents[n].request("wrapup.done", call_id=f"busy-{n}", disposition="resolved",
                                notes="")
        await agents[n].inbox.expect("agent.state", state="not_ready")
    again = await waiting.inbox.expect("route.queued", call_id="waiting", timeout=20)
    assert again["position"] == 1 and again["estimated_wait_s"] > 300  # ~440 s / 1
