"""Several real `callcenter serve` processes on one Redis and one database.

Each test starts its nodes as subprocesses (as production runs them), on the test
session's Redis under a fresh key prefix, and on PostgreSQL (a fresh database) when
CALLCENTER_TEST_POSTGRES_URL is set, else on one SQLite file shared by the nodes. The
PBX and the agents are simulated (tests/multinode.py), spread over the nodes; they keep
their own record of what the service told them, and the tests compare it with Redis and
the interaction records.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import Deployment, phone
from core import db
from tests.clients import AgentClient, Ivr
from tests.conftest import POSTGRES_URL
from tests.multinode import (
    Cluster,
    DoubleAssignmentWatch,
    PhoneCall,
    Switch,
    check_console_snapshot,
    check_snapshot,
    offer_steadily,
    overlapping_talks,
    people,
    queue_order_violations,
    until,
    until_drained,
    until_quiet,
)
from tests.waits import eventually

# Fewer calls for a quick look at a change: CALLCENTER_TEST_MULTINODE_CALLS=300.
CALLS = int(os.environ.get("CALLCENTER_TEST_MULTINODE_CALLS", "2000"))


async def hang_up_soon(switch: Switch, call: PhoneCall, delay: float) -> None:
    await asyncio.sleep(delay)
    await switch.hang_up_if_waiting(call)


# The cluster ----------------------------------------------------------------


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)]
                if POSTGRES_URL else ["sqlite"])
async def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """PostgreSQL when available (a database of its own), else a SQLite file."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    name = f"cc_multinode_{secrets.token_hex(4)}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture
async def cluster(shared_database: str, redis_url: str, redis_prefix: str,
                  tmp_path: Path) -> AsyncIterator[Cluster]:
    deployment = Deployment(tmp_path, shared_database, redis_url, prefix=redis_prefix)
    redis = Redis.from_url(redis_url, decode_responses=True)
    cluster = Cluster(deployment, redis)
    try:
        yield cluster
    finally:
        for proc in cluster.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in cluster.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await redis.aclose()
        print(cluster.log_tails())  # shown when the test fails


# Tests --------------------------------------------------------------------


async def test_call_offered_on_one_node_pops_the_agent_on_another(cluster: Cluster):
    cluster.agents = await cluster.deployment.prepare(agents=1, customers=1)
    await cluster.start(2)
    node_a, node_b = cluster.urls
    agent = await AgentClient.login(node_b, "a0", "bench-password")
    ivr = await Ivr.connect(node_a, await cluster.pbx_token("pbx-a"))
    try:
        await agent.available()
        await ivr.offer("x-1", phone(0))

        pop = await agent.inbox.expect("screen_pop", call_id="x-1")
        assert pop["customer"]["id"] == "B0" and pop["tier"] == "vip"
        connect = await ivr.inbox.expect("route.connect", call_id="x-1")
        assert connect["agent_id"] == agent.agent_id and connect["extension"] == "1000"

        await ivr.offer("x-2", "+8613900000002")  # the agent is busy: it waits
        await ivr.inbox.expect("route.queued", call_id="x-2")
        await ivr.event("call.answered", "x-1", agent_id=agent.agent_id)
        await agent.inbox.expect("call.connected", call_id="x-1")
        await ivr.event("call.ended", "x-1", cause="normal")
        await agent.inbox.expect("call.ended", call_id="x-1")
        assert (await agent.request("wrapup.done", call_id="x-1",
                                    disposition="resolved"))["type"] == "ack"

        # Freed on B, the agent takes the waiting call: the PBX on A hears of it.
        await agent.inbox.expect("screen_pop", call_id="x-2")
        connect = await ivr.inbox.expect("route.connect", call_id="x-2")
        assert connect["agent_id"] == agent.agent_id
    finally:
        await ivr.close()
        await agent.close()


