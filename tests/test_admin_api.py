"""The administration API (docs/admin.md): who may do what, what bad input gets, and the
audit trail of every change."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from core.models import Agent, AuditEntry, Queue
from tests.rest import login, request

AGENT_ID = "/api/v1/admin/agents/{id}"


async def _staff(center: Any) -> tuple[str, str, str]:
    admin = await center.login_token("ada", "admin")
    sup = await center.login_token("sue", "supervisor")
    agent = await center.login_token("al", "agent")
    return admin, sup, agent


# (method, path, body) of every endpoint; {id} is an agent of the supervisor's team.
ENDPOINTS = [
    ("GET", "/api/v1/admin/agents", None),
    ("POST", "/api/v1/admin/agents", {"username": "new1", "password": "pass-word-1"}),
    ("GET", AGENT_ID, None),
    ("PATCH", AGENT_ID, {"display_name": "X"}),
    ("PATCH", AGENT_ID, {"queues": []}),
    ("POST", AGENT_ID + "/password", {"password": "another-pass"}),
    ("POST", AGENT_ID + "/sign-out", {}),
    ("POST", AGENT_ID + "/state", {"state": "logged_out"}),
    ("GET", "/api/v1/admin/queues", None),
    ("POST", "/api/v1/admin/queues", {"name": "q2"}),
    ("PATCH", "/api/v1/admin/queues/default", {"sl_target": 0.9}),
    ("DELETE", "/api/v1/admin/queues/spare", None),
    ("GET", "/api/v1/admin/codes", None),
    ("PUT", "/api/v1/admin/codes/disposition", {"codes": [{"code": "done"}]}),
    ("GET", "/api/v1/admin/skills", None),
    ("PUT", "/api/v1/admin/skills", {"skills": ["sales"]}),
    ("GET", "/api/v1/admin/routing-policy", None),
    ("PUT", "/api/v1/admin/routing-policy", {"intent_wait_s": 10}),
]
# What a supervisor may: read, and the states, sign-outs and queues of its team's agents.
SUPERVISOR_MAY = {("GET", "/api/v1/admin/agents"), ("GET", AGENT_ID),
                  ("PATCH", AGENT_ID, "queues"), ("POST", AGENT_ID + "/sign-out"),
                  ("POST", AGENT_ID + "/state"), ("GET", "/api/v1/admin/queues"),
                  ("GET", "/api/v1/admin/codes"), ("GET", "/api/v1/admin/skills"),
                  ("GET", "/api/v1/admin/routing-policy")}


def _key(method: str, path: str, body: Any) -> tuple[str, ...]:
    if method == "PATCH" and path == AGENT_ID:
        return (method, path, next(iter(body)))
    return (method, path)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_each_role_reaches_only_what_it_may(center: Any, method: str, path: str,
                                                  body: Any) -> None:
    admin, sup, agent = await _staff(center)
    member = await center.add_agent("mo")
    await center.add_queue("spare")
    url = path.format(id=member)
    assert (await request(center, method, url, agent, json=body))[0] == 403
    status, answer = await request(center, method, url, sup, json=body)
    allowed = _key(method, path, body) in SUPERVISOR_MAY
    assert (status < 300) == allowed, (status, answer)
    if not allowed:
        assert status == 403
    if method != "GET" and not allowed:
        status, answer = await request(center, method, url, admin, json=body)
        assert status < 300, answer
    assert (await request(center, method, url, None, json=body))[0] == 401


async def test_a_supervisor_manages_only_the_agents_of_its_team(center: Any) -> None:
    admin, sup, _ = await _staff(center)
    ours = await center.add_agent("ours")
    theirs = await center.add_agent("theirs")
    boss = await center.add_agent("boss", role="admin")
    await request(center, "PATCH", f"/api/v1/admin/agents/{theirs}", admin, json={"team": "b"})
    for target in (theirs, boss):
        status, body = await request(center, "POST", f"/api/v1/admin/agents/{target}/state",
                                     sup, json={"state": "logged_out"})
        assert status == 403 and body["error"]["code"] == "not_your_team", body
    status, body = await request(center, "GET", "/api/v1/admin/agents", sup)
    assert [a["username"] for a in body["agents"]] == ["al", "ours"]
    assert (await request(center, "GET", f"/api/v1/admin/agents/{ours}", sup))[0] == 200


async def test_an_admin_creates_an_agent_who_can_sign_in(center: Any) -> None:
    admin, _, _ = await _staff(center)
    await request(center, "PUT", "/api/v1/admin/skills", admin, json={"skills": ["sales"]})
    await request(center, "POST", "/api/v1/admin/queues", admin, json={"name": "sales"})
    status, body = await request(center, "POST", "/api/v1/admin/agents", admin, json={
        "username": "nina", "password": "first-pass", "display_name": "Nina", "role": "agent",
        "extension": "2001", "skills": ["sales"], "level": 2, "team": "a", "queues": ["sales"]})
    assert status == 201, body
    assert {k: body[k] for k in ("username", "skills", "queues", "team", "level", "state")} == {
        "username": "nina", "skills": ["sales"], "queues": ["sales"], "team": "a", "level": 2,
        "state": "logged_out"}
    assert (await login(center, "nina", "first-pass"))[0] == 200
    status, _ = await request(center, "POST", f"/api/v1/admin/agents/{body['id']}/password",
                              admin, json={"password": "second-pass"})
    assert status == 200
    assert (await login(center, "nina", "first-pass"))[0] == 401
    assert (await login(center, "nina", "second-pass"))[0] == 200


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "/api/v1/admin/agents", {"username": "al", "password": "pass-word-1"}, 409,
     "username_taken"),
    ("POST", "/api/v1/admin/agents", {"username": "x", "password": "pass-word-1",
                                      "skills": ["nope"]}, 400, "unknown_skill"),
    ("POST", "/api/v1/admin/agents", {"username": "x", "password": "pass-word-1",
                                      "skills": ["Bad Skill"]}, 400, "invalid"),
    ("POST", "/api/v1/admin/agents", {"username": "x", "password": "pass-word-1",
                                      "queues": ["nowhere"]}, 400, "unknown_queue"),
    ("POST", "/api/v1/admin/agents", {"username": "x", "password": "short"}, 400, "invalid"),
    ("POST", "/api/v1/admin/queues", {"name": "q", "skills": ["nope"]}, 400, "unknown_skill"),
    ("POST", "/api/v1/admin/queues", {"name": "default"}, 409, "queue_exists"),
    ("PATCH", "/api/v1/admin/queues/default", {"sl_target": 1.5}, 400, "invalid"),
    ("PATCH", "/api/v1/admin/queues/default", {"sl_target": -0.1}, 400, "invalid"),
    ("PATCH", "/api/v1/admin/queues/nowhere", {"sl_target": 0.5}, 404, "not_found"),
    ("PATCH", "/api/v1/admin/queues/default", {"tier_boost_s": {"platinum": 5}}, 400,
     "invalid"),
    ("DELETE", "/api/v1/admin/queues/nowhere", None, 404, "not_found"),
    ("PATCH", "/api/v1/admin/agents/999999", {"level": 2}, 400, "unknown_agent"),
    ("PATCH", "/api/v1/admin/agents/abc", {"level": 2}, 400, "invalid"),
    ("PATCH", "/api/v1/admin/agents/{admin}", {"role": "agent"}, 409, "last_admin"),
    ("PATCH", "/api/v1/admin/agents/{admin}", {"active": False}, 409, "last_admin"),
    ("PATCH", "/api/v1/admin/agents/{admin}", {"surprise": 1}, 400, "invalid"),
    ("POST", "/api/v1/admin/agents/{admin}/state", {"state": "not_ready", "reason": "nap"}, 400,
     "invalid"),
    ("POST", "/api/v1/admin/agents/{admin}/state", {"state": "ringing"}, 400, "invalid"),
    ("PUT", "/api/v1/admin/codes/colours", {"codes": [{"code": "red"}]}, 400, "invalid"),
    ("PUT", "/api/v1/admin/codes/not_ready", {"codes": []}, 400, "invalid"),
    ("PUT", "/api/v1/admin/codes/not_ready", {"codes": [{"code": "a"}, {"code": "a"}]}, 400,
     "invalid"),
    ("PUT", "/api/v1/admin/skills", {"skills": []}, 409, "skill_in_use"),
    ("PUT", "/api/v1/admin/routing-policy", {"intent_wait_s": -1}, 400, "invalid"),
    ("PUT", "/api/v1/admin/routing-policy", {"complaint_wait_s": "soon"}, 400, "invalid"),
])
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
        center: Any, method: str, path: str, body: Any, status: int, code: str) -> None:
    admin, _, _ = await _staff(center)
    await center.add_queue("default")
    await center.add_agent("sal", skills=("sales",))
    admin_id = await _id(center, "ada")
    before = await _snapshot(center)
    got, answer = await request(center, method, path.format(admin=admin_id), admin, json=body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"]
    assert await _snapshot(center) == before


async def test_a_queue_with_waiting_calls_or_members_is_not_removed(center: Any) -> None:
    admin, _, _ = await _staff(center)
    await center.add_queue("busy")
    ivr = await center.ivr()
    await ivr.offer("w-1", "+8613800000001", queue="busy")
    status, body = await request(center, "DELETE", "/api/v1/admin/queues/busy", admin)
    assert (status, body["error"]["code"]) == (409, "queue_busy"), body
    await ivr.event("call.ended", "w-1", cause="caller_hangup")
    member = await center.add_agent("mem")
    await request(center, "PATCH", f"/api/v1/admin/agents/{member}", admin,
                  json={"queues": ["busy"]})
    status, body = await request(center, "DELETE", "/api/v1/admin/queues/busy", admin)
    assert (status, body["error"]["code"]) == (409, "queue_busy"), body
    await request(center, "PATCH", f"/api/v1/admin/agents/{member}", admin, json={"queues": []})
    assert (await request(center, "DELETE", "/api/v1/admin/queues/busy", admin))[0] == 204


async def test_every_change_is_audited_with_who_before_and_after(center: Any) -> None:
    admin, sup, _ = await _staff(center)
    member = await center.add_agent("mo")
    await request(center, "PATCH", "/api/v1/admin/queues/default", admin, json={"sl_target": 0.9})
    await request(center, "PATCH", f"/api/v1/admin/agents/{member}", admin, json={"level": 3})
    await request(center, "POST", f"/api/v1/admin/agents/{member}/sign-out", sup, json={})
    status, body = await request(center, "GET", "/api/v1/audit?object_type=agent", admin)
    entries = {e["action"]: e for e in body["entries"]}
    change = entries["agent.change"]
    assert (change["actor"], change["object_id"]) == ("ada", str(member))
    assert (change["detail"]["before"]["level"], change["detail"]["after"]["level"]) == (1, 3)
    assert entries["agent.sign_out"]["actor"] == "sue"
    status, body = await request(center, "GET", "/api/v1/audit?action=queue.change", admin)
    queue = body["entries"][0]["detail"]
    assert (queue["before"]["sl_target"], queue["after"]["sl_target"]) == (0.8, 0.9)


# Every changing endpoint: (method, path, body, action, object, what the detail holds).
AUDITED = [
    ("POST", "/api/v1/admin/agents", {"username": "nia", "password": "pass-word-1"},
     "agent.create", ("agent", "nia"), lambda d: d["before"] is None
     and d["after"]["username"] == "nia"),
    ("PATCH", AGENT_ID, {"level": 4}, "agent.change", ("agent", "{id}"),
     lambda d: (d["before"]["level"], d["after"]["level"]) == (1, 4)),
    ("POST", AGENT_ID + "/password", {"password": "secret-pass-9"}, "agent.password",
     ("agent", "{id}"), lambda d: "secret-pass-9" not in str(d) and "tokens_revoked" in d),
    ("POST", AGENT_ID + "/sign-out", {"reason": "lunch"}, "agent.sign_out", ("agent", "{id}"),
     lambda d: d["reason"] == "lunch"),
    ("POST", AGENT_ID + "/state", {"state": "not_ready", "reason": "meeting"}, "agent.state",
     ("agent", "{id}"), lambda d: d["after"] == {"state": "not_ready", "reason": "meeting"}
     and d["before"] == "logged_out" and d["applied"] == "now"),
    ("POST", "/api/v1/admin/queues", {"name": "q2", "sl_target": 0.7}, "queue.create",
     ("queue", "q2"), lambda d: d["before"] is None and d["after"]["sl_target"] == 0.7),
    ("PATCH", "/api/v1/admin/queues/spare", {"wrap_up_s": 9}, "queue.change",
     ("queue", "spare"), lambda d: (d["before"]["wrap_up_s"], d["after"]["wrap_up_s"])
     == (None, 9)),
    ("DELETE", "/api/v1/admin/queues/spare", None, "queue.remove", ("queue", "spare"),
     lambda d: d["before"]["name"] == "spare" and d["after"] is None),
    ("PUT", "/api/v1/admin/codes/disposition", {"codes": [{"code": "done"}]}, "codes.change",
     ("codes", "disposition"), lambda d: d["after"] == [{"code": "done", "label": ""}]
     and d["before"] != d["after"]),
    ("PUT", "/api/v1/admin/skills", {"skills": ["sales", "vip"]}, "skills.change",
     ("skills", "center"), lambda d: (d["before"], d["after"]) == ([], ["sales", "vip"])),
    ("PUT", "/api/v1/admin/routing-policy", {"intent_wait_s": 7}, "routing_policy.change",
     ("routing_policy", "center"), lambda d: d["after"]["intent_wait_s"] == 7
     and d["before"]["intent_wait_s"] != 7),
]


@pytest.mark.parametrize(("method", "path", "body", "action", "obj", "detail"), AUDITED,
                         ids=[a[3] for a in AUDITED])
async def test_each_admin_endpoint_writes_its_audit_entry(
        center: Any, method: str, path: str, body: Any, action: str, obj: tuple[str, str],
        detail: Any) -> None:
    admin, _, _ = await _staff(center)
    member = await center.add_agent("mo")
    await center.add_queue("spare")
    status, answer = await request(center, method, path.format(id=member), admin, json=body)
    assert status < 300, answer
    async with center.sessions() as session:
        [entry] = (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == action))).all()
    assert (entry.actor, entry.role) == ("ada", "admin")
    assert (entry.object_type, entry.object_id) == (obj[0], obj[1].format(id=member))
    assert entry.at is not None and detail(entry.detail), entry.detail


async def test_demoting_an_admin_revokes_its_token_but_keeps_the_last_admin(center: Any) -> None:
    admin, _, _ = await _staff(center)
    other = await center.login_token("bea", "admin")
    status, _ = await request(center, "PATCH", f"/api/v1/admin/agents/{await _id(center, 'bea')}",
                              admin, json={"role": "supervisor"})
    assert status == 200
    assert (await request(center, "GET", "/api/v1/admin/agents", other))[0] == 401
    status, body = await request(center, "PATCH",
                                 f"/api/v1/admin/agents/{await _id(center, 'ada')}", admin,
                                 json={"role": "agent"})
    assert body["error"]["code"] == "last_admin"


async def _id(center: Any, username: str) -> int:
    async with center.sessions() as session:
        return int(await session.scalar(select(Agent.id).where(Agent.username == username)))


async def _snapshot(center: Any) -> Any:
    async with center.sessions() as session:
        agents = [(a.username, a.role, a.active, a.skills, a.queues, a.level)
                  for a in await session.scalars(select(Agent).order_by(Agent.id))]
        queues = [(q.name, q.skills, q.sl_target, q.tier_boost_s)
                  for q in await session.scalars(select(Queue).order_by(Queue.name))]
        audits = len((await session.scalars(select(AuditEntry).where(
            AuditEntry.action != "view"))).all())
    return agents, queues, audits


async def test_deactivating_an_agent_who_never_signed_in_is_done_and_answered(
        center: Any) -> None:
    admin, _, _ = await _staff(center)
    never = await center.add_agent("nev")
    status, body = await request(center, "PATCH", f"/api/v1/admin/agents/{never}", admin,
                                 json={"active": False})
    assert status == 200 and body["active"] is False and body["state"] == "logged_out", body
    assert (await login(center, "nev", center.PASSWORD))[0] == 401
    status, body = await request(center, "PATCH", f"/api/v1/admin/agents/{never}", admin,
                                 json={"active": True})
    assert status == 200 and body["active"] is True, body
    assert (await login(center, "nev", center.PASSWORD))[0] == 200
