"""Wallboard figures from whole calls through a running service, and its live stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable

import aiohttp
import pytest

from agent_console.wallboard import day_of, interval_of
from core import db
from core.appkeys import CALLS, DIRECTORY, WALLBOARD
from core.models import Complaint, Queue
from tests.waits import eventually


def board(center):
    return center.server.app[WALLBOARD]


def shift_clock(center, seconds: float) -> None:
    """Move the service's clock (calls, timers and wallboard share it) forward."""
    center.server.app[CALLS].clock = lambda: time.time() + seconds


async def answered_call(center, ivr, agent, call_id: str, ani: str) -> None:
    await ivr.offer(call_id, ani)
    await agent.inbox.expect("screen_pop", call_id=call_id)
    await ivr.event("call.answered", call_id, agent_id=agent.agent_id)
    await ivr.event("call.ended", call_id)
    await agent.inbox.expect("call.ended", call_id=call_id)
    reply = await agent.request("wrapup.done", call_id=call_id, disposition="resolved")
    assert reply["type"] == "ack", reply


def row(rows: list[dict], key: str, value: str) -> dict:
    return next(r for r in rows if r[key] == value)


async def test_a_call_answered_at_once_counts_as_answered_within_service_level(center):
    await center.add_customer("G", "Gold Person", "+8613800000101", tier="gold")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()

    await answered_call(center, ivr, agent, "fast", "+8613800000101")

    snap = await board(center).snapshot()
    totals = snap["totals"]
    assert (totals["offered"], totals["answered"], totals["answered_sl"]) == (1, 1, 1)
    assert totals["sl"] == 1.0 and totals["abandon_rate"] == 0.0
    assert totals["handled"] == 1 and totals["aht_s"] is not None and totals["asa_s"] < 1
    default = row(snap["queues"], "queue", "default")
    assert default["answered"] == 1 and default["sl"] == 1.0 and default["threshold_s"] == 20
    gold = row(snap["tiers"], "tier", "gold")
    assert gold["offered"] == 1 and gold["sl"] == 1.0
    assert row(snap["tiers"], "tier", "standard")["offered"] == 0
    amy = row(snap["agents"], "name", "Amy")
    assert amy["handled"] == 1 and amy["aht_s"] is not None and amy["state"] == "available"


async def test_a_caller_who_hangs_up_in_the_queue_counts_as_abandoned(center):
    ivr = await center.ivr()
    await ivr.offer("gone", "+8613800000102")
    await ivr.inbox.expect("route.queued", call_id="gone")
    await ivr.event("call.ended", "gone", cause="caller_hangup")

    totals = (await board(center).snapshot())["totals"]
    # Hung up at once: a short abandon (under short_abandon_s), still against the SL.
    assert (totals["offered"], totals["answered"], totals["abandoned"],
            totals["abandoned_short"]) == (1, 0, 0, 1)
    assert totals["sl"] == 0.0 and totals["abandon_rate"] == 1.0
    assert totals["waiting"] == 0


async def test_service_level_threshold_is_per_queue(center):
    async with db.session_scope(center.sessions) as session:
        session.add(Queue(name="sales", display_name="Sales", sl_threshold_s=10, sl_target=0.9))
    await center.server.app[DIRECTORY].load_queues()
    await board(center).refresh()
    agent = await center.agent("bob")
    ivr = await center.ivr()
    await ivr.offer("sales-call", "+8613800000103", queue="sales")
    await ivr.offer("default-call", "+8613800000104")
    shift_clock(center, 15)  # both have waited 15 s: over 10 s, under 20 s
    await agent.available()  # after each wrap-up the agent is available again
    for _ in range(2):
        pop = await agent.inbox.expect("screen_pop")
        await ivr.event("call.answered", pop["call_id"], agent_id=agent.agent_id)
        await ivr.event("call.ended", pop["call_id"])
        await agent.inbox.expect("call.ended", call_id=pop["call_id"])
        await agent.request("wrapup.done", call_id=pop["call_id"], disposition="sale")

    snap = await board(center).snapshot()
    sales = row(snap["queues"], "queue", "sales")
    assert (sales["answered"], sales["answered_sl"], sales["sl"]) == (1, 0, 0.0)
    assert sales["threshold_s"] == 10 and sales["target"] == 0.9
    assert sales["display_name"] == "Sales" and sales["asa_s"] >= 15
    default = row(snap["queues"], "queue", "default")
    assert (default["answered"], default["answered_sl"]) == (1, 1)
    assert snap["totals"]["sl"] == 0.5