async def test_call_control_between_nodes_is_decided_once(cluster: Cluster):
    """An agent on one node holds its call; the PBX on the other node gets route.control
    and its control.result reaches the waiting agent across the nodes. A second command
    the PBX leaves unanswered times out, and its late result is refused as expired."""
    cluster.agents = await cluster.deployment.prepare(agents=1, customers=1)
    await cluster.start(2, CALLCENTER_CONTROL_TIMEOUT_S="3")
    node_a, node_b = cluster.urls
    agent = await AgentClient.login(node_b, "a0", "bench-password")
    ivr = await Ivr.connect(node_a, await cluster.pbx_token("pbx-a"))
    try:
        await agent.available()
        await ivr.offer("k-1", phone(0))
        await ivr.inbox.expect("route.connect", call_id="k-1")
        await ivr.event("call.answered", "k-1", agent_id=agent.agent_id)
        asked = asyncio.create_task(agent.control("k-1", "hold"))
        command = await ivr.command(call_id="k-1")
        assert (await ivr.result(command))["type"] == "ack"
        assert (await asked)["command_id"] == command["command_id"]
        await ivr.act(command)
        await agent.inbox.expect("call.held", call_id="k-1")

        asked = asyncio.create_task(agent.control("k-1", "resume"))
        command = await ivr.command(call_id="k-1")
        assert (await asked)["code"] == "control_timeout"
        assert (await ivr.result(command))["code"] == "command_expired"
    finally:
        await ivr.close()
        await agent.close()


async def test_an_agent_whose_node_died_stops_getting_calls_after_its_lease(cluster: Cluster):
    cluster.agents = await cluster.deployment.prepare(agents=1, customers=1)
    await cluster.start(2, CALLCENTER_AGENT_AWAY_S="1.0")
    node_a, _ = cluster.urls
    agent = await AgentClient.login(cluster.urls[1], "a0", "bench-password")
    await agent.available()
    await agent.inbox.expect("agent.state", state="available")

    cluster.kill(1)  # the node holding the console dies: nobody renews its lease
    live = f"{cluster.deployment.prefix}:agent:{agent.agent_id}"
    states = []

    async def changed() -> bool:
        states.append(await cluster.redis.hmget(live, "state", "reason"))
        return states[-1] != ["available", ""]

    # The surviving node fires the lease's timer (10 s); a loaded machine is later.
    await eventually(changed, timeout=60, what="the dead node's agent leaves available")
    assert states[-1] == ["not_ready", "disconnected"], states[-3:]

    ivr = await Ivr.connect(node_a, await cluster.pbx_token("pbx-a"))
    try:
        await ivr.offer("after-death", phone(0))
        await ivr.inbox.expect("route.queued", call_id="after-death")
        await ivr.inbox.nothing("route.connect", wait=0.5)
    finally:
        await ivr.close()
        await agent.close()


@pytest.mark.timeout(300)
async def test_two_thousand_calls_on_three_nodes_no_double_assignment_none_lost(
        cluster: Cluster):
    calls, per_node, known = CALLS, 10, CALLS // 10
    cluster.agents = await cluster.deployment.prepare(agents=3 * per_node, customers=known)
    await cluster.start(3, CALLCENTER_RING_TIMEOUT_S="60", CALLCENTER_WRAP_UP_S="60")
    switch = Switch(talk_s=(0.1, 0.3))
    async with people(cluster, switch, ["pbx-0", "pbx-1", "pbx-2"], per_node) as (
            pbxs, agents), DoubleAssignmentWatch(cluster) as watch:
        # Each caller calls once (no sticky agent to wait for); some are known, of every tier.
        callers = list(range(known)) + list(range(10**6, 10**6 + calls - known))
        random.Random(3).shuffle(callers)
        offered: list[PhoneCall] = []
        for n, caller in enumerate(callers):
            offered.append(await pbxs[n % 3].offer(f"m-{n}", phone(caller)))
            if n % 10 == 5:  # a caller hangs up as the service routes the call
                switch.spawn(hang_up_soon(switch, offered[-1], random.uniform(0, 0.02)))
            if n == calls * 3 // 4:  # the agents sign off while calls still come in: some wait
                switch.spawn(asyncio.gather(*(agent.stop() for agent in agents)))
        await until(lambda: all(not p.unacked for p in pbxs), timeout=120)
        await until_quiet(cluster, agents, timeout=30)
        # One waiting caller in ten gives up.
        for call in offered[::10]:
            await switch.hang_up_if_waiting(call)
        await until(lambda: all(not p.unacked for p in pbxs), timeout=30)

    assert not [e for p in pbxs for e in p.errors], [e for p in pbxs for e in p.errors][:5]
    assert watch.samples > 10 and not watch.violations, watch.violations[:5]
    assert not switch.violations, switch.violations[:5]
    records = await cluster.interactions()
    assert sorted(r.call_id for r in records) == sorted(c.call_id for c in offered)
    assert not overlapping_talks(records)
    waiting = dict(await cluster.redis.zrange(f"{cluster.deployment.prefix}:waiting:default",
                                              0, -1, withscores=True))
    live = await cluster.live_calls()
    assert {c: s["state"] for c, s in live.items()} == dict.fromkeys(waiting, "queued")
    outcomes = {r.call_id: r.outcome for r in records}
    assert all(outcomes[c] is None for c in waiting)
    assert all(outcomes[c] in ("answered", "abandoned") for c in outcomes if c not in waiting)
    answered = sum(o == "answered" for o in outcomes.values())
    print(f"{answered} answered, {len(waiting)} waiting, {watch.samples} samples of the agents")
    assert answered >= 3 * per_node and waiting
    assert not queue_order_violations(records, live, await cluster.agent_hashes())[:5]


