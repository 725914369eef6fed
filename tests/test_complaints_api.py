"""Complaints and statistics over REST, against a running service."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from core import db
from core.keys import Keys
from core.models import Agent, Complaint, Interaction


class Api:
    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    async def __call__(self, method: str, path: str, body: Any = None,
                       status: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession() as http:
            async with http.request(method, self.base + path, json=body,
                                    headers=headers) as resp:
                data = await resp.json()
                assert resp.status == status, data
                return data


@pytest.fixture
async def people(center):
    await center.add_customer("G1", "王芳", "+8613800000101", tier="gold")
    await center.add_customer("V1", "李强", "+8613800000102", tier="vip")
    agent = await center.agent("amy")
    boss = Api(center.url, await center.login_token("sue", role="supervisor"))
    return Api(center.url, agent.token), boss, agent


async def _open(api: Api, customer_id: str = "G1", **body: Any) -> dict[str, Any]:
    return await api("POST", "/api/v1/complaints",
                     {"customer_id": customer_id, "category": "delivery",
                      "summary": "the parcel is a week late", **body}, status=201)


async def test_agent_opens_a_complaint_from_the_call_due_by_the_customer_tier(
        center, people):
    agent_api, _, agent = people
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("c-1", "+8613800000101")
    await agent.inbox.expect("screen_pop", call_id="c-1")

    created = await _open(agent_api, call_id="c-1")

    assert created["state"] == "received" and created["source"] == "agent"
    assert created["assigned_agent_id"] == agent.agent_id and created["created_by"] == "amy"
    opened = dt.datetime.fromisoformat(created["created_at"])
    assert dt.datetime.fromisoformat(created["sla_due_at"]) - opened == dt.timedelta(hours=8)
    async with center.sessions() as session:
        record = await session.get(Interaction, created["interaction_id"])
    assert record.call_id == "c-1" and record.complaint_flag is True
    async with center.sessions() as session:  # the reports count it in the call's queue
        assert (await session.get(Complaint, created["id"])).queue == record.queue == "default"
    fetched = await agent_api("GET", f"/api/v1/complaints/{created['id']}")
    assert [(e["from"], e["to"], e["actor"]) for e in fetched["events"]] == [
        (None, "received", "amy")]


async def test_supervisor_takes_a_complaint_through_its_lifecycle(people):
    agent_api, boss, _ = people
    cid = (await _open(agent_api, "V1"))["id"]
    steps = [
        {"to": "validated", "cause_side": "company", "note": "courier lost it"},
        {"to": "resolving", "resolution": "reship by express, refund shipping"},
        {"to": "resolved", "note": "reshipped"},
        {"to": "follow_up_done", "note": "called back: received, happy"},
        {"to": "closed"},
    ]
    for step in steps:
        moved = await boss("POST", f"/api/v1/complaints/{cid}/transition", step)
        assert moved["state"] == step["to"]

    done = await agent_api("GET", f"/api/v1/complaints/{cid}")
    assert done["closed_at"] and done["cause_side"] == "company"
    assert done["resolution"] == "reship by express, refund shipping"
    assert [(e["to"], e["actor"]) for e in done["events"]] == [
        ("received", "amy"), ("validated", "sue"), ("resolving", "sue"), ("resolved", "sue"),
        ("follow_up_done", "sue"), ("closed", "sue")]


async def test_illegal_or_incomplete_transitions_are_refused(people):
    agent_api, boss, _ = people
    cid = (await _open(agent_api))["id"]
    path = f"/api/v1/complaints/{cid}/transition"
    conflict = await boss("POST", path, {"to": "closed"}, status=409)
    assert conflict["error"]["code"] == "illegal_transition"
    invalid = await boss("POST", path, {"to": "validated"}, status=400)
    assert "cause_side" in invalid["error"]["message"]
    await boss("POST", path, {"to": "rejected"}, status=400)
    await boss("POST", path, {"to": "teleported"}, status=400)
    rejected = await boss("POST", path, {"to": "rejected", "reason": "no such order"})
    assert rejected["rejection_reason"] == "no such order" and rejected["closed_at"]


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("POST", "/transition", {"to": "validated", "cause_side": "company"}),
    ("POST", "/assign", {"agent_id": 1}),
    ("POST", "/escalate", {}),
])
async def test_agents_cannot_move_assign_or_escalate_complaints(people, method, suffix, body):
    agent_api, _, _ = people
    cid = (await _open(agent_api))["id"]
    refused = await agent_api(method, f"/api/v1/complaints/{cid}{suffix}", body, status=403)
    assert refused["error"]["code"] == "forbidden"


async def test_complaints_need_a_signed_in_staff_member(center, people):
    anonymous = Api(center.url, None)
    await anonymous("GET", "/api/v1/complaints", status=401)
    await anonymous("POST", "/api/v1/complaints", {"customer_id": "G1"}, status=401)
    pbx = Api(center.url, await center.telephony_token())
    await pbx("GET", "/api/v1/complaints", status=403)
    agent_api, _, _ = people
    await agent_api("GET", "/api/v1/stats", status=403)


async def test_supervisor_assigns_and_escalates_and_the_wallboard_hears_it(center, people):
    agent_api, boss, agent = people
    cid = (await _open(agent_api))["id"]
    assigned = await boss("POST", f"/api/v1/complaints/{cid}/assign",
                          {"agent_id": agent.agent_id, "note": "complaint desk"})
    assert assigned["assigned_agent_id"] == agent.agent_id
    await boss("POST", f"/api/v1/complaints/{cid}/assign", {"agent_id": 999}, status=404)

    redis = aioredis.Redis.from_url(center.settings.redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(Keys(center.settings.redis_prefix).wallboard_channel)
    try:
        escalated = await boss("POST", f"/api/v1/complaints/{cid}/escalate",
                               {"note": "customer threatens to leave"})
        assert escalated["escalation_level"] == 1
        message = await _next_complaint_message(pubsub)
    finally:
        await pubsub.aclose()
        await redis.aclose()
    assert message == {"type": "complaint.escalated", "complaint_id": cid,
                       "customer_id": "G1", "level": 1, "category": "delivery",
                       "tier": "gold", "sla_due_at": escalated["sla_due_at"]}
    listed = await agent_api("GET", "/api/v1/complaints?escalated=true")
    assert [c["id"] for c in listed["complaints"]] == [cid]


async def _next_complaint_message(pubsub: Any) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            raw = await pubsub.get_message(timeout=1.0)
            if raw and (message := orjson.loads(raw["data"])).get("type") == "complaint.escalated":
                return message


async def test_complaints_are_listed_by_state_and_customer(people):
    agent_api, boss, _ = people
    first = (await _open(agent_api, "G1"))["id"]
    second = (await _open(agent_api, "V1"))["id"]
    await boss("POST", f"/api/v1/complaints/{second}/transition",
               {"to": "validated", "cause_side": "customer"})

    by_state = await agent_api("GET", "/api/v1/complaints?state=received")
    assert [c["id"] for c in by_state["complaints"]] == [first]
    by_customer = await agent_api("GET", "/api/v1/complaints?customer_id=V1")
    assert [c["id"] for c in by_customer["complaints"]] == [second]
    await agent_api("GET", "/api/v1/complaints?state=nonsense", status=400)
    await agent_api("GET", "/api/v1/complaints/424242", status=404)
    await agent_api("GET", "/api/v1/complaints/abc", status=404)


async def test_stats_give_csat_per_agent_queue_and_tier_and_complaint_counts(center, people):
    _, boss, agent = people
    async with db.session_scope(center.sessions) as session:
        bob = Agent(username="bob", display_name="Bob", password_hash="x")
        session.add(bob)
        await session.flush()
        surveys = [(agent.agent_id, "sales", "gold", 5), (agent.agent_id, "sales", "gold", 4),
                   (agent.agent_id, "support", "vip", 2), (bob.id, "support", "vip", 5),
                   (bob.id, "support", "standard", None)]
        for i, (agent_id, queue, tier, score) in enumerate(surveys):
            session.add(Interaction(call_id=f"s-{i}", agent_id=agent_id, queue=queue,
                                    tier=tier, survey_score=score))
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        session.add(Complaint(customer_id="G1", state="received", sla_due_at=past,
                              escalation_level=1, source="detected"))
        session.add(Complaint(customer_id="V1", state="closed", closed_at=past))

    stats = await boss("GET", "/api/v1/stats")

    agents = {a["name"]: a for a in stats["csat"]["agents"]}
    assert agents["Amy"] == {"agent_id": agent.agent_id, "name": "Amy", "surveys": 3,
                             "average": 3.67, "csat": 0.667}
    assert agents["Bob"]["surveys"] == 1 and agents["Bob"]["csat"] == 1.0
    assert {q["queue"]: q["csat"] for q in stats["csat"]["queues"]} == {
        "sales": 1.0, "support": 0.5}
    assert {t["tier"]: t["surveys"] for t in stats["csat"]["tiers"]} == {"gold": 2, "vip": 2}
    assert stats["csat"]["overall"] == {"surveys": 4, "average": 4.0, "csat": 0.75}
    assert stats["complaints"] == {"by_state": {"received": 1, "closed": 1}, "open": 1,
                                   "overdue": 1, "detected": 1, "escalated": {"1": 1}}
