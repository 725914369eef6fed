"""The audit log: every view of a customer, transcript or complaint is recorded with who,
what, when and from where; admins read it over the API and export it with the CLI."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from typing import Any

from sqlalchemy import select

from core import db
from core.models import AuditEntry, Complaint, Interaction
from tests.rest import cli, request


async def _entries(center: Any, **where: Any) -> list[AuditEntry]:
    async with center.sessions() as session:
        query = select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)
        return list(await session.scalars(query))


async def _add_interaction(center: Any, customer_id: str, call_id: str,
                           transcript: list[Any] | None) -> int:
    async with db.session_scope(center.sessions) as session:
        row = Interaction(call_id=call_id, customer_id=customer_id, ani="+8613800000001",
                          transcript=transcript,
                          transcript_status="done" if transcript else "none")
        session.add(row)
        await session.flush()
        return row.id


async def test_viewing_a_customer_records_who_what_when_and_from_where(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    token = await center.login_token("sue", "supervisor")
    before = dt.datetime.now(dt.UTC)
    assert (await request(center, "GET", "/api/v1/customers/C1", token))[0] == 200
    [entry] = await _entries(center, object_type="customer")
    assert (entry.actor, entry.role, entry.action, entry.object_id, entry.remote) == (
        "sue", "supervisor", "view", "C1", "127.0.0.1")
    assert before <= entry.at <= dt.datetime.now(dt.UTC)


async def test_each_transcript_shown_is_recorded(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    with_text = await _add_interaction(center, "C1", "call-a", [{"speaker": "customer",
                                                                 "text": "hello"}])
    await _add_interaction(center, "C1", "call-b", None)
    token = await center.login_token("sue", "supervisor")
    await request(center, "GET", "/api/v1/customers/C1", token)
    await request(center, "GET", "/api/v1/interactions?customer_id=C1", token)
    transcripts = await _entries(center, object_type="transcript")
    assert [(e.object_id, e.action) for e in transcripts] == [
        (str(with_text), "view"), (str(with_text), "history")]


async def test_complaint_views_and_lists_are_recorded(center):
    async with db.session_scope(center.sessions) as session:
        complaint = Complaint(customer_id="C1", category="delivery", state="received")
        session.add(complaint)
        await session.flush()
        complaint_id = str(complaint.id)
    # A supervisor: an agent reads only complaints it owns or of its callers.
    token = await center.login_token("sue", "supervisor")
    assert (await request(center, "GET", f"/api/v1/complaints/{complaint_id}", token))[0] == 200
    assert (await request(center, "GET", "/api/v1/complaints", token))[0] == 200
    entries = await _entries(center, object_type="complaint")
    assert [(e.action, e.object_id, e.actor) for e in entries] == [
        ("view", complaint_id, "sue"), ("list", complaint_id, "sue")]


async def test_search_hits_are_recorded_with_the_query(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    await center.add_customer("C2", "Zhang San", "+8613800000002")
    token = await center.login_token("amy", "agent")
    await request(center, "GET", "/api/v1/customers?q=zhang", token)
    entries = await _entries(center, action="search")
    assert sorted(e.object_id for e in entries) == ["C1", "C2"]
    assert entries[0].detail == {"q": "zhang"}


async def test_screen_pop_is_recorded_once_delivered(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    agent = await center.agent("amy")
    await agent.available()
    ivr = await center.ivr()
    await ivr.offer("pop-call", "+8613800000001")
    await agent.inbox.expect("screen_pop", call_id="pop-call")
    async with asyncio.timeout(15):
        while not (entries := await _entries(center, action="screen_pop")):
            await asyncio.sleep(0.05)
    assert [(e.actor, e.object_id, e.detail) for e in entries] == [
        ("amy", "C1", {"call_id": "pop-call"})]


async def test_admin_pages_through_the_audit_log_with_filters(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    await center.add_customer("C2", "Li Na", "+8613800000002")
    sue = await center.login_token("sue", "supervisor")
    for customer_id in ("C1", "C2", "C1", "C1"):
        await request(center, "GET", f"/api/v1/customers/{customer_id}", sue)
    admin = await center.login_token("ada", "admin")

    _, first = await request(center, "GET", "/api/v1/audit?object_id=C1&limit=2", admin)
    _, second = await request(
        center, "GET", f"/api/v1/audit?object_id=C1&limit=2&before_id={first['next_before_id']}",
        admin)
    ids = [e["id"] for e in first["entries"] + second["entries"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    assert second["next_before_id"] is None
    assert {e["actor"] for e in first["entries"]} == {"sue"}

    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    _, none = await request(center, "GET", "/api/v1/audit", admin, params={"since": later})
    assert none["entries"] == []
    _, by_role = await request(center, "GET", "/api/v1/audit?role=supervisor&limit=1000", admin)
    assert len(by_role["entries"]) == 4


async def test_bad_audit_parameters_are_a_400(center):
    admin = await center.login_token("ada", "admin")
    for query in ("limit=0", "limit=1001", "limit=x", "before_id=-1",
                  f"before_id={2**70}", "since=yesterday", "until=0001-01-01T00:00+14:00"):
        status, body = await request(center, "GET", f"/api/v1/audit?{query}", admin)
        assert status == 400 and body["error"]["code"] == "invalid", query


async def test_cli_exports_the_audit_log_as_csv_and_json_lines(center):
    await center.add_customer("C1", "Zhang Wei", "+8613800000001")
    token = await center.login_token("=HYPERLINK(1)", "supervisor")
    await request(center, "GET", "/api/v1/customers/C1", token)

    code, out, err = await cli(center, "audit", "export", "--format", "jsonl")
    assert code == 0, err
    [line] = out.splitlines()
    assert json.loads(line) | {"id": 0, "at": ""} == {
        "id": 0, "at": "", "actor": "=HYPERLINK(1)", "role": "supervisor", "action": "view",
        "object_type": "customer", "object_id": "C1", "remote": "127.0.0.1", "detail": {}}

    code, out, _ = await cli(center, "audit", "export", "--since", "2000-01-01")
    rows = list(csv.DictReader(io.StringIO(out)))
    # A spreadsheet must not run a user-chosen name as a formula.
    assert [(r["actor"], r["object_id"]) for r in rows] == [("'=HYPERLINK(1)", "C1")]

    code, out, _ = await cli(center, "audit", "export", "--until", "2000-01-01")
    assert out.splitlines() == [",".join(("id", "at", "actor", "role", "action",
                                          "object_type", "object_id", "remote", "detail"))]
    code, _, err = await cli(center, "audit", "export", "--format", "xml")
    assert code == 1 and "csv or jsonl" in err and "Traceback" not in err
