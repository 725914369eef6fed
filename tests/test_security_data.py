"""Graded data an agent cannot get round: search does not unmask numbers and is limited and
audited; complaints are read and flagged only where the agent may; a new customer takes
only the agent's own call (docs/security.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import AuditEntry, Complaint, Customer, CustomerPhone, Interaction
from core.settings import Settings
from tests.conftest import make_settings
from tests.rest import request

SEARCHES_PER_MINUTE = 8


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, redis_url, redis_prefix, tmp_path,
                         search_per_minute=SEARCHES_PER_MINUTE)


async def until(condition: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def interaction(center: Any, call_id: str) -> Interaction | None:
    async with center.sessions() as session:
        return await session.scalar(select(Interaction).where(Interaction.call_id == call_id))


async def recorded(center: Any) -> None:
    async def written() -> bool:
        return await interaction(center, "c-bob") is not None
    await until(written)


# Search ----------------------------------------------------------------------------------


async def test_part_of_a_number_finds_nobody_so_a_masked_number_cannot_be_recovered(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    token = await center.login_token("amy", "agent")
    _, found = await request(center, "GET", "/api/v1/customers?q=zhang", token)
    assert found["customers"][0]["phones"] == ["+86138****0001"]

    for guess in ("138000", "86138000", "+861380000000", "0001", "13800000001"[:-1]):
        status, body = await request(center, "GET", f"/api/v1/customers?q={guess}", token)
        assert status == 200 and body["customers"] == [], guess

    status, whole = await request(center, "GET", "/api/v1/customers?q=%2B8613800000001", token)
    assert [c["id"] for c in whole["customers"]] == ["C1"]
    assert whole["customers"][0]["phones"] == ["+86138****0001"]  # still masked


async def test_searches_are_limited_per_user_under_a_burst_and_each_one_is_audited(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    amy = await center.login_token("amy", "agent")
    bob = await center.login_token("bob", "agent")

    burst = await asyncio.gather(*[request(center, "GET", f"/api/v1/customers?q=guess{i}", amy)
                                   for i in range(SEARCHES_PER_MINUTE + 5)])

    statuses = sorted(status for status, _ in burst)
    assert statuses == [200] * SEARCHES_PER_MINUTE + [429] * 5
    status, _ = await request(center, "GET", "/api/v1/customers?q=zhang", bob)
    assert status == 200  # the limit is per user
    async with center.sessions() as session:
        audited = await session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.actor == "amy", AuditEntry.action == "search"))
    assert audited == SEARCHES_PER_MINUTE  # misses too: guessing shows in the log


# Complaints --------------------------------------------------------------------------------


async def _complaint(center: Any, token: str, customer_id: str, status: int = 201,
                     **body: Any) -> Any:
    got, answer = await request(center, "POST", "/api/v1/complaints", token,
                                json={"customer_id": customer_id, "summary": "late", **body})
    assert got == status, answer
    return answer


async def test_an_agent_reads_only_complaints_it_owns_or_of_its_callers(center):
    await center.add_customer("G1", "王芳", "+8613800000101")
    await center.add_customer("V1", "李强", "+8613800000102")
    boss = await center.login_token("sue", "supervisor")
    # A caller with an open complaint is offered to complaint-skilled agents first.
    amy = await center.agent("amy", skills=("complaints",))
    theirs = (await _complaint(center, boss, "V1"))["id"]
    mine = (await _complaint(center, amy.token, "G1"))["id"]

    _, listed = await request(center, "GET", "/api/v1/complaints", amy.token)
    assert [c["id"] for c in listed["complaints"]] == [mine]
    _, listed = await request(center, "GET", "/api/v1/complaints?customer_id=V1", amy.token)
    assert listed["complaints"] == []
    status, _ = await request(center, "GET", f"/api/v1/complaints/{theirs}", amy.token)
    assert status == 404
    _, everything = await request(center, "GET", "/api/v1/complaints", boss)
    assert {c["id"] for c in everything["complaints"]} == {mine, theirs}

    await amy.available()
    ivr = await center.ivr()
    await ivr.offer("c-v1", "+8613800000102")
    await amy.inbox.expect("screen_pop", call_id="c-v1")
    status, shown = await request(center, "GET", f"/api/v1/complaints/{theirs}", amy.token)
    assert status == 200 and shown["customer_id"] == "V1"  # the caller on its line


async def test_an_agent_cannot_flag_another_agents_call_and_a_bad_reference_is_a_4xx(center):
    await center.add_customer("G1", "王芳", "+8613800000101")
    await center.add_customer("V1", "李强", "+8613800000102")
    amy = await center.agent("amy")
    boss = await center.login_token("sue", "supervisor")
    await center.ringing_call("bob", "c-bob", "+8613800000102")
    await recorded(center)
    bobs = await interaction(center, "c-bob")
    assert bobs is not None

    await _complaint(center, amy.token, "V1", 403, call_id="c-bob")
    await _complaint(center, amy.token, "V1", 403, interaction_id=bobs.id)
    assert (await interaction(center, "c-bob")).complaint_flag is False

    await _complaint(center, amy.token, "V1", 404, interaction_id=999999)
    await _complaint(center, boss, "V1", 404, interaction_id=999999)
    await _complaint(center, boss, "V1", 404, call_id="no-such-call")
    await _complaint(center, boss, "G1", 400, call_id="c-bob")  # the call is with V1
    async with center.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Complaint)) == 0


# Customer creation ------------------------------------------------------------------------


async def test_a_new_customer_takes_only_the_agents_own_call(center):
    amy = await center.agent("amy")
    boss = await center.login_token("sue", "supervisor")
    bob, _ = await center.ringing_call("bob", "c-bob", "+8613800000999")
    await recorded(center)
    new = {"name": "New Caller", "phone": "+8613800000999", "call_id": "c-bob"}

    status, _ = await request(center, "POST", "/api/v1/customers", amy.token, json=new)
    assert status == 403
    async with center.sessions() as session:
        assert await session.get(CustomerPhone, "+8613800000999") is None
    assert (await interaction(center, "c-bob")).customer_id is None
    status, _ = await request(center, "POST", "/api/v1/customers", boss,
                              json={**new, "call_id": "no-such-call"})
    assert status == 404

    status, created = await request(center, "POST", "/api/v1/customers", bob.token, json=new)
    assert status == 201
    assert (await interaction(center, "c-bob")).customer_id == created["id"]
    async with center.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 1