async def test_figures_are_kept_per_customer_tier(center):
    await center.add_customer("V", "Very Important", "+8613800000105", tier="vip")
    await center.add_customer("S", "Some One", "+8613800000106", tier="standard")
    ivr = await center.ivr()
    await ivr.offer("vip-wait", "+8613800000105")
    await ivr.offer("std-wait", "+8613800000106")
    await ivr.offer("std-wait-2", "+8613800000199")  # unknown caller: standard tier
    await asyncio.sleep(0.2)  # time passing on purpose: the longest wait must show it

    snap = await board(center).snapshot()
    vip, standard = row(snap["tiers"], "tier", "vip"), row(snap["tiers"], "tier", "standard")
    assert (vip["offered"], vip["waiting"]) == (1, 1)
    assert (standard["offered"], standard["waiting"]) == (2, 2)
    assert standard["longest_wait_s"] >= 0.2
    assert row(snap["tiers"], "tier", "gold")["waiting"] == 0
    assert snap["totals"]["waiting"] == 3
    assert row(snap["queues"], "queue", "default")["waiting"] == 3


def test_calls_fall_in_the_15_minute_interval_they_were_offered_in():
    at = dt.datetime(2026, 3, 2, 9, 14, 59, tzinfo=dt.UTC).timestamp()
    assert interval_of(at, dt.UTC) == "0900"
    assert interval_of(at + 1, dt.UTC) == "0915"
    assert interval_of(at + 46 * 60, dt.UTC) == "1000"


async def test_intervals_count_calls_and_service_level_by_15_minutes(center):
    wallboard = board(center)
    now = time.time()
    midnight = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0).timestamp()
    earlier = max(midnight + 60, now - 30 * 60)
    for offered, wait in ((earlier, 5.0), (earlier + 1, 40.0), (now, 3.0)):
        data = {"queue": "default", "tier": "standard", "offered_at": offered}
        await wallboard.observe("call.offered", {"queue": "default", "tier": "standard"}
                                if offered == now else data)
        await wallboard.observe("call.answered", {**data, "answered_at": offered + wait})

    intervals = {i["start"]: i for i in (await wallboard.snapshot())["intervals"]}
    first = intervals[_hhmm(interval_of(earlier))]
    last = intervals[_hhmm(interval_of(now))]
    if first is not last:
        assert (first["answered"], first["answered_sl"], first["sl"]) == (2, 1, 0.5)
        assert (last["answered"], last["sl"]) == (1, 1.0)
    assert sum(i["offered"] for i in intervals.values()) == 3
    assert list(intervals)[-1] == _hhmm(interval_of(now))


def _hhmm(name: str) -> str:
    return f"{name[:2]}:{name[2:]}"


async def test_agents_are_shown_by_state_with_reason_and_time_in_state(center):
    ready = await center.agent("cat")
    paused = await center.agent("dan")
    await ready.available()
    await paused.not_ready("lunch")
    await center.add_agent("never_signed_in")
    await asyncio.sleep(0.1)  # time passing on purpose: the time in state must show it

    snap = await board(center).snapshot()
    assert snap["agent_states"]["available"] == 1 and snap["agent_states"]["not_ready"] == 1
    dan = row(snap["agents"], "name", "Dan")
    assert dan["state"] == "not_ready" and dan["reason"] == "lunch"
    assert dan["in_state_s"] >= 0.1 and dan["handled"] == 0
    assert {a["name"] for a in snap["agents"]} == {"Cat", "Dan"}


async def test_complaints_are_counted_open_overdue_and_escalated(center):
    now = dt.datetime.now(dt.UTC)
    async with db.session_scope(center.sessions) as session:
        session.add_all([
            Complaint(customer_id="A", state="received", sla_due_at=now + dt.timedelta(hours=4)),
            Complaint(customer_id="B", state="validated", sla_due_at=now - dt.timedelta(hours=1)),
            Complaint(customer_id="C", state="resolving", escalation_level=2,
                      sla_due_at=now - dt.timedelta(hours=9)),
            Complaint(customer_id="D", state="resolved", sla_due_at=now - dt.timedelta(days=1)),
            Complaint(customer_id="E", state="closed", escalation_level=1),
        ])
    await board(center).refresh()

    assert (await board(center).snapshot())["complaints"] == {
        "open": 3, "overdue": 2, "escalated": 1}


