"""An arriving call in one Redis step: queued and given an agent together, its rings
decided on its sticky agent's state and its pools' staffing read in one round trip."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from routing.engine import CallProfile
from routing.service import Router
from routing.states import AgentState
from tests.routers import sign_in

NOW = 1_700_000_000.0


async def test_an_arriving_call_is_queued_and_reserved_in_one_step(routers) -> None:
    router = routers[0]
    await sign_in(router, 1, set(), NOW)
    assignment = (await router.offer(CallProfile("c1", "default", "standard"), NOW, NOW)
                  ).assignment
    assert assignment is not None and assignment.agent_id == 1
    assert (assignment.on, assignment.rule, assignment.pool) == (
        "arrival", "queue", "queue:default")
    assert assignment.call["state"] == "ringing" and assignment.agent["state"] == "ringing"
    assert assignment.call["queued_at"], "it joined its queue in the same step"
    store = router.store
    assert await store.waiting_count("default") == 0
    assert (await store.agent(1))["call_id"] == "c1"
    second = (await router.offer(CallProfile("c2", "default", "standard"), NOW, NOW)).assignment
    assert second is None, "nobody left: the second call waits"
    assert await store.waiting_count("default") == 1


async def test_two_nodes_offering_at_once_never_give_one_agent_two_calls(routers) -> None:
    for agent_id in (1, 2, 3):
        await sign_in(routers[0], agent_id, set(), NOW)
    for n in range(10):
        offers = [r.offer(CallProfile(f"r{n}-{i}", "default", "standard"), NOW, NOW)
                  for i, r in enumerate([*routers, *routers])]
        got = [o.assignment for o in await asyncio.gather(*offers) if o.assignment is not None]
        agents = [a.agent_id for a in got]
        assert len(agents) == len(set(agents)) == 3, agents
        for a in got:  # the agents free again for the next round
            await routers[0].store.drop_call(a.call_id, "default")
            await routers[0].store.make_available(a.agent_id, NOW, force=True)
        for i in range(4):
            await routers[0].store.drop_call(f"r{n}-{i}", "default")


async def _rings(router: Router, call_id: str) -> list[str]:
    call = CallProfile(call_id, "default", "standard", sticky_agent_id=7)
    rings = (await router.offer(call, NOW, NOW, read_sticky=True)).rings
    return [ring.pool for ring in rings]


async def test_the_sticky_agent_is_a_ring_only_while_it_works(routers) -> None:
    router = routers[0]
    assert await _rings(router, "s0") == ["queue:default"], "not logged in to routing"
    await sign_in(router, 7, set(), NOW, available=False)
    assert await _rings(router, "s1") == ["queue:default"], "not ready: no sticky ring"
    await router.set_state(7, AgentState.available, "", NOW)
    pools = await _rings(router, "s2")
    assert pools == ["agent:7", "queue:default"], "working: its own ring first"


async def test_a_hang_up_says_whether_a_monitor_or_a_command_follows_the_call(routers) -> None:
    router = routers[0]
    store = router.store
    await sign_in(router, 1, set(), NOW)
    for call_id, answered, followed in (("h1", False, False), ("h2", False, True),
                                        ("h3", True, False), ("h4", True, True)):
        await store.make_available(1, NOW, force=True)
        taken = (await router.offer(CallProfile(call_id, "default", "standard"), NOW, NOW)
                 ).assignment
        assert taken is not None and taken.agent_id == 1
        if answered:
            assert (await store.answer(call_id, 1, NOW, timers="t", rona="r")).won
        followers = [store.keys.monitor(call_id), store.keys.calls_commands(call_id)]
        if followed:
            await store.redis.sadd(followers[1], "cmd-1")
        step = await store.hang_up(call_id, "connected" if answered else "ringing", 1, NOW,
                                   timers="t", wrap_until=NOW, wrap_timer="w", rona="r",
                                   watched=followers)
        assert step.won and step.watched is followed, call_id
        await store.redis.delete(*followers)


async def test_an_offer_left_waiting_says_where_it_waits_in_the_same_step(routers) -> None:
    """route.queued's position and estimate come from the offer's own step, noted on the
    call as announced; a callback of the queue with a better place counts as ahead."""
    router = routers[0]
    store = router.store
    await sign_in(router, 1, set(), NOW)
    taken = await router.offer(CallProfile("q0", "default", "standard"), NOW, NOW, notice=True)
    assert taken.assignment is not None and taken.queued is None, "taken at once: no notice"
    first = await router.offer(CallProfile("q1", "default", "standard"), NOW, NOW, notice=True)
    assert first.assignment is None and first.queued is not None
    assert (first.queued.queue, first.queued.position) == ("default", 1)
    await store.redis.zadd(store.keys.callbacks, {"cb-1": NOW})
    await store.redis.hset(store.keys.call("cb-1"), mapping={
        "state": "queued", "queue": "default", "score": NOW - 1_000})
    second = await router.offer(CallProfile("q2", "default", "standard"), NOW + 1, NOW + 1,
                                notice=True)
    assert second.queued is not None and second.queued.position == 3
    call = await store.call("q2")
    assert (call["announced_position"], call["announced_wait"]) == (
        "3", str(second.queued.wait_s))
    # Asked separately later, the same answer.
    assert await store.queued_notice("q2") == second.queued
    # Without `notice`, nothing is noted.
    third = await router.offer(CallProfile("q3", "default", "standard"), NOW + 2, NOW + 2)
    assert third.queued is None and "announced_position" not in await store.call("q3")


async def _commands_run(redis: Redis) -> Counter[str]:
    """Commands the server has run so far, by name (a script's own commands included)."""
    stats = await redis.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(row["calls"])
                    for name, row in stats.items()})


async def test_a_waiting_offer_and_its_hang_up_run_few_commands_inside_their_steps(
        routers) -> None:
    """Every command a script runs costs Redis about as much as a client's small command:
    the fields of an arriving call are set in one HSET, what the steps read of a call in
    one HMGET where they can."""
    router = routers[0]
    store = router.store
    await router.offer(CallProfile("k0", "default", "standard"), NOW, NOW, notice=True)
    await store.hang_up("k0", "queued", None, NOW, timers="t", wrap_until=NOW, wrap_timer="w",
                        rona="r")  # both scripts loaded
    before = await _commands_run(store.redis)
    offered = await router.offer(CallProfile("k1", "default", "standard"), NOW, NOW,
                                 event=(store.keys.event("e-k1"), b"[]"), notice=True)
    ran = await _commands_run(store.redis) - before
    assert offered.queued is not None and offered.queued.position == 1
    assert (await store.call("k1"))["queued_at"]
    ran -= Counter(evalsha=1, info=1)
    assert sum(ran.values()) <= 19, ran
    before = await _commands_run(store.redis)
    step = await store.hang_up("k1", "queued", None, NOW, timers="t", wrap_until=NOW,
                               wrap_timer="w", rona="r", event=(store.keys.event("e-k1x"), b"[]"),
                               watched=[store.keys.monitor("k1"), store.keys.calls_commands("k1")])
    ran = await _commands_run(store.redis) - before - Counter(evalsha=1, info=1)
    assert step.won and not step.watched and await store.call("k1") == {}
    assert sum(ran.values()) <= 13, ran
