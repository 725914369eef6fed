"""Queue callbacks through protocol v1: a waiting caller asks to be called back, keeps
their place, and is called back by the agent who takes the callback."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.app import create_app
from core.appkeys import CALLS, KEYS, RECOVERY, REDIS, WALLBOARD
from core.keys import Keys
from core.models import Call, Callback, Interaction
from core.settings import Settings
from tests.conftest import Center, make_settings
from tests.rest import request as rest
from tests.waits import eventually

ANI = "+8613800000101"


@pytest.fixture
def database_url(any_database_url: str) -> str:
    return any_database_url


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         callback_retry_s=0.3, callback_attempts=2)


async def row(center: Any, model: Any, key: str) -> Any:
    async with center.sessions() as session:
        return await session.get(model, key)


async def interaction(center: Any, call_id: str) -> Interaction:
    async with center.sessions() as session:
        return (await session.execute(
            select(Interaction).where(Interaction.call_id == call_id))).scalar_one()


async def request(ivr: Any, call_id: str, **fields: Any) -> dict[str, Any]:
    """callback.requested: its ack, then the callback.accepted that follows it."""
    await ivr.event("callback.requested", call_id, **fields)
    return await ivr.inbox.expect("callback.accepted", call_id=call_id)


async def refused(ivr: Any, type_: str, call_id: str, **fields: Any) -> dict[str, Any]:
    reply = await ivr.reply_to(await ivr.send(type_, call_id, **fields))
    assert reply["type"] == "error", reply
    return reply


async def result(ivr: Any, callback_id: str, outcome: str) -> dict[str, Any]:
    event_id = f"r-{callback_id}-{time.monotonic_ns()}"
    await ivr.ws.send(json.dumps({
        "type": "callback.result", "event_id": event_id, "callback_id": callback_id,
        "outcome": outcome}))
    return await ivr.reply_to(event_id)


async def test_a_caller_who_asks_for_a_callback_keeps_their_place_and_is_called_back(center):
    await center.add_customer("C1", "Callback", ANI)
    agent = await center.agent("ann", extension="1001")
    ivr = await center.ivr()
    await ivr.offer("first", ANI)
    await ivr.inbox.expect("route.queued", call_id="first")
    accepted = await request(ivr, "first", number="+8613800000999")
    callback_id = accepted["callback_id"]
    assert accepted["number"] == "+8613800000999"
    await ivr.offer("second", "+8613800000102")  # on the line, but behind the callback
    await agent.available()
    pop = await agent.inbox.expect("screen_pop", call_id=callback_id)
    assert pop["callback"] == {"callback_id": callback_id, "call_id": "first",
                               "number": "+8613800000999", "source": "caller",
                               "requested_at": pop["callback"]["requested_at"]}
    assert pop["customer"]["id"] == "C1"
    placed = await ivr.inbox.expect("route.callback", callback_id=callback_id)
    assert placed == {"type": "route.callback", "callback_id": callback_id, "call_id": "first",
                      "number": "+8613800000999", "agent_id": agent.agent_id,
                      "extension": "1001", "attempt": 1}
    await ivr.inbox.nothing("route.connect", call_id="second")
    assert (await result(ivr, callback_id, "connected"))["type"] == "ack"
    await agent.inbox.expect("call.connected", call_id=callback_id)
    await ivr.event("call.ended", callback_id)
    await agent.inbox.expect("call.ended", call_id=callback_id)
    assert (await agent.request("wrapup.done", call_id=callback_id,
                                disposition="resolved"))["type"] == "ack"
    # the caller on the line comes next
    await ivr.inbox.expect("route.connect", call_id="second")
    first = await interaction(center, "first")
    assert (first.outcome, first.end_cause) == ("callback", "callback")
    assert (await row(center, Call, "first")).state == "callback"
    stored = await row(center, Callback, callback_id)
    assert (stored.state, stored.attempts, stored.agent_id) == ("connected", 1, agent.agent_id)
    talk = await eventually(lambda: interaction(center, callback_id))
    assert talk.outcome == "answered" and talk.ivr["callback_of"] == "first"
    assert (await row(center, Call, callback_id)).state == "ended"


async def test_unanswered_attempts_are_tried_again_then_the_callback_fails(center):
    agent = await center.agent("ben")
    ivr = await center.ivr()
    await ivr.offer("nobody-home", ANI)
    callback_id = (await request(ivr, "nobody-home"))["callback_id"]
    await agent.available()
    first = await ivr.inbox.expect("route.callback", callback_id=callback_id)
    assert first["number"] == ANI and first["attempt"] == 1
    assert (await result(ivr, callback_id, "no_answer"))["type"] == "ack"
    ended = await agent.inbox.expect("call.ended", call_id=callback_id)
    assert ended["reason"] == "callback_no_answer"
    stored = await row(center, Callback, callback_id)
    assert (stored.state, stored.attempts, stored.last_outcome) == ("pending", 1, "no_answer")
    # tried again after the delay (settings: 0.3 s), by the agent now free
    second = await ivr.inbox.expect("route.callback", callback_id=callback_id, attempt=2)
    assert second["agent_id"] == agent.agent_id
    assert (await result(ivr, callback_id, "busy"))["type"] == "ack"
    stored = await row(center, Callback, callback_id)
    assert (stored.state, stored.attempts, stored.last_outcome) == ("failed", 2, "busy")
    assert stored.ended_at is not None
    keys = Keys(center.settings.redis_prefix)
    redis = center.server.app[REDIS]
    assert await redis.exists(keys.call(callback_id)) == 0
    assert await redis.zcard(keys.callbacks) == 0
    state = await agent.inbox.expect("agent.state", state="available")
    assert state["call_id"] is None
    reply = await refused(ivr, "callback.result", callback_id, callback_id=callback_id,
                          outcome="connected")
    assert reply["code"] == "callback_finished"


async def test_a_callback_not_before_a_time_waits_for_it(center):
    agent = await center.agent("cat")
    await agent.available()
    await agent.not_ready()
    ivr = await center.ivr()
    await ivr.offer("later", ANI)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    accepted = await request(ivr, "later", not_before=at.isoformat())
    assert accepted["due_at"] == pytest.approx(at.timestamp(), abs=0.01)
    await agent.available()
    await ivr.inbox.nothing("route.callback", wait=0.5)
    placed = await ivr.inbox.expect("route.callback", callback_id=accepted["callback_id"])
    assert time.time() >= at.timestamp() - 0.05 and placed["agent_id"] == agent.agent_id


async def test_bad_callback_requests_get_clear_errors_and_change_nothing(center):
    ivr = await center.ivr()
    await ivr.offer("waiting", ANI)
    now = dt.datetime.now(dt.UTC)
    cases = [
        ("nope", {}, "unknown_call"),
        ("waiting", {"number": "call me maybe"}, "invalid_field"),
        ("waiting", {"not_before": (now - dt.timedelta(hours=1)).isoformat()},
         "invalid_not_before"),
        ("waiting", {"not_before": (now + dt.timedelta(days=800)).isoformat()},
         "invalid_not_before"),
        ("waiting", {"not_before": "2026-12-03T09:00:00"}, "invalid_field"),
    ]
    for call_id, fields, code in cases:
        reply = await refused(ivr, "callback.requested", call_id, **fields)
        assert reply["code"] == code, (fields, reply)
    redis = center.server.app[REDIS]
    keys = Keys(center.settings.redis_prefix)
    assert (await redis.hget(keys.call("waiting"), "state")) == "queued"
    assert await redis.zcard(keys.callbacks) == 0
    # a caller whose number is not one to call, and no number given
    await ivr.offer("anonymous", "anonymous")
    assert (await refused(ivr, "callback.requested", "anonymous"))["code"] == "invalid_number"
    for callback_id, code in (("cb-missing", "unknown_callback"),):
        reply = await refused(ivr, "callback.result", callback_id, callback_id=callback_id,
                              outcome="connected")
        assert reply["code"] == code


async def test_a_callback_for_an_answered_or_ended_call_is_refused(center):
    agent, ivr = await center.answered_call("dan", "talking", ANI)
    assert (await refused(ivr, "callback.requested", "talking"))["code"] == "call_not_waiting"
    await ivr.event("call.ended", "talking")
    assert (await refused(ivr, "callback.requested", "talking"))["code"] == "call_not_waiting"
    await ivr.offer("gone", "+8613800000103")
    await ivr.event("call.ended", "gone")
    assert (await refused(ivr, "callback.requested", "gone"))["code"] == "call_not_waiting"


async def test_a_repeated_request_is_a_duplicate_and_a_second_one_is_refused(center):
    ivr = await center.ivr()
    await ivr.offer("twice", ANI)
    event_id = await ivr.send("callback.requested", "twice")
    assert (await ivr.reply_to(event_id))["duplicate"] is False
    accepted = await ivr.inbox.expect("callback.accepted", call_id="twice")
    await ivr.send("callback.requested", "twice", event_id=event_id)
    assert (await ivr.reply_to(event_id))["duplicate"] is True
    reply = await refused(ivr, "callback.requested", "twice")
    assert reply["code"] == "callback_exists"
    # the caller hangs up after the IVR's goodbye: acknowledged, nothing changes
    assert (await ivr.event("call.ended", "twice"))["type"] == "ack"
    assert (await row(center, Call, "twice")).state == "callback"
    redis = center.server.app[REDIS]
    keys = Keys(center.settings.redis_prefix)
    assert await redis.zrange(keys.callbacks, 0, -1) == [accepted["callback_id"]]
    # a result for a callback nobody is dialling
    reply = await refused(ivr, "callback.result", accepted["callback_id"],
                          callback_id=accepted["callback_id"], outcome="no_answer")
    assert reply["code"] == "callback_not_dialling"


async def test_a_callback_survives_redis_losing_the_live_state(center):
    """Redis restarted empty: the pending callback is rebuilt from its record, in its place,
    and dialled when an agent is free."""
    await center.add_customer("C2", "Kept", ANI)
    ivr = await center.ivr()
    await ivr.offer("kept", ANI)
    callback_id = (await request(ivr, "kept"))["callback_id"]
    await eventually(lambda: row(center, Callback, callback_id))
    app = center.server.app
    redis, prefix = app[REDIS], app[KEYS].prefix
    await redis.delete(*[k async for k in redis.scan_iter(f"{prefix}:*")])
    await app[RECOVERY].check()
    live = await app[CALLS].callbacks.get(callback_id)
    assert (live["call_id"], live["number"], live["queue"]) == ("kept", ANI, "default")
    agent = await center.agent("eve")
    await agent.available()
    pop = await agent.inbox.expect("screen_pop", call_id=callback_id)
    assert pop["customer"]["id"] == "C2" and pop["callback"]["call_id"] == "kept"
    await ivr.inbox.expect("route.callback", callback_id=callback_id)


async def test_a_callback_accepted_by_a_node_that_stops_is_placed_by_another(
        aiohttp_server, settings, sessions):
    first = Center(await aiohttp_server(create_app(settings)), sessions, settings)
    ivr = await first.ivr()
    await ivr.offer("orphan", ANI)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    callback_id = (await request(ivr, "orphan", not_before=at.isoformat()))["callback_id"]
    await first.close()
    await first.server.close()
    second = Center(await aiohttp_server(create_app(settings.model_copy(
        update={"node_id": "second"}))), sessions, settings)
    try:
        ivr = await second.ivr()
        agent = await second.agent("fay")
        await agent.available()
        placed = await ivr.inbox.expect("route.callback", callback_id=callback_id)
        assert placed["call_id"] == "orphan" and placed["agent_id"] == agent.agent_id
    finally:
        await second.close()


async def test_the_wallboard_shows_callbacks_waiting_apart_from_calls_on_the_line(center):
    ivr = await center.ivr()
    await ivr.offer("on-line", "+8613800000104")
    await ivr.offer("leaves", ANI)
    await request(ivr, "leaves")
    board = center.server.app[WALLBOARD]
    snap = await board.snapshot()
    assert snap["totals"]["waiting"] == 1  # the caller still on the line
    callbacks = snap["callbacks"]
    assert (callbacks["waiting"], callbacks["callbacks_requested"]) == (1, 1)
    assert 0 <= callbacks["oldest_age_s"] < 60
    assert snap["totals"]["abandoned"] == 0


async def test_reports_count_callbacks_apart_from_calls_that_waited_on_the_line(center):
    agent = await center.agent("gus")
    ivr = await center.ivr()
    await ivr.offer("converted", ANI)
    callback_id = (await request(ivr, "converted"))["callback_id"]
    await ivr.offer("hung-up", "+8613800000105")
    await ivr.event("call.ended", "hung-up", cause="caller_hangup")
    await agent.available()
    await ivr.inbox.expect("route.callback", callback_id=callback_id)
    await result(ivr, callback_id, "connected")
    await ivr.event("call.ended", callback_id)
    await agent.request("wrapup.done", call_id=callback_id, disposition="resolved")
    token = await center.login_token("sue")
    today = dt.datetime.now(center.settings.zone).date().isoformat()

    async def figures() -> dict[str, Any] | None:
        status, body = await rest(center, "GET", "/api/v1/reports/center", token,
                                  params={"from": today, "to": today})
        assert status == 200, body
        row = body["rows"][0] if body["rows"] else {}
        return row if row.get("callbacks_connected") == 1 and row.get("wrap_n", 1) else None

    row = await eventually(figures)
    assert (row["offered"], row["answered"], row["callbacks"], row["callbacks_connected"]) == (
        2, 0, 1, 1)
    assert row["abandoned"] + row["abandoned_short"] == 1
    assert row["avg_talk_s"] is not None  # the callback's talk is agents' work


async def test_a_pbx_that_reconnects_hears_the_callbacks_it_is_to_dial(center):
    agent = await center.agent("hal", extension="1009")
    ivr = await center.ivr()
    await ivr.offer("while-away", ANI)
    callback_id = (await request(ivr, "while-away"))["callback_id"]
    await ivr.close()  # the PBX is away when the callback reaches an agent
    await agent.available()
    await agent.inbox.expect("screen_pop", call_id=callback_id)
    ivr = await center.ivr()
    await ivr.ws.send(json.dumps({"type": "state.sync"}))
    snapshot = await ivr.inbox.expect("state.snapshot")
    assert snapshot["callbacks"] == [{
        "type": "route.callback", "callback_id": callback_id, "call_id": "while-away",
        "number": ANI, "agent_id": agent.agent_id, "extension": "1009", "attempt": 1}]


async def test_a_caller_on_the_line_behind_a_callback_counts_it_ahead(center):
    """The callback keeps the caller's place: a caller behind it hears position 2 and the
    wait of two calls, and position 1 once an agent takes the callback."""
    agent = await center.agent("cat")
    ivr = await center.ivr()
    await ivr.offer("ahead", ANI)
    alone = await ivr.inbox.expect("route.queued", call_id="ahead")
    callback_id = (await request(ivr, "ahead", number="+8613800000999"))["callback_id"]
    await ivr.offer("behind", "+8613800000102")
    behind = await ivr.inbox.expect("route.queued", call_id="behind")
    assert (behind["position"], behind["estimated_wait_s"]) == (
        2, 2 * alone["estimated_wait_s"])
    await agent.available()
    await agent.inbox.expect("screen_pop", call_id=callback_id)
    again = await ivr.inbox.expect("route.queued", call_id="behind", timeout=20)
    assert again["position"] == 1


async def test_a_callback_keeps_the_priority_of_its_call_so_a_later_vip_goes_first(center):
    """The callback waits with its call's score: a VIP caller arriving after it (whose tier
    puts them ahead) is answered first, and the callback is placed next."""
    await center.add_customer("V1", "Very Important", "+8613800000110", tier="vip")
    agent = await center.agent("vic")
    ivr = await center.ivr()
    redis, keys = center.server.app[REDIS], Keys(center.settings.redis_prefix)
    await ivr.offer("standard", ANI)
    await ivr.inbox.expect("route.queued", call_id="standard")
    score = await redis.hget(keys.call("standard"), "score")
    callback_id = (await request(ivr, "standard"))["callback_id"]
    live = await center.server.app[CALLS].callbacks.get(callback_id)
    assert live["score"] == score  # its place as of its offer
    await ivr.offer("vip", "+8613800000110")
    assert float(await redis.zscore(keys.waiting("default"), "vip")) < float(live["score"])
    await agent.available()
    await ivr.inbox.expect("route.connect", call_id="vip")
    await ivr.inbox.nothing("route.callback", callback_id=callback_id)
    await ivr.event("call.answered", "vip", agent_id=agent.agent_id)
    await ivr.event("call.ended", "vip")
    await agent.request("wrapup.done", call_id="vip", disposition="resolved")
    await ivr.inbox.expect("route.callback", callback_id=callback_id)