@pytest.mark.timeout(180)
async def test_a_node_killed_mid_run_loses_nothing(cluster: Cluster):
    cluster.agents = await cluster.deployment.prepare(agents=9, customers=100)
    # The ring timeout outlasts the failover (consoles and the PBX moving, the PBX resending
    # what the dead node never acked, the switch paused meanwhile); it runs from the
    # reservation, before the route.connect even reached the PBX. An answer sent to the
    # doomed node and resent after it is refused (ring-no-answer requeued the call: the
    # rule for answer against ring-no-answer), and the PBX holds a connected call that
    # the service has waiting: with 5 s, a one-off failure on a loaded host.
    await cluster.start(3, CALLCENTER_RING_TIMEOUT_S="60", CALLCENTER_WRAP_UP_S="3")
    switch = Switch(talk_s=(0.2, 0.6))
    async with people(cluster, switch, ["pbx-0", "pbx-1", "pbx-2"], 3, wrap_s=0.3) as (
            pbxs, agents), DoubleAssignmentWatch(cluster) as watch:
        slow = agents[2]  # on the doomed node; its wrap-ups end only by the shared timer
        slow.wraps_up = False
        offers = itertools.count()
        load = switch.spawn(offer_steadily(pbxs, offers, rate=12))
        await until(lambda: slow.state.get("state") == "wrap_up", timeout=30)
        victims = [a for a in agents if a.node == 2]
        had = {a.agent_id: a.current for a in victims}
        switch.running.clear()  # the PBX and consoles pause while clients move
        unacked = await pbxs[2].offer(f"k-{next(offers)}", phone(99))
        cluster.kill(2)

        await until(lambda: all(a.reconnects for a in victims), timeout=20)
        resent, snapshot = await pbxs[2].reconnect(cluster.urls[0])
        assert unacked.offer_event in resent
        print(f"resent {len(resent)} events; the snapshot has {len(snapshot['calls'])} calls")
        check_snapshot(switch, pbxs[2], snapshot)
        switch.running.set()
        duplicate = await pbxs[2].resend_first()
        await asyncio.sleep(2)  # more calls, on the two nodes left
        load.cancel()
        await until(lambda: all(c.state == "ended" for c in switch.calls.values()), 30)
        await until_drained(cluster, pbxs, timeout=30)

    assert duplicate["duplicate"] is True
    for agent in victims:
        first = agent.reconnects[0]
        check_console_snapshot(first)
        state = next(m for m in first if m["type"] == "agent.state")
        assert state["call_id"] == had[agent.agent_id] or had[agent.agent_id] is None, (
            agent.agent_id, had, first)
    assert next(m for m in slow.reconnects[0] if m["type"] == "agent.state")["state"] == \
        "wrap_up"
    assert not [e for p in pbxs for e in p.errors], [e for p in pbxs for e in p.errors][:5]
    assert not watch.violations and not switch.violations, (watch.violations[:3],
                                                             switch.violations[:3])
    records = await cluster.interactions()
    assert sorted(r.call_id for r in records) == sorted(switch.calls)
    assert {r.outcome for r in records} == {"answered"}
    assert not overlapping_talks(records)
    assert all(r.answered_at and r.ended_at for r in records)


