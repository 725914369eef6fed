"""Service recovery on the live call path: a caller with an open complaint is answered
before a caller of the same tier who has been waiting a little longer (issue 16)."""

from __future__ import annotations

import datetime as dt

from core import db
from core.models import Complaint


async def test_an_open_complaint_brings_a_waiting_call_forward(center) -> None:
    await center.add_customer("C1", "Calm Caller", "+8613800000001")
    await center.add_customer("C2", "Unhappy Caller", "+8613800000002")
    async with db.session_scope(center.sessions) as session:
        session.add(Complaint(customer_id="C2", category="delivery", state="received",
                              summary="late", created_at=dt.datetime.now(dt.UTC)))
    agent = await center.agent("amy", skills=("complaints",))  # in both calls' rings
    ivr = await center.ivr()
    await ivr.offer("calm", "+8613800000001")
    await ivr.inbox.expect("route.queued", call_id="calm")
    await ivr.offer("unhappy", "+8613800000002")
    await ivr.inbox.expect("route.queued", call_id="unhappy")
    await agent.available()
    pop = await agent.inbox.expect("screen_pop")
    assert pop["call_id"] == "unhappy", "the caller with an open complaint goes first"