async def test_csat_comes_from_survey_scores(center):
    agent = await center.agent("eve")
    await agent.available()
    ivr = await center.ivr()
    for call_id, score in (("s1", 5), ("s2", 2)):
        await answered_call(center, ivr, agent, call_id, "+8613800000107")
        await ivr.event("survey.result", call_id, score=score)

    csat = (await board(center).snapshot())["totals"]["csat"]
    assert csat == {"responses": 2, "average": 3.5, "satisfied": 0.5}


async def test_wallboard_streams_to_supervisors_at_least_once_a_second(center):
    token = await center.login_token("sue", role="supervisor")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{center.url}/ws/wallboard", headers={"Authorization": f"Bearer {token}"}) as ws:
        started = time.monotonic()
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "wallboard.snapshot"
        for _ in range(3):
            snap = await ws.receive_json(timeout=5)
            assert snap["type"] == "wallboard.snapshot"
        # Three ticks of one second take about 3 s; at one tick per 2 s they would take 6.
        # The margin is for a loaded machine.
        assert time.monotonic() - started < 5.0


async def test_a_new_call_reaches_the_wallboard_stream_without_waiting_a_full_tick(center):
    token = await center.login_token("sam", role="admin")
    ivr = await center.ivr()
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{center.url}/ws/wallboard", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert (await ws.receive_json(timeout=5))["totals"]["offered"] == 0
        await ivr.offer("pushed", "+8613800000108")
        async with asyncio.timeout(5):
            while (await ws.receive_json())["totals"]["offered"] != 1:
                pass


async def test_only_a_node_with_wallboards_listens_for_the_counts_of_every_node(center):
    """Each node's flush says so on the wallboard channel; a node without viewers would
    wake for every flush of every node (a cost growing with the number of nodes)."""
    wallboard = board(center)
    channel = wallboard.keys.wallboard_channel

    async def listeners() -> int:
        return int(dict(await wallboard.redis.pubsub_numsub(channel))[channel])

    assert await listeners() == 0
    token = await center.login_token("sid", role="supervisor")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{center.url}/ws/wallboard", headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.receive_json(timeout=5)
        await eventually(lambda: listeners(), what="the node listening")
    await eventually(lambda: _is_zero(listeners()), what="the node no longer listening")


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


@pytest.mark.parametrize(("role", "status"), [("agent", 403), (None, 401)])
async def test_wallboard_stream_refuses_agents_and_strangers(center, role, status):
    headers = {}
    if role:
        headers["Authorization"] = f"Bearer {await center.login_token('ann', role=role)}"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{center.url}/ws/wallboard", headers=headers)
    assert refused.value.status == status


async def test_the_wallboard_shows_agents_whose_caller_is_on_hold(center):
    agent, ivr = await center.answered_call("hana", "wb-hold", "+8613800000099")
    await ivr.event("call.held", "wb-hold")
    snap = await board(center).snapshot()
    assert snap["agent_states"]["on_hold"] == 1 and snap["agent_states"]["on_call"] == 1
    assert row(snap["agents"], "name", "Hana")["on_hold"] is True
    await ivr.event("call.resumed", "wb-hold")
    snap = await board(center).snapshot()
    assert snap["agent_states"]["on_hold"] == 0
    assert row(snap["agents"], "name", "Hana")["on_hold"] is False


async def test_a_transferred_call_is_offered_once_and_handled_once_per_queue(center):
    """Amy answers in `default` and transfers to `billing`, where Bob ends it: the call
    was offered once (in `default`) and handled once in each queue; each agent handled
    it once. A transfer within a queue is handled once there."""
    await center.add_queue("billing", ("billing",))
    amy, ivr = await center.answered_call("amy", "wb-t1", "+8613800000098")
    bob = await center.agent("bob", skills=("billing",))
    await bob.available()
    await ivr.event("call.transferred", "wb-t1", to_queue="billing")
    await bob.inbox.expect("screen_pop", call_id="wb-t1")
    await ivr.event("call.answered", "wb-t1", agent_id=bob.agent_id)
    await ivr.event("call.ended", "wb-t1")
    await bob.inbox.expect("call.ended", call_id="wb-t1")
    done = await bob.request("wrapup.done", call_id="wb-t1", disposition="resolved")
    assert done["type"] == "ack", done
    done = await amy.request("wrapup.done", call_id="wb-t1", disposition="resolved")
    assert done["type"] == "ack", done

    snap = await board(center).snapshot()
    totals = snap["totals"]
    assert (totals["offered"], totals["answered"], totals["handled"]) == (1, 1, 2)
    default, billing = row(snap["queues"], "queue", "default"), row(snap["queues"], "queue",
                                                                     "billing")
    assert (default["offered"], default["answered"], default["handled"]) == (1, 1, 1)
    assert (billing["offered"], billing["answered"], billing["handled"]) == (0, 0, 1)
    assert row(snap["agents"], "name", "Amy")["handled"] == 1
    assert row(snap["agents"], "name", "Bob")["handled"] == 1


