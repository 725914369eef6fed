"""The index of waiting calls by pool: an agent who frees up takes the best call it may
take, however deep it waits, and is never left idle beside one (routing/queue_index.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from core.keys import Keys
from routing.service import Router
from routing.states import AgentState
from tests.routers import offer, sign_in


async def test_a_freed_agent_takes_a_call_it_may_take_behind_forty_it_may_not(routers):
    router = routers[0]
    await sign_in(router, 1, set(), 0.0, available=False)
    await sign_in(router, 2, {"billing"}, 0.0, available=False)  # the billing ring holds
    # 40 VIP callers asked for billing: only billing agents may take them for 15 s.
    for n in range(40):
        assert await offer(router, f"vip-{n}", 100.0, tier="vip", intent="billing") is None
    assert await offer(router, "plain", 80.0, now=100.0) is None
    assert await router.store.position("plain", "default") == 41
    assignment = await router.set_state(1, AgentState.available, "", 101.0)
    assert assignment is not None and assignment.call_id == "plain"
    assert assignment.on == "agent_free" and assignment.rule == "queue"


async def test_a_ring_that_opened_by_time_is_taken_without_waiting_for_its_timer(routers):
    router = routers[0]
    await sign_in(router, 1, set(), 0.0, available=False)
    await sign_in(router, 2, {"billing"}, 0.0, available=False)
    assert await offer(router, "billing-1", 100.0, intent="billing") is None
    assert (await router.set_state(1, AgentState.available, "", 110.0)) is None
    await router.set_state(1, AgentState.not_ready, "", 111.0)
    # The queue ring opened at 115; no widening timer has fired, the agent frees at 116.
    assignment = await router.set_state(1, AgentState.available, "", 116.0)
    assert assignment is not None and assignment.call_id == "billing-1"


async def test_a_call_that_leaves_the_queue_leaves_the_index(routers, redis_url, redis_prefix):
    router, keys = routers[0], Keys(redis_prefix)
    await sign_in(router, 2, {"billing"}, 0.0, available=False)
    assert await offer(router, "gone", 100.0, intent="billing") is None
    assert await router.store.redis.zscore(keys.pool_waiting("skill:billing"), "gone")
    assert await router.store.redis.zcard(keys.ring_openings) == 1  # the queue ring
    await router.store.drop_call("gone", "default")
    assert await router.store.redis.zcard(keys.pool_waiting("skill:billing")) == 0
    assert await router.store.redis.zcard(keys.ring_openings) == 0


def idle_beside_waiting(agents: list[dict[str, str]], calls: list[dict[str, str]],
                        index: dict[str, set[str]]) -> list[str]:
    """An available agent while a call it may take (in one of its pools' index) waits."""
    waiting = {c["id"] for c in calls if c.get("state") == "queued"}
    found = []
    for agent in agents:
        if agent.get("state") != "available":
            continue
        for pool in agent["pools"].split(";"):
            for call_id in index.get(pool, set()) & waiting:
                found.append(f"agent {agent['id']} idle beside {call_id} ({pool})")
    return found


async def snapshot(router: Router) -> tuple[list[dict[str, str]], list[dict[str, str]],
                                            dict[str, set[str]]]:
    store = router.store
    agents = await store.agents()
    calls = await store.live_calls()
    pools = {p for a in agents for p in a["pools"].split(";")}
    index = {p: set(await store.redis.zrange(store.keys.pool_waiting(p), 0, -1))
             for p in pools}
    return agents, calls, index


@pytest.mark.parametrize("nodes", [1, 2])
async def test_two_agents_freeing_up_as_two_calls_arrive_leave_no_agent_idle(routers, nodes):
    rng = random.Random(nodes)
    agents = [1, 2, 3]
    for agent_id in agents:
        await sign_in(routers[0], agent_id, {"billing"} if agent_id == 3 else set(), 0.0,
                      available=False)
    now = 1000.0
    for round_ in range(40):
        now += 1.0
        freeing = rng.sample(agents, 2)
        steps = [routers[n % nodes].set_state(a, AgentState.available, "", now)
                 for n, a in enumerate(freeing)]
        steps += [offer(routers[(n + 1) % nodes], f"r{round_}-{n}", now,
                        intent=rng.choice((None, "billing"))) for n in range(2)]
        results = await asyncio.gather(*steps)
        taken = [r.call_id for r in results[:2] if r is not None]
        assert len(taken) == len(set(taken))
        agents_now, calls, index = await snapshot(routers[0])
        assert idle_beside_waiting(agents_now, calls, index) == []
        ringing = {a["call_id"] for a in agents_now if a["state"] == "ringing"}
        assert all(c["state"] == "queued" or c["id"] in ringing for c in calls)
        # every agent puts its call down and goes not-ready; the calls it did not get wait
        for agent in agents_now:
            if agent["state"] == "ringing":
                await routers[0].store.drop_call(agent["call_id"], "default")
            await routers[0].store.make_unavailable(int(agent["id"]), AgentState.not_ready,
                                                    "", now, force=True)
