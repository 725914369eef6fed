"""Scheduled callbacks over REST: an agent promises a call at a time, supervisors see,
reassign and cancel pending callbacks, the win-back action schedules one; all placed by
the same mechanism as the callbacks callers ask for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from core.appkeys import CALLBACKS, CALLS
from core.models import Callback, WinBackAction
from core.settings import Settings
from tests.conftest import make_settings
from tests.rest import request

PHONE = "+8613800000301"


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         callback_integration="pbx-1")


def soon(seconds: float = 1.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


async def api(center: Any, token: str, method: str, path: str, status: int,
              body: dict[str, Any] | None = None) -> Any:
    got, reply = await request(center, method, path, token,
                               **({} if body is None else {"json": body}))
    assert got == status, reply
    return reply


async def agent_token(center: Any, agent: Any) -> str:
    return str(agent.token)


async def test_an_agent_promises_a_callback_and_is_the_one_who_makes_it(center):
    await center.add_customer("P1", "Promised", PHONE)
    agent = await center.agent("amy")
    ivr = await center.ivr()
    made = await api(center, agent.token, "POST", "/api/v1/callbacks", 201, {
        "customer_id": "P1", "due_at": soon(1.0), "note": "quote for the renewal"})
    assert (made["number"], made["agent_id"], made["source"]) == (PHONE, agent.agent_id,
                                                                 "agent")
    listed = await api(center, agent.token, "GET", "/api/v1/callbacks", 200)
    assert [c["callback_id"] for c in listed["callbacks"]] == [made["callback_id"]]
    assert listed["callbacks"][0]["live_state"] == "scheduled"
    await agent.available()
    pop = await agent.inbox.expect("screen_pop", call_id=made["callback_id"])
    assert pop["callback"]["note"] == "quote for the renewal"
    assert pop["callback"]["source"] == "agent" and pop["customer"]["id"] == "P1"
    assert pop["routing_reason"]["rule"] == "sticky_agent"
    placed = await ivr.inbox.expect("route.callback", callback_id=made["callback_id"])
    assert (placed["call_id"], placed["number"], placed["agent_id"]) == (
        None, PHONE, agent.agent_id)


async def test_a_supervisor_reassigns_and_cancels_pending_callbacks(center):
    await center.add_customer("P2", "Moved", PHONE)
    boss = await center.login_token("sue")
    away = await center.agent("ann")
    other = await center.agent("bob")
    ivr = await center.ivr()
    later = soon(3600)
    first = await api(center, boss, "POST", "/api/v1/callbacks", 201, {
        "customer_id": "P2", "due_at": later, "agent_id": away.agent_id})
    second = await api(center, boss, "POST", "/api/v1/callbacks", 201, {
        "number": "+8613800000302", "due_at": later})
    listed = await api(center, boss, "GET", "/api/v1/callbacks", 200)
    assert {c["callback_id"] for c in listed["callbacks"]} == {first["callback_id"],
                                                               second["callback_id"]}
    mine = await api(center, boss, "GET", f"/api/v1/callbacks?agent_id={away.agent_id}", 200)
    assert [c["callback_id"] for c in mine["callbacks"]] == [first["callback_id"]]
    await other.available()
    moved = await api(center, boss, "POST",
                      f"/api/v1/callbacks/{first['callback_id']}/reassign", 200,
                      {"agent_id": other.agent_id, "due_at": soon(0.5)})
    assert moved["agent_id"] == other.agent_id
    await ivr.inbox.expect("route.callback", callback_id=first["callback_id"],
                           agent_id=other.agent_id)
    # being dialled: not moved nor cancelled
    for action, body in (("reassign", {"agent_id": None}), ("cancel", None)):
        reply = await api(center, boss, "POST",
                          f"/api/v1/callbacks/{first['callback_id']}/{action}", 409, body)
        assert reply["error"]["code"] == "callback_dialling"
    cancelled = await api(center, boss, "POST",
                          f"/api/v1/callbacks/{second['callback_id']}/cancel", 200)
    assert cancelled["state"] == "cancelled"
    reply = await api(center, boss, "POST",
                      f"/api/v1/callbacks/{second['callback_id']}/cancel", 409)
    assert reply["error"]["code"] == "callback_finished"
    await api(center, boss, "POST", "/api/v1/callbacks/cb-nothing/cancel", 404)
    assert await center.server.app[CALLS].callbacks.get(second["callback_id"]) == {}
    async with center.sessions() as session:
        row = await session.get(Callback, second["callback_id"])
    assert row.state == "cancelled" and row.ended_at is not None


async def test_bad_callback_requests_over_rest_are_refused_and_change_nothing(center):
    await center.add_customer("P3", "Nobody", PHONE)
    agent = await center.agent("cat")
    other = await center.agent("dan")
    boss = await center.login_token("sue")
    cases = [
        ({"due_at": soon()}, 400, "invalid"),
        ({"number": "12", "due_at": soon()}, 400, "invalid"),
        ({"customer_id": "P3", "due_at": "tomorrow"}, 400, "invalid"),
        ({"customer_id": "P3", "due_at": "2026-01-01T10:00:00"}, 400, "invalid"),
        ({"customer_id": "P3", "due_at": "2020-01-01T10:00:00Z"}, 400, "invalid_not_before"),
        ({"customer_id": "P3", "due_at": "2099-01-01T10:00:00Z"}, 400, "invalid_not_before"),
        ({"customer_id": "ghost", "due_at": soon()}, 404, "no_such_customer"),
        ({"customer_id": "P3", "due_at": soon(), "agent_id": other.agent_id}, 403,
         "forbidden"),
    ]
    for body, status, code in cases:
        reply = await api(center, agent.token, "POST", "/api/v1/callbacks", status, body)
        assert reply["error"]["code"] == code, (body, reply)
    made = await api(center, boss, "POST", "/api/v1/callbacks", 201, {
        "customer_id": "P3", "due_at": soon(600), "agent_id": other.agent_id})
    await api(center, agent.token, "POST",
              f"/api/v1/callbacks/{made['callback_id']}/reassign", 403, {"agent_id": None})
    await api(center, agent.token, "POST",
              f"/api/v1/callbacks/{made['callback_id']}/cancel", 403)
    center.server.app[CALLBACKS].integration = ""  # a customer who never called, no default
    reply = await api(center, boss, "POST", "/api/v1/callbacks", 400,
                      {"number": "+8613800000303", "due_at": soon()})
    assert reply["error"]["code"] == "no_integration"
    listed = await api(center, boss, "GET", "/api/v1/callbacks", 200)
    assert [c["callback_id"] for c in listed["callbacks"]] == [made["callback_id"]]


async def test_the_win_back_action_schedules_a_callback(center):
    await center.add_customer("W1", "Leaving", PHONE)
    boss = await center.login_token("sue")
    agent = await center.agent("eve")
    ivr = await center.ivr()
    action = await api(center, boss, "POST", "/api/v1/customers/W1/win-back", 201,
                       {"due_at": soon(0.5), "note": "offer a voucher"})
    callback = action["callback"]
    assert (callback["source"], callback["customer_id"], callback["note"]) == (
        "winback", "W1", "offer a voucher")
    async with center.sessions() as session:  # the action keeps the callback it scheduled
        stored = await session.get(WinBackAction, action["id"])
    assert stored.callback_id == action["callback_id"] == callback["callback_id"]
    await agent.available()
    pop = await agent.inbox.expect("screen_pop", call_id=callback["callback_id"])
    assert pop["callback"]["source"] == "winback"
    await ivr.inbox.expect("route.callback", callback_id=callback["callback_id"])