async def test_a_transfer_within_its_queue_counts_the_call_handled_there_once(center):
    amy, ivr = await center.answered_call("amy", "wb-t2", "+8613800000097")
    bob = await center.agent("bob")
    await bob.available()
    await ivr.event("call.transferred", "wb-t2", to_agent_id=bob.agent_id)
    await bob.inbox.expect("screen_pop", call_id="wb-t2")
    await ivr.event("call.answered", "wb-t2", agent_id=bob.agent_id)
    await ivr.event("call.ended", "wb-t2")
    await bob.inbox.expect("call.ended", call_id="wb-t2")
    done = await bob.request("wrapup.done", call_id="wb-t2", disposition="resolved")
    assert done["type"] == "ack", done

    snap = await board(center).snapshot()
    default = row(snap["queues"], "queue", "default")
    assert (default["offered"], default["answered"], default["handled"]) == (1, 1, 1)
    assert snap["totals"]["handled"] == 1
    assert row(snap["agents"], "name", "Amy")["handled"] == 1
    assert row(snap["agents"], "name", "Bob")["handled"] == 1


async def test_a_consult_transfer_counts_each_agent_once_and_the_call_handled_once(center):
    amy, ivr = await center.answered_call("amy", "wb-c1", "+8613800000096")
    bob = await center.agent("bob")
    await bob.available()
    obeying = ivr.obey()
    reply = await amy.control("wb-c1", "transfer", mode="consult", to_agent_id=bob.agent_id)
    assert reply["type"] == "ack", reply
    await ivr.event("consult.answered", "wb-c1", agent_id=bob.agent_id)
    assert (await amy.control("wb-c1", "consult.complete"))["type"] == "ack"
    await bob.inbox.expect("call.connected", call_id="wb-c1")
    await ivr.event("call.ended", "wb-c1")
    await bob.inbox.expect("call.ended", call_id="wb-c1")
    obeying.cancel()
    done = await bob.request("wrapup.done", call_id="wb-c1", disposition="resolved")
    assert done["type"] == "ack", done

    snap = await board(center).snapshot()
    default = row(snap["queues"], "queue", "default")
    assert (default["offered"], default["answered"], default["handled"]) == (1, 1, 1)
    assert row(snap["agents"], "name", "Amy")["handled"] == 1
    assert row(snap["agents"], "name", "Bob")["handled"] == 1


async def test_a_flush_adds_each_days_counts_to_its_hash_and_keeps_it_a_week(center):
    """A flush's counters go to Redis in one script: several days' hashes, each with its
    counters and its expiry."""
    wallboard = board(center)
    now = time.time()
    yesterday = now - 86400
    await wallboard.observe("call.offered", {"queue": "default", "tier": "gold",
                                             "offered_at": yesterday})
    for _ in range(2):
        await wallboard.observe("call.offered", {"queue": "sales", "tier": "vip",
                                                 "offered_at": now})
    await wallboard.flush()
    for when, queue, tier, offered in ((yesterday, "default", "gold", 1), (now, "sales", "vip", 2)):
        key = wallboard.keys.stats_day(day_of(when, wallboard.tz))
        stats = {k: float(v) for k, v in (await wallboard.redis.hgetall(key)).items()}
        assert stats == {"all|offered": offered, f"q:{queue}|offered": offered,
                         f"t:{tier}|offered": offered,
                         f"i:{interval_of(when, wallboard.tz)}|offered": offered}, key
        assert 6 * 86400 < await wallboard.redis.ttl(key) <= 8 * 86400