# Gaps the runs above found in the call path, each reproduced on one in-process node.
# Those still open are expected failures; `strict` makes a fix visible (drop the mark).

@pytest.mark.parametrize("kind", ["call.offered", "call.answered", "call.ended"])
async def test_an_event_applied_just_before_its_node_died_is_a_duplicate_when_resent(
        center, kind):
    from core.appkeys import KEYS, REDIS
    from cti.telephony import scoped_event_id

    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    steps = [("call.offered", {"ani": "+8613900000001"}),
             ("call.answered", {"agent_id": agent.agent_id}), ("call.ended", {"cause": "normal"})]
    for type_, fields in steps[:[s for s, _ in steps].index(kind) + 1]:
        event_id = await ivr.send(type_, "d-1", **fields)
        assert (await ivr.reply_to(event_id))["type"] == "ack"
    app = center.server.app
    scoped = scoped_event_id("pbx-1", event_id)
    assert await app[REDIS].delete(app[KEYS].event(scoped)) == 1  # died before setting it

    await ivr.send(kind, "d-1", event_id=event_id, **fields)

    assert await ivr.reply_to(event_id) == {"type": "ack", "event_id": event_id,
                                            "duplicate": True}


async def test_an_answer_stored_just_before_its_node_died_is_applied_when_resent(center):
    from core.appkeys import ROUTER
    from cti import records

    agent, ivr = await center.ringing_call("amy", "h-1", "+8613900000001")
    async with db.session_scope(center.sessions) as session:  # committed, then the node died
        await records.mark_event(session, "answer-h-1", "h-1", "call.answered")

    await ivr.send("call.answered", "h-1", event_id="answer-h-1", agent_id=agent.agent_id)
    await ivr.reply_to("answer-h-1")

    call = await center.server.app[ROUTER].store.call("h-1")
    assert call["state"] == "connected"


async def test_a_caller_hanging_up_while_an_agent_takes_the_call_leaves_the_console_open(
        center):
    from core.appkeys import CALLS, ROUTER

    agent = await center.agent("amy")
    ivr = await center.ivr()
    await ivr.offer("z-1", "+8613900000001")
    calls = center.server.app[CALLS]
    dispatch = calls._dispatch

    async def caller_hangs_up_first(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await ivr.event("call.ended", "z-1", cause="caller_hangup")
        return await dispatch(*args, **kwargs)

    calls._dispatch = caller_hangs_up_first  # type: ignore[method-assign]
    reply = await agent.request("agent.state.set", state="available")

    assert reply["type"] == "ack"
    # The ring step saw the call gone: no pop for it, and its key was not written again.
    store = center.server.app[ROUTER].store
    assert await store.call("z-1") == {}
    amy = await store.agent(agent.agent_id)
    assert (amy["state"], amy["call_id"]) == ("available", "")
    assert not [m for m in agent.inbox.messages if m["type"] == "screen_pop"]


async def test_a_burst_of_offers_on_one_connection_is_served_without_refusals(center):
    ivr = await center.ivr()
    for n in range(300):
        await ivr.send("call.offered", f"b-{n}", ani=f"+86139{n:08d}")
    async with asyncio.timeout(60):
        while sum(m["type"] in ("ack", "error") for m in ivr.inbox.messages) < 300:
            await asyncio.sleep(0.05)

    assert not [m for m in ivr.inbox.messages if m["type"] == "error"]


async def test_a_caller_hanging_up_as_an_agent_is_reserved_frees_the_agent(center):
    from core.appkeys import CALLS, ROUTER

    agent = await center.agent("amy")
    ivr = await center.ivr()
    await ivr.offer("r-1", "+8613900000001")
    calls = center.server.app[CALLS]
    read = calls._live

    async def agent_frees_up_after_the_read(call_id: str) -> dict[str, str]:
        call = await read(call_id)  # queued, no agent yet
        if not reserved:
            reserved.append(call_id)
            await agent.available()  # ...and now it rings amy
        return call

    reserved: list[str] = []

    calls._live = agent_frees_up_after_the_read  # type: ignore[method-assign]
    await ivr.event("call.ended", "r-1", cause="caller_hangup")

    amy = await center.server.app[ROUTER].store.agent(agent.agent_id)
    assert (amy["state"], amy["call_id"]) == ("available", "")


async def test_recording_pause_against_hang_up_across_nodes_leaves_one_outcome(
        cluster: Cluster):
    """The PBX's recording.paused through one node and its call.ended through the other,
    at once, round after round (issue 21): the call always ends in wrap-up with its agent,
    a pause that won is on the record (closed by the hang-up, or open: to the call's end),
    one that lost is refused as an illegal transition."""
    cluster.agents = await cluster.deployment.prepare(agents=1, customers=1)
    await cluster.start(2)
    node_a, node_b = cluster.urls
    agent = await AgentClient.login(node_b, "a0", "bench-password")
    token = await cluster.pbx_token("pbx-a")
    ivr_a, ivr_b = await Ivr.connect(node_a, token), await Ivr.connect(node_b, token)
    won = {}
    try:
        await agent.available()
        for n in range(6):
            call_id = f"rp-{n}"
            if n:
                await agent.request("wrapup.done", call_id=f"rp-{n - 1}",
                                    disposition="resolved")
                await agent.inbox.expect("agent.state", state="available")
            await ivr_a.offer(call_id, phone(0))
            await ivr_a.inbox.expect("route.connect", call_id=call_id)
            await ivr_a.event("call.answered", call_id, agent_id=agent.agent_id)
            paused_id, ended_id = await asyncio.gather(
                ivr_a.send("recording.paused", call_id), ivr_b.send("call.ended", call_id))
            paused, ended = await asyncio.gather(ivr_a.reply_to(paused_id),
                                                 ivr_b.reply_to(ended_id))
            assert ended["type"] == "ack", ended
            assert paused["type"] == "ack" or paused["code"] == "illegal_transition", paused
            won[call_id] = paused["type"] == "ack"
            await agent.inbox.expect("call.ended", call_id=call_id)
            assert (await cluster.live_calls())[call_id]["state"] == "wrap_up"

        async def recorded():
            rows = {r.call_id: r for r in await cluster.interactions()}
            return rows if all(rows.get(c) and rows[c].ended_at for c in won) else None

        rows = await eventually(recorded, 30, what="every round's record ended")
        for call_id, paused_won in won.items():
            pauses = rows[call_id].recording_pauses or []
            assert len(pauses) == int(paused_won), (call_id, pauses)
            assert all(p["to_s"] is None or p["to_s"] <= rows[call_id].talk_s + 0.01
                       for p in pauses)
    finally:
        await ivr_a.close()
        await ivr_b.close()
        await agent.close()


async def test_a_resent_offer_owing_its_writes_after_the_answer_rings_nobody_again(center):
    """Resending an offer whose writes were owed tells the PBX where the call stands:
    once the call is answered that is nothing, not a second route.connect."""
    from core.appkeys import KEYS, REDIS
    from cti.telephony import scoped_event_id

    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    offer = await ivr.send("call.offered", "o-1", ani="+8613900000001", queue="default")
    await ivr.inbox.expect("route.connect", call_id="o-1")
    answer = await ivr.send("call.answered", "o-1", agent_id=agent.agent_id)
    assert (await ivr.reply_to(answer))["type"] == "ack"
    app = center.server.app
    key = app[KEYS].event(scoped_event_id("pbx-1", offer))
    assert await app[REDIS].set(key, "[]", xx=True)  # applied, its writes owed

    await ivr.send("call.offered", "o-1", event_id=offer, ani="+8613900000001",
                   queue="default")
    assert (await ivr.reply_to(offer))["type"] == "ack"
    # A later reply comes after whatever was sent with that ack (one outbox, in order).
    await ivr.send("call.answered", "o-1", event_id=answer, agent_id=agent.agent_id)
    assert (await ivr.reply_to(answer))["duplicate"] is True
    assert not [m for m in ivr.inbox.messages if m.get("type") == "route.connect"]
